"""The root command group: turns an :class:`~infer_cli.errors.InferError` into one line and a code.

Catching at the root group (rather than around ``app()``) means ``typer.testing.CliRunner`` sees
exactly what a user sees: the one-line message on stderr and the documented exit code.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from infer_cli.errors import EXIT_INTERRUPTED, InferError


class InferGroup(TyperGroup):
    def make_context(self, info_name: str | None, args: list[str], *a: Any, **kw: Any) -> Any:
        if self.parent_is_root(kw):
            from infer_cli.cli.help import plain_help

            plain_help(self)
        return super().make_context(info_name, args, *a, **kw)

    @staticmethod
    def parent_is_root(kwargs: dict[str, Any]) -> bool:
        return kwargs.get("parent") is None

    def invoke(self, ctx: Any) -> Any:
        from infer_cli.ui import console

        try:
            return super().invoke(ctx)
        except InferError as error:
            console.error(error)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            console.stderr.print("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    def list_commands(self, ctx: Any) -> list[str]:
        # keep the order commands were registered in: the workflow order, not the alphabet
        return list(self.commands)
