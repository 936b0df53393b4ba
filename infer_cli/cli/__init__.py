"""The ``infer`` command line: one module per command, each thin (parse, call a service, render)."""

from __future__ import annotations

from typing import Annotated

import typer

from infer_cli import __version__
from infer_cli.cli import (
    bench,
    chat,
    deploy,
    engine,
    keys,
    models,
    profiles,
    pull,
    serve,
    status,
)
from infer_cli.cli._run import InferGroup

app = typer.Typer(
    name="infer",
    cls=InferGroup,
    help="Turn a GPU server into an OpenRouter-ready LLM endpoint (vLLM + LMCache behind a proxy).",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"infer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", envvar="INFER_VERBOSE", help="Show details and tracebacks of errors."
        ),
    ] = False,
) -> None:
    from infer_cli.ui import console

    console.set_verbose(verbose)


app.command("serve")(serve.serve)
app.command("pull")(pull.pull)
app.command("chat")(chat.chat)
app.command("models")(models.models)
app.command("status")(status.status)
app.add_typer(bench.app, name="bench")
app.add_typer(profiles.app, name="profiles")
app.add_typer(engine.app, name="engine")
app.add_typer(keys.app, name="keys")
app.add_typer(deploy.app, name="deploy")


def main() -> None:
    app()
