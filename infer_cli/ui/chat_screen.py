"""What ``infer chat`` shows besides a streaming answer: the banner, stats, errors, command
outcomes, help, and whole answers (``--no-stream``). Streaming answers are
:mod:`infer_cli.ui.chat_view`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markdown import Markdown
from rich.text import Text

from infer_cli.chat.stats import AnswerStats, summary
from infer_cli.errors import InferError
from infer_cli.ui.chat_view import (
    CODE_THEME,
    DONE_THINKING,
    THINKING,
    THOUGHT_STYLE,
    AnswerStream,
    MarkdownStream,
    PlainStream,
    is_terminal,
)

if TYPE_CHECKING:
    from infer_cli.chat.commands import Outcome
    from infer_cli.chat.session import ChatSession


class ChatView:
    """Everything ``infer chat`` shows besides the answers themselves."""

    def __init__(self, console: Console, *, markdown: bool = True):
        self.console = console
        self.markdown = markdown

    def answer_stream(self, *, reasoning: bool = True) -> AnswerStream:
        """Where an answer streams to; ``reasoning``: show the thinking of reasoning models."""
        if self.markdown:
            return MarkdownStream(self.console, reasoning=reasoning)
        return PlainStream(self.console.file, reasoning=reasoning)

    def banner(self, session: ChatSession) -> None:
        self.console.print(
            Text.assemble(
                ("infer chat", "bold"),
                " · ",
                (session.model, "cyan"),
                " at ",
                session.client.endpoint.url,
            )
        )
        self.console.print(
            Text(
                '/help for commands · """ or Alt-Enter for several lines · Ctrl-C stops an'
                " answer · Ctrl-D leaves",
                style="dim",
            )
        )
        if session.conversation.messages:
            self.console.print(
                Text(
                    f"continuing a conversation of {session.conversation.turns} turns",
                    style="dim",
                )
            )

    def stats(self, stats: AnswerStats) -> None:
        line = summary(stats)
        if line:
            self.console.print(Text(line, style="dim"))

    def error(self, error: InferError, *, partial: bool = False) -> None:
        self.console.print(Text.assemble(("error: ", "bold red"), error.one_line()))
        if partial:
            self.console.print(Text("the partial answer is kept; /retry asks again", style="dim"))

    def unanswered(self) -> None:
        self.console.print(Text("no answer was kept; /retry asks again", style="dim"))

    def outcome(self, outcome: Outcome) -> None:
        if outcome.message:
            self.console.print(Text(outcome.message, style="green"))
        if outcome.rows:
            from rich.table import Table

            table = Table(box=None, show_header=False, pad_edge=False)
            table.add_column(style="bold")
            table.add_column()
            for key, value in outcome.rows:
                table.add_row(Text(key), Text(value))
            self.console.print(table)

    def help(self) -> None:
        from rich.table import Table

        from infer_cli.chat.commands import COMMANDS, KEYS

        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(style="bold cyan")
        table.add_column()
        for command in COMMANDS:
            aliases = "".join(f", /{alias}" for alias in command.aliases)
            table.add_row(Text(command.usage + aliases), Text(command.summary))
        table.add_row("", "")
        for key, meaning in KEYS:
            table.add_row(Text(key), Text(meaning))
        self.console.print(table)

    def goodbye(self, saved: str | None) -> None:
        if saved:
            self.console.print(Text(f"conversation kept in {saved} (infer chat -c)", style="dim"))


def print_reasoning(console: Console, text: str) -> None:
    """A whole answer's thinking at once (``--no-stream``): dim and framed on a terminal, the bare
    text elsewhere.
    """
    text = text.strip()
    if not text:
        return
    if not is_terminal(console.file):
        console.file.write(text + "\n")
        console.file.flush()
        return
    console.print(Text(THINKING, style="dim"))
    console.print(Text(text, style=THOUGHT_STYLE))
    console.print(Text(DONE_THINKING, style="dim"))
    console.print()


def print_answer(console: Console, text: str, *, markdown: bool) -> None:
    """A whole answer at once (``--no-stream``)."""
    if markdown:
        console.print(Markdown(text, code_theme=CODE_THEME))
    else:
        console.file.write(text if text.endswith("\n") else text + "\n")
        console.file.flush()
