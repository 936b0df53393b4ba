"""Serving the simulated engine: in the caller's event loop, or as ``python -m infer_cli.sim``.

The process form is how ``infer serve --profile sim`` runs it, supervised exactly like ``vllm
serve``: it listens on ``--host``/``--port``, answers ``/health`` once it listens, takes the API key
from ``--api-key`` or ``VLLM_API_KEY``, and stops cleanly (exit 0) on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from pydantic import ValidationError

from infer_cli.config.sim import SimSettings
from infer_cli.errors import InferError
from infer_cli.sim.app import create_app
from infer_cli.wire.server import AppServer, bind

log = logging.getLogger("infer.sim")

SHUTDOWN_TIMEOUT = 1
"""Seconds that requests in flight get when the server stops (the simulator keeps no state)."""


@asynccontextmanager
async def running(
    settings: SimSettings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
) -> AsyncIterator[str]:
    """``async with running(settings) as url``: a simulated engine at ``url`` until the block ends.

    ``port`` 0 picks a free port. ``url`` is ``http://HOST:PORT`` (no ``/v1``).
    """
    app = create_app(settings, api_key=api_key)
    server = AppServer(app, bind(host, port), shutdown_timeout=SHUTDOWN_TIMEOUT)
    await server.start()
    try:
        yield server.url
    finally:
        app.state.engine.stop()  # answers in flight end now, cleanly
        await server.stop()


async def serve(settings: SimSettings, host: str, port: int, api_key: str | None) -> None:
    """Serve until SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with running(settings, host=host, port=port, api_key=api_key) as url:
            print(
                f"infer sim: simulated engine serving {settings.model!r} on {url}",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()
            log.info("stopping")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infer_cli.sim",
        description="Run infer's simulated engine: an OpenAI-compatible stand-in for vLLM.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    parser.add_argument(
        "--settings-json",
        default=None,
        metavar="JSON",
        help='SimSettings as a JSON object, e.g. \'{"model": "m", "ms_per_output_token": 5}\'',
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="require 'Authorization: Bearer KEY' on /v1 (default: $VLLM_API_KEY, if set)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="log level on stderr (default warning)",
    )
    args = parser.parse_args(argv)
    try:
        settings = SimSettings.model_validate_json(args.settings_json or "{}")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {error['msg']}"
            for error in exc.errors()
        )
        parser.error(f"--settings-json: {problems}")
    api_key = args.api_key or os.environ.get("VLLM_API_KEY") or None
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(serve(settings, args.host, args.port, api_key))
    except InferError as exc:
        print(f"infer sim: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return 130
    return 0
