"""Tables for listings (profiles, engine status, ...)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from infer_cli.ui.console import stdout


def print_table(
    columns: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None
) -> None:
    table = Table(title=title, show_edge=False, header_style="bold", pad_edge=False, box=None)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    stdout.print(table)


def print_toml(text: str) -> None:
    """TOML on stdout: highlighted on a terminal, plain when piped."""
    if stdout.is_terminal:
        from rich.syntax import Syntax

        stdout.print(Syntax(text, "toml", background_color="default"))
    else:
        stdout.out(text, end="")
