"""What the proxy adds per request: the same completions sent straight to an upstream and through
the proxy, alternately, on this machine.

The upstream is the tests' fake vLLM (instant answers, ``--chunks`` content chunks per stream), in
its own process; the proxy (with the OpenRouter rewriting, usage, cost and generation records) in
another; the client here. Sequential requests, alternating direct/proxied, then a concurrent batch
of each. Reports medians, p90s, the added milliseconds and the ratio.

    .venv/bin/python benchmarks/proxy_overhead.py --requests 300 --chunks 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent

UPSTREAM = """
import asyncio, sys
from tests.fake_upstream import FakeUpstream
async def main():
    fake = FakeUpstream(api_key="k", model="m", chunks=int(sys.argv[1]))
    await fake.start()
    print(fake.url, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

PROXY = """
import asyncio, sys
from infer_cli.proxy.app import ProxyConfig, create_app
from infer_cli.proxy.openrouter.listing import ProviderInfo
from infer_cli.proxy.openrouter.pricing import Prices
from infer_cli.wire.server import AppServer, bind
from infer_cli.proxy.state import UpstreamState
async def main():
    state = UpstreamState(url=sys.argv[1], api_key="k", model="m", status="ready")
    prices = Prices.parse(prompt="0.000001", completion="0.000002")
    provider = ProviderInfo(model="m", prices=prices)
    server = AppServer(create_app(ProxyConfig(), state, provider=provider), bind("127.0.0.1", 0))
    await server.start()
    print(server.url, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def spawn(code: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http"):
        process.kill()
        raise SystemExit(f"could not start: {code[:40]!r}")
    return process, url


BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def one(client: httpx.AsyncClient, url: str, *, stream: bool, key: str | None) -> float:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    started = time.perf_counter()
    if stream:
        body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
        async with client.stream(
            "POST", url + "/v1/chat/completions", json=body, headers=headers
        ) as response:
            async for _ in response.aiter_raw():
                pass
    else:
        response = await client.post(url + "/v1/chat/completions", json=BODY, headers=headers)
        response.read()
    assert response.status_code == 200, response.status_code
    return time.perf_counter() - started


async def measure(direct: str, proxied: str, requests: int, concurrency: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    pool = concurrency * 2
    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    async with httpx.AsyncClient(trust_env=False, timeout=30, limits=limits) as client:
        for stream in (False, True):
            kind = "stream" if stream else "plain"
            for _ in range(20):  # warm-up
                await one(client, direct, stream=stream, key="k")
                await one(client, proxied, stream=stream, key=None)
            times: dict[str, list[float]] = {"direct": [], "proxy": []}
            for _ in range(requests):
                times["direct"].append(await one(client, direct, stream=stream, key="k"))
                times["proxy"].append(await one(client, proxied, stream=stream, key=None))
            batch: dict[str, float] = {}
            for side, url, key in (("direct", direct, "k"), ("proxy", proxied, None)):
                started = time.perf_counter()
                await asyncio.gather(
                    *(one(client, url, stream=stream, key=key) for _ in range(requests))
                )
                batch[side] = requests / (time.perf_counter() - started)
            direct_ms = statistics.median(times["direct"]) * 1000
            proxy_ms = statistics.median(times["proxy"]) * 1000
            results[kind] = {
                "median_ms": {"direct": round(direct_ms, 3), "proxy": round(proxy_ms, 3)},
                "p90_ms": {
                    side: round(statistics.quantiles(values, n=10)[-1] * 1000, 3)
                    for side, values in times.items()
                },
                "added_ms": round(proxy_ms - direct_ms, 3),
                "ratio": round(proxy_ms / direct_ms, 2),
                f"requests_per_s_at_{concurrency}": {k: round(v, 1) for k, v in batch.items()},
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--chunks", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    upstream, upstream_url = spawn(UPSTREAM, str(args.chunks))
    proxy, proxy_url = spawn(PROXY, upstream_url)
    try:
        results = asyncio.run(measure(upstream_url, proxy_url, args.requests, args.concurrency))
    finally:
        for process in (proxy, upstream):
            process.terminate()
            process.wait(timeout=10)
    print(json.dumps({"chunks_per_stream": args.chunks, **results}, indent=2))


if __name__ == "__main__":
    main()
