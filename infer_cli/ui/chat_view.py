"""How ``infer chat`` looks: answers rendered as Markdown while they stream, or plain text.

:class:`MarkdownStream` keeps a long answer readable while it grows: every block that can no
longer change (a paragraph, list or code block followed by a blank line) is printed once, for good,
into the scrollback; only the block being written lives in a small :class:`rich.live.Live` region,
cropped to its last screen-full. So the live region never outgrows the terminal, nothing is drawn
twice, and the finished answer in the scrollback is the same Markdown a one-shot render gives.
:class:`PlainStream` writes the text as it comes (``--raw``, or stdout not a terminal).

A reasoning model's thinking comes before its answer. :class:`MarkdownStream` shows it dim and
italic under a dim "thinking…" line, finished lines printed for good and the line being written in
the live region, and ends it with "…done thinking" and a blank line when the answer begins.
:class:`PlainStream` writes it to its notes stream (stderr when stdout is a pipe, so a script gets
the answer alone). Either can be told to hide it; thinking that comes after the answer began is not
shown (the answer is what matters by then).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import IO, TYPE_CHECKING, Protocol

from rich.console import Console, ConsoleOptions, RenderResult
from rich.markdown import Markdown
from rich.segment import Segment
from rich.text import Text

if TYPE_CHECKING:
    from rich.live import Live


CODE_THEME = "monokai"
THINKING = "thinking…"
DONE_THINKING = "…done thinking"
THOUGHT_STYLE = "dim italic"
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


class AnswerStream(Protocol):
    def start(self) -> None: ...
    def append(self, text: str) -> None: ...
    def append_reasoning(self, text: str) -> None: ...
    def finish(self, *, interrupted: bool = False) -> None: ...


def chat_console(file: IO[str] | None = None) -> Console:
    """A console for answers: wraps to the terminal (unlike the one-line consoles of ``ui``)."""
    return Console(file=file, highlight=False)


# --- streaming renderers -----------------------------------------------------------------------


def stable_boundary(text: str, start: int = 0) -> int:
    """The end of the blocks of ``text[start:]`` that later text can no longer change.

    A block is finished by a blank line that is outside a fenced code block and followed by
    unindented text (an indented line may still continue a list item). Returns ``start`` when
    nothing is finished yet.
    """
    boundary = start
    fence: str | None = None
    position = start
    blank_at: int | None = None  # the end of the last blank line seen outside a fence
    for line in text[start:].splitlines(keepends=True):
        stripped = line.strip()
        if fence is None and blank_at is not None and stripped and not line[0].isspace():
            boundary = blank_at  # its first character is enough to know a new block began
        if not line.endswith("\n"):
            break  # the rest of an unfinished line decides nothing yet
        if stripped:
            blank_at = None
        match = _FENCE.match(line)
        if match:
            marker = match.group(1)
            if fence is None:
                fence = marker
            elif _closes(fence, marker, stripped):
                fence = None
        elif fence is None and not stripped:
            blank_at = position + len(line)
        position += len(line)
    return boundary


def _closes(fence: str, marker: str, line: str) -> bool:
    """A fence line closes the open block: same character, at least as long, nothing after."""
    return marker[0] == fence[0] and len(marker) >= len(fence) and not line[len(marker) :]


class _Lines:
    """Rendered lines, without the empty lines Rich puts before some blocks (lists)."""

    def __init__(self, lines: list[list[Segment]]):
        while lines and not "".join(segment.text for segment in lines[0]):
            lines = lines[1:]
        while lines and not "".join(segment.text for segment in lines[-1]):
            lines = lines[:-1]
        self.lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        new_line = Segment.line()
        for line in self.lines:
            yield from line
            yield new_line


class _Tail:
    """The unfinished end of an answer (or of its thinking), cropped to the last lines that fit on
    the screen.
    """

    def __init__(self, code_theme: str):
        self.text = ""
        self.thought: Text | None = None
        """The thinking's line being written (shown instead of the answer while it lasts)."""
        self.code_theme = code_theme

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.thought is not None:
            shown: Text | Markdown = self.thought
        elif self.text.strip():
            shown = Markdown(self.text, code_theme=self.code_theme)
        else:
            return
        lines = console.render_lines(shown, options, pad=False)
        room = max(3, (options.height or console.size.height) - 2)
        if len(lines) > room:
            lines = lines[-room:]
        new_line = Segment.line()
        for line in lines:
            yield from line
            yield new_line


