"""Tables for listings (profiles, engine status, ...)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from infer_cli.ui.console import stdout


def print_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    whole: Sequence[int] = (0,),
) -> None:
    """A borderless table; the columns in ``whole`` (names, model ids) are never broken
    mid-word: the other columns wrap at spaces to make room."""
    table = Table(title=title, show_edge=False, header_style="bold", pad_edge=False, box=None)
    for index, column in enumerate(columns):
        if index in whole:
            widest = max([len(column), *(len(row[index]) for row in rows)])
            table.add_column(column, no_wrap=True, min_width=widest)
        else:
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


def print_origins(rows: Sequence[tuple[str, object, str]]) -> None:
    """``profiles show --show-origin``: origin, then ``key = value``, as git config shows it."""
    import json

    width = max((len(origin) for _, _, origin in rows), default=0)
    for key, value, origin in rows:
        stdout.out(f"{origin:<{width}}  {key} = {json.dumps(value)}", highlight=False)
