"""The two consoles: data on stdout, progress and errors on stderr (rich honours ``NO_COLOR``)."""

from __future__ import annotations

import traceback

from rich.console import Console

from infer_cli.errors import InferError

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)
_verbose = False


def set_verbose(value: bool) -> None:
    global _verbose
    _verbose = value


def is_verbose() -> bool:
    return _verbose


def error(err: InferError) -> None:
    """One line: what, where, what to do. ``--verbose`` adds the traceback."""
    if _verbose:
        stderr.print("".join(traceback.format_exception(err)), markup=False, style="dim")
    stderr.print(f"[bold red]error:[/] {escape(err.one_line())}")


def warn(message: str) -> None:
    stderr.print(f"[yellow]warning:[/] {escape(message)}")


def info(message: str) -> None:
    stderr.print(escape(message))


def escape(text: str) -> str:
    from rich.markup import escape as _escape

    return _escape(text)