class MarkdownStream:
    """Markdown rendered as it arrives; see the module docstring."""

    def __init__(
        self,
        console: Console,
        *,
        code_theme: str = CODE_THEME,
        fps: float = 12,
        reasoning: bool = True,
    ):
        self.console = console
        self.code_theme = code_theme
        self.fps = fps
        self.show_reasoning = reasoning
        """False: the thinking is not shown (only a passing "thinking…" in the live region)."""
        self.text = ""
        self.reasoning = ""
        self._printed = 0
        self._thought_printed = 0
        self._thinking = False
        self._shown_thinking = False
        self._answering = False
        self._tail = _Tail(code_theme)
        self._live: Live | None = None
        self._last_refresh = 0.0
        self._pending: asyncio.TimerHandle | None = None
        self._blocks = 0

    def start(self) -> None:
        from rich.live import Live

        # No refresh thread: Rich's auto-refresh thread and a print from this thread can interleave
        # and leave a stale copy of the live region behind. Refreshes happen here, throttled.
        self._live = Live(
            self._tail,
            console=self.console,
            auto_refresh=False,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
            vertical_overflow="crop",
        )
        self._live.start()

    def append(self, text: str) -> None:
        first = not self.text
        if not self._answering and text.strip():
            self._answering = True
            if self._thinking:
                self._end_thinking(done=True)
            if self._shown_thinking:
                self.console.print()  # a blank line between the thinking and the answer
        self.text += text
        boundary = stable_boundary(self.text, self._printed)
        if boundary > self._printed:
            self._print(self.text[self._printed : boundary])
            self._printed = boundary
        self._tail.text = self.text[self._printed :]
        self._show(at_once=first)  # the first token shows at once, not at the next tick

    def append_reasoning(self, text: str) -> None:
        if self._answering:
            return
        first = not self._thinking
        if first:
            text = text.lstrip()
            if not text:
                return
            self._thinking = True
            if self.show_reasoning:
                self.console.print(Text(THINKING, style="dim"))
                self._shown_thinking = True
        if self.show_reasoning:
            self.reasoning += text
            self._print_thought()
            self._tail.thought = Text(self.reasoning[self._thought_printed :], style=THOUGHT_STYLE)
        else:
            self._tail.thought = Text(THINKING, style="dim")
        self._show(at_once=first)

    def _print_thought(self) -> None:
        """Print the thinking's finished lines for good (blank lines only once text follows)."""
        finished = self.reasoning[self._thought_printed : self.reasoning.rfind("\n") + 1]
        lines = finished.rstrip("\n")
        if lines:
            self.console.print(Text(lines, style=THOUGHT_STYLE))
            self._thought_printed += len(lines) + 1

    def _end_thinking(self, *, done: bool) -> None:
        """Print the rest of the thinking; ``done``: and say it is over (not when interrupted)."""
        self._thinking = False
        self._tail.thought = None
        if not self.show_reasoning:
            return
        rest = self.reasoning[self._thought_printed :].rstrip()
        self._thought_printed = len(self.reasoning)
        if rest.strip():
            self.console.print(Text(rest, style=THOUGHT_STYLE))
        if done:
            self.console.print(Text(DONE_THINKING, style="dim"))

    def _show(self, *, at_once: bool) -> None:
        """Redraw the live region, at most ``fps`` times a second unless ``at_once``."""
        wait = self._last_refresh + 1 / self.fps - time.monotonic()
        if at_once or wait <= 0:
            self._refresh()
        elif self._pending is None:
            # show what arrived even if nothing follows it soon (no loop: the next piece will)
            with contextlib.suppress(RuntimeError):
                self._pending = asyncio.get_running_loop().call_later(wait, self._refresh)

    def _refresh(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._live is not None:
            self._live.refresh()
            self._last_refresh = time.monotonic()

    def finish(self, *, interrupted: bool = False) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        live, self._live = self._live, None
        if live is not None:
            self._tail.text = ""
            self._tail.thought = None
            live.stop()
        if self._thinking:
            self._end_thinking(done=not interrupted)
        rest = self.text[self._printed :]
        self._printed = len(self.text)
        if rest.strip():
            self._print(rest)
        if interrupted:
            self.console.print(Text("⏹ interrupted", style="yellow"))
        if self._blocks or self._shown_thinking:
            self.console.print()

    def _print(self, markdown: str) -> None:
        """One finished block, for good, with exactly one blank line between blocks."""
        if not markdown.strip():
            return
        rendered = _Lines(
            self.console.render_lines(
                Markdown(markdown.strip("\n"), code_theme=self.code_theme),
                self.console.options,
                pad=False,
            )
        )
        if self._blocks:
            self.console.print()
        self.console.print(rendered)
        self._blocks += 1


class PlainStream:
    """The answer's text as it arrives, unchanged (flushed per piece).

    The thinking goes to ``notes``: bare text when that is not a terminal; on a terminal, dim
    between a "thinking…" and a "…done thinking" line, then a blank line before the answer.
    """

    def __init__(self, out: IO[str], notes: IO[str] | None = None, *, reasoning: bool = True):
        self.out = out
        self.notes = notes or out
        """Where the thinking and the ``[interrupted]`` mark go (stderr when stdout is a pipe)."""
        self.show_reasoning = reasoning
        self._ends_with_newline = True
        self._wrote = False
        self._reasoned = False
        self._thinking = False
        self._held = ""
        """Newlines at the end of the thinking so far (written only if more thinking follows)."""
        self._decorated = is_terminal(self.notes)
        self._notes_console = chat_console(self.notes) if self._decorated else None

    def start(self) -> None:
        pass

    def append(self, text: str) -> None:
        if self._reasoned and not self._wrote:
            text = text.lstrip("\n")  # the blank line after the thinking is not the answer's
        if not text:
            return
        if self._thinking:
            self._end_thinking(done=True)
        self.out.write(text)
        self.out.flush()
        self._wrote = True
        self._ends_with_newline = text.endswith("\n")

    def append_reasoning(self, text: str) -> None:
        self._reasoned = True
        if not self.show_reasoning or self._wrote:
            return
        if not self._thinking:
            text = text.lstrip()
            if not text:
                return
            self._thinking = True
            self._note(THINKING + "\n", "dim", decoration=True)
        body = text.rstrip("\n")
        if body:
            self._note(self._held + body, THOUGHT_STYLE)
            self._held = ""
        self._held += text[len(body) :]

    def finish(self, *, interrupted: bool = False) -> None:
        if self._thinking:
            self._end_thinking(done=not interrupted)
        if self._wrote and not self._ends_with_newline:
            self.out.write("\n")
        self.out.flush()
        if interrupted:
            self.notes.write("[interrupted]\n")
            self.notes.flush()

    def _end_thinking(self, *, done: bool) -> None:
        self._thinking = False
        self._held = ""
        self._note("\n", THOUGHT_STYLE)
        if done:
            self._note(DONE_THINKING + "\n\n", "dim", decoration=True)

    def _note(self, text: str, style: str, *, decoration: bool = False) -> None:
        """Write to the notes stream: styled on a terminal; decoration only there."""
        if not self._decorated:
            if not decoration:
                self.notes.write(text)
                self.notes.flush()
            return
        assert self._notes_console is not None
        self._notes_console.print(Text(text, style=style), end="", soft_wrap=True)
        self.notes.flush()


def is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False
