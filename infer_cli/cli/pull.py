"""``infer pull NAME``: prepare a model for the CPU engine, like ``ollama pull``."""

from __future__ import annotations

from typing import Annotated

import typer


def pull(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME",
            help="Model to prepare: smollm2-135m-instruct (the only one known so far).",
        ),
    ] = "smollm2-135m-instruct",
    force: Annotated[
        bool, typer.Option("--force", help="Convert again even when the model is already prepared.")
    ] = False,
) -> None:
    """Prepare a model folder for the CPU engine (builds the engine environment if missing).

    [b]Examples[/]

      infer pull                          [dim]# SmolLM2-135M-Instruct, the CPU profile's model[/]
      infer pull smollm2-135m-instruct --force
    """
    from infer_cli.engine import build, environment, models
    from infer_cli.ui import console
    from infer_cli.ui.progress import StepProgress, format_seconds

    models.known_model(name)  # an unknown name fails before minutes of building
    with StepProgress(title=f"pull {name}") as progress:
        if not environment.is_ready():
            build.install(on_step=progress.update)
        folder = models.prepare(name, on_step=progress.update, force=force)
    console.stderr.print(f"[green]✓[/] {name} ready in {format_seconds(progress.elapsed)}")
    console.stdout.print(str(folder), markup=False)
