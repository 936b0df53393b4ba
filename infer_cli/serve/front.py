"""Proxy-only mode: ``infer serve --upstream URL`` fronts an engine that is already running.

No process is started. The proxy serves the public port at once and checks the upstream every few
seconds: ``/health`` answers 200 while the upstream answers and serves the profile's model, 503
(with the reason) otherwise. An upstream that goes away never takes the proxy down.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING

from infer_cli.errors import UsageError
from infer_cli.serve.app import connection_limits, proxy_app

if TYPE_CHECKING:
    import httpx

    from infer_cli.config.schema import Profile
    from infer_cli.proxy.state import UpstreamState
    from infer_cli.serve.run import ServeReporter

CHECK_INTERVAL = 2.0  # seconds between checks of the upstream
CHECK_TIMEOUT = 5.0


def upstream_base(url: str) -> str:
    """``http://host:8000/v1/`` -> ``http://host:8000`` (the proxy adds the paths itself)."""
    base = url.strip().rstrip("/")
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    if not base.startswith(("http://", "https://")) or "://" not in base or base.endswith("://"):
        raise UsageError(
            f"--upstream {url!r} is not an http(s) URL",
            hint="e.g. --upstream http://127.0.0.1:8000 (a running vLLM or OpenAI-compatible API)",
        )
    return base


async def check_upstream(client: httpx.AsyncClient, state: UpstreamState) -> tuple[bool, str]:
    """Is the upstream answering and serving our model? (ok, why not)."""
    import httpx

    headers = {"Authorization": f"Bearer {state.api_key}"} if state.api_key else {}
    try:
        response = await client.get(f"{state.url}/v1/models", headers=headers)
    except httpx.HTTPError as error:
        return False, f"the upstream is unreachable ({type(error).__name__})"
    if response.status_code in (401, 403):
        return False, f"the upstream refused the key (HTTP {response.status_code})"
    if response.status_code != 200:
        return False, f"the upstream answered HTTP {response.status_code}"
    try:
        served = [str(item["id"]) for item in response.json()["data"]]
    except (ValueError, KeyError, TypeError):
        return False, "the upstream did not answer /v1/models with a model list"
    if state.model not in served:
        return False, (
            f"upstream serves {', '.join(served) or 'no model'}, not {state.model}: "
            f"set model.served_name (or MODEL_ID) to one of them"
        )
    return True, ""


async def run_front(
    profile: Profile,
    *,
    profile_name: str | None = None,
    upstream: str,
    api_key: str | None,
    host: str,
    port: int,
    reporter: ServeReporter,
) -> None:
    """Serve the proxy in front of ``upstream`` until Ctrl-C / SIGTERM."""
    import httpx

    from infer_cli.proxy.state import UpstreamState
    from infer_cli.serve import heap
    from infer_cli.wire.server import AppServer, bind

    base = upstream_base(upstream)
    sock = bind(host, port)
    state = UpstreamState(url=base, api_key=api_key, model=profile.model.name)
    state.detail = "checking the upstream"
    server = AppServer(
        proxy_app(profile, state, profile_name, [reporter.generation]),
        sock,
        limits=connection_limits(profile),
    )

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[str] = []

    def on_signal(signum: int) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await server.start()
        heap.settle()  # the start-up heap, out of every later collection
        reporter.proxy_listening(server.url)
        reporter.step(f"proxy only: forwarding to {base}", "started", 0.0)
        async with httpx.AsyncClient(timeout=CHECK_TIMEOUT, trust_env=False) as client:
            last = ""
            while not stop.is_set():
                ok, why = await check_upstream(client, state)
                if ok and state.status != "ready":
                    state.status, state.detail = "ready", ""
                    reporter.ready(server.url, state.model, state.uptime(), None)
                elif not ok and why != last:
                    state.status, state.detail = "failed", why  # public: no address
                    reporter.warning(f"{why} ({base})")
                last = why
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), CHECK_INTERVAL)
        reporter.stopping(f"received {received[0]}" if received else "stopped")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        state.status = "stopped"
        await server.stop()
        reporter.stopped()
