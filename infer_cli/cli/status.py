"""``infer status``: is the endpoint up, what it serves, how busy it is, how well it caches."""

from __future__ import annotations

from typing import Annotated

import typer

from infer_cli.cli.options import ApiKeyOption, JsonOption, UrlOption
from infer_cli.client import DEFAULT_URL


def status(
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh until Ctrl-C (with --json: JSON lines).")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", "-n", min=0.2, help="Seconds between refreshes.")
    ] = 2.0,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Endpoint health, model, engine state and uptime, requests, KV cache and cache hit rates."""
    import asyncio
    import contextlib

    from infer_cli.ui import status_view

    if watch:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a watch ends
            asyncio.run(status_view.watch(url, api_key, interval, json_output=json_output))
        return
    up = asyncio.run(status_view.show(url, api_key, json_output=json_output))
    if not up:
        raise typer.Exit(1)
