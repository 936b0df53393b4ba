"""The chat prompt: prompt_toolkit line editing, history kept in a file, several-line messages.

Keys: Enter sends; Alt-Enter (Esc then Enter) starts a new line; a message opened with ``\"\"\"``
goes on over several lines until one ends with ``\"\"\"``; Up/Down and Ctrl-R search the history,
which persists across sessions (its last :data:`HISTORY_ENTRIES` entries); Ctrl-C clears the
line, or leaves at an empty prompt (raised as :class:`KeyboardInterrupt`); Ctrl-D at an empty
prompt leaves (raised as :class:`EOFError`).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from infer_cli.files import write_atomic

if TYPE_CHECKING:
    from prompt_toolkit.key_binding import KeyPressEvent

BLOCK = '"""'
PROMPT = ">>> "
CONTINUATION = "... "
HISTORY_ENTRIES = 1000
"""Entries the history file keeps (older ones are dropped when the chat starts)."""


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


def trim_history(path: Path, keep: int = HISTORY_ENTRIES) -> None:
    """Keep the last ``keep`` entries of a prompt_toolkit history file; never fails the chat.

    The file is what :class:`~prompt_toolkit.history.FileHistory` writes: each entry is a ``#``
    line (when it was typed) and its lines, each prefixed with ``+``.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return
    entries = _history_entries(data)
    if len(entries) <= keep:
        return
    with contextlib.suppress(OSError):
        write_atomic(path, b"".join(entries[-keep:]))


def _history_entries(data: bytes) -> list[bytes]:
    """The entries of a history file, each with the lines before it (its date)."""
    entries: list[bytes] = []
    current: list[bytes] = []
    in_entry = False
    for line in io.BytesIO(data):  # split at b"\n" only, as FileHistory does
        if line.startswith(b"+"):
            in_entry = True
        elif in_entry:
            entries.append(b"".join(current))
            current, in_entry = [], False
        current.append(line)
    if in_entry:
        entries.append(b"".join(current))
    return entries


class ChatInput:
    def __init__(self, history_file: Path):
        from prompt_toolkit import PromptSession
        from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
        from prompt_toolkit.history import FileHistory
        from prompt_toolkit.key_binding import KeyBindings

        history_file.parent.mkdir(parents=True, exist_ok=True)
        trim_history(history_file)
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
            completer=SlashCompleter(),
            complete_while_typing=False,  # Tab completes; typing stays quiet
        )

    async def read(self) -> str:
        """One message (raises KeyboardInterrupt / EOFError to leave)."""
        text = await self._session.prompt_async(PROMPT, handle_sigint=False)
        return unwrap_block(text)


def slash_completions(text: str) -> list[tuple[str, str]]:
    """The slash commands (and aliases) ``text`` may be the start of, with their summaries."""
    from infer_cli.chat.commands import COMMANDS

    if not text.startswith("/") or any(c.isspace() for c in text):
        return []
    return [
        (f"/{name}", command.summary)
        for command in COMMANDS
        for name in (command.name, *command.aliases)
        if f"/{name}".startswith(text)
    ]


class SlashCompleter(Completer):
    """Tab completes a slash command at the start of the prompt."""

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterator[Completion]:
        text = document.text_before_cursor
        for word, summary in slash_completions(text):
            yield Completion(word, start_position=-len(text), display_meta=summary)
