"""``infer profiles``: list, show, validate and create profiles."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from infer_cli.cli.options import JsonOption, SetOption
from infer_cli.errors import UsageError

app = typer.Typer(help="List, show, validate and create profiles.", no_args_is_help=True)


@app.command("list")
def list_profiles(json_output: JsonOption = False) -> None:
    """List the profiles you can pass to --profile (yours first, then the bundled ones).

    [b]Examples[/]

      infer profiles list
      infer profiles list --json
    """
    from infer_cli.config import loader

    rows = []
    for source in loader.available():
        try:
            loaded = loader.load(str(source.path))
            model, about = loaded.profile.model.name, loaded.profile.description
        except UsageError as error:
            model, about = "-", f"invalid: {error.one_line()}"
        origin = "bundled" if source.bundled else str(source.path)
        rows.append({"name": source.name, "source": origin, "model": model, "description": about})
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
        return
    from infer_cli.ui.tables import print_table

    print_table(
        ["NAME", "MODEL", "DESCRIPTION", "SOURCE"],
        [[r["name"], r["model"], r["description"], r["source"]] for r in rows],
        whole=(0, 1),
    )


@app.command("show")
def show(
    name: Annotated[
        str, typer.Argument(metavar="PROFILE", help="Profile name or path to a .toml file.")
    ],
    overrides: SetOption = None,
    show_origin: Annotated[
        bool,
        typer.Option(
            "--show-origin",
            help="Each setting with where its value came from: bundled, file, environment, "
            "flag, or default.",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Show the effective profile: after 'extends', INFER_* variables and --set.

    [b]Examples[/]

      infer profiles show h100
      infer profiles show h100 -s engine.max_num_seqs=64 --show-origin
      infer profiles show ./mine.toml --json
    """
    from infer_cli.config import loader, writer

    loaded = loader.load(name, overrides=overrides or ())
    if show_origin:
        rows = loader.value_origins(loaded)
        if json_output:
            found = [{"key": k, "value": v, "origin": o} for k, v, o in rows]
            typer.echo(json.dumps(found, indent=2))
            return
        from infer_cli.ui.tables import print_origins

        print_origins(rows)
        return
    if json_output:
        typer.echo(loaded.profile.model_dump_json(indent=2))
        return
    from infer_cli.ui.tables import print_toml

    chain = " < ".join(str(s.path) for s in loaded.chain)
    print_toml(f"# profile {loaded.name}: {chain}\n{writer.to_toml(loaded.profile)}")


@app.command("validate")
def validate(
    name: Annotated[
        str, typer.Argument(metavar="PROFILE", help="Profile name or path to a .toml file.")
    ],
    overrides: SetOption = None,
    engine: Annotated[
        bool,
        typer.Option(
            "--engine",
            help="Also run vLLM's own argument parser on the generated command line "
            "(needs vLLM installed).",
        ),
    ] = False,
) -> None:
    """Check a profile: the schema, and with --engine, vLLM's verdict on its command line.

    [b]Examples[/]

      infer profiles validate mine
      infer profiles validate mine --engine    [dim]# vLLM's own parser too (~10 s, no GPU)[/]
    """
    from infer_cli.config import loader
    from infer_cli.ui import console

    loaded = loader.load(name, overrides=overrides or ())
    chain = " < ".join(s.name for s in loaded.chain)
    console.stdout.print(f"[green]✓[/] profile {loaded.name} is valid ({chain})")
    if not engine:
        console.stderr.print(
            "[dim]the schema only: --engine also runs vLLM's own argument parser on its command "
            "line (needs vLLM installed, ~10 s)[/]"
        )
    if engine:
        from infer_cli import serve

        verdict = serve.validate_with_engine(loaded)
        if not verdict.ok:
            from infer_cli.errors import ProfileError

            raise ProfileError(
                f"vLLM rejects the command line of profile {loaded.name}: {verdict.message}"
            )
        console.stdout.print(f"[green]✓[/] vLLM accepts its command line ({verdict.message})")


@app.command("init")
def init(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Name of the new profile.")],
    base: Annotated[
        str, typer.Option("--from", help="Profile the new one extends.", show_default=True)
    ] = "cpu",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter profile to your profiles folder.

    [b]Examples[/]

      infer profiles init my-h100 --from h100
      infer serve -p my-h100
    """
    from infer_cli import paths
    from infer_cli.config import loader, writer
    from infer_cli.ui import console

    if "/" in name or name.endswith(".toml") or not name:
        raise UsageError(
            f"profile name {name!r} must be a plain name", hint="e.g. 'infer profiles init my-h100'"
        )
    target = paths.profiles_home() / f"{name}.toml"
    if target.exists() and not force:
        raise UsageError(f"profile {target} already exists", hint="pass --force to overwrite it")
    text = writer.starter(name, loader.load(base))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    loader.load(str(target))  # what we wrote must load
    console.info(f"wrote {target}")
    typer.echo(str(target))
