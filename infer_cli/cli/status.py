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

    from infer_cli.client.api import Client
    from infer_cli.errors import EXIT_INTERRUPTED, UsageError
    from infer_cli.ui import status_view

    if interval < MIN_INTERVAL:
        raise UsageError(
            f"--interval {interval:g} is too short", hint=f"give {MIN_INTERVAL} seconds or more"
        )
    address = resolve_url(url)

    async def watching() -> None:
        # a reading slower than two intervals shows the endpoint as down; the next one tries again
        async with Client(address, api_key, timeout=max(5.0, interval * 2)) as client:
            await status_view.watch(client, interval, json_output=json_output)

    async def once() -> bool:
        async with Client(address, api_key) as client:
            return await status_view.show(client, json_output=json_output)

    if watch:
        try:
            asyncio.run(watching())
        except KeyboardInterrupt:  # Ctrl-C is how a watch ends
            raise typer.Exit(EXIT_INTERRUPTED) from None
        return
    if not asyncio.run(once()):
        raise typer.Exit(1)
