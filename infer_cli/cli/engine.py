"""``infer engine``: build and inspect infer's own CPU engine environment (vLLM + LMCache)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from infer_cli.cli.options import JsonOption

app = typer.Typer(
    help="Build and inspect infer's own engine environment (vLLM's CPU build + LMCache).",
    no_args_is_help=True,
)


@app.command("install")
def install(
    force: Annotated[
        bool,
        typer.Option("--force", help="Delete the environment and build it again from scratch."),
    ] = False,
    no_lmcache: Annotated[
        bool,
        typer.Option(
            "--no-lmcache", help="Leave LMCache out (profiles with lmcache.mode='mp' need it)."
        ),
    ] = False,
) -> None:
    """Build the engine environment (about 3 minutes, 3.4 GB); finished steps are skipped.

    [b]Examples[/]

      infer engine install
      infer engine install --force        [dim]# from scratch[/]
    """
    from infer_cli.engine import build, environment
    from infer_cli.ui import console
    from infer_cli.ui.progress import StepProgress, format_seconds

    with StepProgress(title=f"engine environment {environment.venv_dir()}") as progress:
        steps = build.install(on_step=progress.update, with_lmcache=not no_lmcache, force=force)
    ran = sum(step.state == "done" for step in steps)
    verb = "built" if ran else "already built"
    console.stderr.print(
        f"[green]✓[/] engine environment {verb} in {format_seconds(progress.elapsed)}"
    )
    console.stdout.print(str(environment.venv_dir()), markup=False)


@app.command("status")
def status(as_json: JsonOption = False) -> None:
    """Where the engine environment is, if it is ready, versions, size and prepared models.

    [b]Examples[/]

      infer engine status
      infer engine status --json
    """
    from infer_cli.engine import report as engine_report
    from infer_cli.ui import console

    report = engine_report.status()
    if as_json:
        console.stdout.out(json.dumps(report.to_json(), indent=2))
        return
    esc = console.escape
    state = "[green]ready[/]" if report.ready else "[yellow]not ready[/]"
    rows: list[tuple[str, str]] = [
        ("environment", f"{esc(str(report.venv))}  {state}"),
    ]
    if report.installed_at:
        rows.append(("installed", esc(report.installed_at)))
    for name in ("python", "vllm", "lmcache", "torch", "transformers"):
        version = report.versions.get(name)
        executable = {"vllm": report.vllm, "lmcache": report.lmcache}.get(name)
        value = esc(version) if version else "[dim]not installed[/]"
        if version and executable:
            value += f"  [dim]{esc(str(executable))}[/]"
        rows.append((name, value))
    if report.size_bytes is not None:
        rows.append(("size", f"{report.size_bytes / 1e9:.1f} GB"))
    if report.models:
        from infer_cli import paths

        rows.append(("models", ", ".join(esc(name) for name in report.models)))
        rows.append(("models folder", esc(str(paths.models_home()))))
    else:
        rows.append(("models", "[dim]none prepared ('infer pull')[/]"))
    if report.pending:
        rows.append(("pending", esc("; ".join(report.pending))))
    if report.log is not None:
        rows.append(("install log", esc(str(report.log))))
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        console.stdout.print(f"[bold]{key:<{width}}[/]  {value}")
    if not report.ready:
        console.stderr.print("[dim]run 'infer engine install' to build or finish it[/]")
