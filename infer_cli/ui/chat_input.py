"""The chat prompt: prompt_toolkit line editing, history kept in a file, several-line messages.

Keys: Enter sends; Alt-Enter (Esc then Enter) starts a new line; a message opened with ``\"\"\"``
goes on over several lines until one ends with ``\"\"\"``; Up/Down and Ctrl-R search the history,
which persists across sessions; Ctrl-C clears the line, or leaves at an empty prompt (raised as
:class:`KeyboardInterrupt`); Ctrl-D at an empty prompt leaves (raised as :class:`EOFError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prompt_toolkit.key_binding import KeyPressEvent

BLOCK = '"""'
PROMPT = ">>> "
CONTINUATION = "... "


def block_open(text: str) -> bool:
    """A message that opened a ``\"\"\"`` block and has not closed it yet."""
    stripped = text.strip()
    if not stripped.startswith(BLOCK):
        return False
    return stripped == BLOCK or not stripped[len(BLOCK) :].rstrip().endswith(BLOCK)


def unwrap_block(text: str) -> str:
    """The message inside a ``\"\"\"`` block (or the text as it is)."""
    stripped = text.strip()
    if stripped.startswith(BLOCK):
        stripped = stripped[len(BLOCK) :]
        if stripped.rstrip().endswith(BLOCK):
            stripped = stripped.rstrip()[: -len(BLOCK)]
        return stripped.strip("\n")
    return text.strip()


class ChatInput:
    def __init__(self, history_file: Path):
        from prompt_toolkit import PromptSession
        from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
        from prompt_toolkit.history import FileHistory
        from prompt_toolkit.key_binding import KeyBindings

        history_file.parent.mkdir(parents=True, exist_ok=True)
        bindings = KeyBindings()

        @bindings.add("enter")
        def _enter(event: KeyPressEvent) -> None:
            buffer = event.current_buffer
            if block_open(buffer.text):
                buffer.insert_text("\n")
            else:
                buffer.validate_and_handle()

        @bindings.add("escape", "enter")
        def _newline(event: KeyPressEvent) -> None:
            event.current_buffer.insert_text("\n")

        @bindings.add("c-c")
        def _interrupt(event: KeyPressEvent) -> None:
            buffer = event.current_buffer
            if buffer.text:
                buffer.reset()
            else:
                event.app.exit(exception=KeyboardInterrupt())

        self._session: PromptSession[str] = PromptSession(
            history=FileHistory(str(history_file)),
            auto_suggest=AutoSuggestFromHistory(),
            multiline=True,
            key_bindings=bindings,
            prompt_continuation=lambda width, _line, _soft: CONTINUATION.rjust(width),
            enable_history_search=False,
        )

    async def read(self) -> str:
        """One message (raises KeyboardInterrupt / EOFError to leave)."""
        text = await self._session.prompt_async(PROMPT, handle_sigint=False)
        return unwrap_block(text)
