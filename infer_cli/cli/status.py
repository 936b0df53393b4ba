"""``infer status``: is the endpoint up, what it serves, how busy it is, how well it caches."""

from __future__ import annotations

from typing import Annotated

import typer

from infer_cli.cli.options import ApiKeyOption, JsonOption, UrlOption, resolve_url

MIN_INTERVAL = 0.2


def status(
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            "-w",
            help="Refresh until Ctrl-C, with request and token rates (with --json: JSON lines).",
        ),
    ] = False,
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            "-i",
            metavar="SECONDS",
            help=f"Seconds between refreshes (at least {MIN_INTERVAL}).",
        ),
    ] = 2.0,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Endpoint health, model, engine state and uptime, requests, KV cache and cache hit rates.

    [b]Examples[/]

      infer status                    [dim]# once; exit code 1 when the endpoint is down[/]
      infer status -w -i 1            [dim]# refresh every second, with rates[/]
      infer status --json | jq .kv_cache_usage
    """  # fmt: skip
    import asyncio

    from infer_cli.errors import EXIT_INTERRUPTED, UsageError
    from infer_cli.ui import status_view

    if interval < MIN_INTERVAL:
        raise UsageError(
            f"--interval {interval:g} is too short", hint=f"give {MIN_INTERVAL} seconds or more"
        )
    endpoint = resolve_url(url)
    if watch:
        try:
            asyncio.run(status_view.watch(endpoint, api_key, interval, json_output=json_output))
        except KeyboardInterrupt:  # Ctrl-C is how a watch ends
            raise typer.Exit(EXIT_INTERRUPTED) from None
        return
    up = asyncio.run(status_view.show(endpoint, api_key, json_output=json_output))
    if not up:
        raise typer.Exit(1)
