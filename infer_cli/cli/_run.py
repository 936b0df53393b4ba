"""The root command group: turns an :class:`~infer_cli.errors.InferError` into one line and a code.

Catching at the root group (rather than around ``app()``) means ``typer.testing.CliRunner`` sees
exactly what a user sees: the one-line message on stderr and the documented exit code.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from infer_cli.errors import InferError


class InferGroup(TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        from infer_cli.ui import console

        try:
            return super().invoke(ctx)
        except InferError as error:
            console.error(error)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            console.stderr.print("interrupted")
            raise typer.Exit(130) from None

    def list_commands(self, ctx: Any) -> list[str]:
        # keep the order commands were registered in: the workflow order, not the alphabet
        return list(self.commands)
