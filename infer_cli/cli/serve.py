"""``infer serve``: start the engine from a profile and serve the proxy in front of it."""

from __future__ import annotations

from typing import Annotated

import typer

from infer_cli.cli.options import ProfileOption, SetOption


def serve(
    profile: ProfileOption = None,
    overrides: SetOption = None,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            envvar="INFER_HOST",
            metavar="ADDRESS",
            help="Public address of the proxy (default: the profile's).",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            envvar="INFER_PORT",
            metavar="PORT",
            help="Public port of the proxy (default: the profile's).",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print what serve needs and the engine command lines as shell, then exit.",
        ),
    ] = False,
    real_values: Annotated[
        bool,
        typer.Option(
            "--real-values",
            help="With --dry-run: this start's loopback ports and internal key instead of fixed "
            "placeholders (two dry runs then differ).",
        ),
    ] = False,
    upstream: Annotated[
        str | None,
        typer.Option(
            "--upstream",
            metavar="URL",
            envvar=["INFER_UPSTREAM", "VLLM_BASE_URL"],
            help="Proxy only: front an engine that is already running at this URL "
            "(starts no engine).",
            show_default=False,
        ),
    ] = None,
    upstream_key: Annotated[
        str | None,
        typer.Option(
            "--upstream-key",
            metavar="KEY",
            envvar="INFER_UPSTREAM_API_KEY",
            help="API key the upstream engine expects (sent as Authorization: Bearer).",
            show_default=False,
        ),
    ] = None,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker",
            help="Run only this machine's engines (LMCache and the profile's replicas, no router, "
            "no proxy) for another machine's router; prints the line for its [replicas] workers.",
        ),
    ] = False,
    install: Annotated[
        bool,
        typer.Option(
            "--install/--no-install",
            help="On the CPU, build the engine environment and prepare the model when missing.",
        ),
    ] = True,
) -> None:
    """Start vLLM (and LMCache) from a profile, behind infer's proxy. Ctrl-C stops everything.

    [b]Examples[/]

      infer serve                                  [dim]# the default profile (cpu without a GPU)[/]
      infer serve -p h100 -s engine.max_num_seqs=128 --port 9000
      infer serve -p sim                           [dim]# the simulated engine[/]
      infer serve -p multinode --dry-run           [dim]# what it needs, and the commands[/]
      infer serve --upstream http://gpu-box:8000   [dim]# proxy only, in front of a running vLLM[/]
      infer serve -p h100x8-dp --worker            [dim]# engines only, for another router[/]
    """
    import asyncio

    from infer_cli import serve as service
    from infer_cli.config import loader
    from infer_cli.ui.serve_view import ServeView

    loaded = loader.load(profile or service.default_profile(), overrides=overrides or ())
    view = ServeView()
    if upstream:
        from infer_cli.serve.front import run_front, upstream_base

        base = upstream_base(upstream)
        if dry_run:
            view.dry_run_front(loaded.name, base, host or loaded.profile.proxy.host,
                               port if port is not None else loaded.profile.proxy.port)  # fmt: skip
            return
        asyncio.run(
            run_front(
                loaded.profile,
                profile_name=loaded.name,
                upstream=base,
                api_key=upstream_key,
                host=host if host is not None else loaded.profile.proxy.host,
                port=port if port is not None else loaded.profile.proxy.port,
                reporter=view,
            )
        )
        return
    plan = service.prepare(
        loaded,
        host=host,
        port=port,
        install=install,
        on_step=view.step,
        dry_run=dry_run,
        worker=worker,
    )
    if dry_run:
        from infer_cli.serve.prerequisites import prerequisites

        view.dry_run(plan, prerequisites(loaded.profile, install=install), real_values=real_values)
        return
    if worker:
        from infer_cli.serve.worker import run_worker

        asyncio.run(run_worker(plan, view))
        return
    asyncio.run(service.run(plan, view))
