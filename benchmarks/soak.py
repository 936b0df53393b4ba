"""Soak: many streamed requests through the proxy with the simulated engine's faults switched on.

    .venv/bin/python benchmarks/soak.py                      # 10,000 requests at 200 concurrency
    .venv/bin/python benchmarks/soak.py -n 2000 -c 100       # a shorter run

Starts ``infer serve --profile sim`` with injected faults (``sim.error_rate``: HTTP 500 before
the stream; ``sim.fail_after_tokens``: an error event after that many tokens, so requests asking
for more fail mid-stream) and sends streamed chat requests of random lengths. Every request must end
in exactly one of: a complete answer (content, a finish reason, usage, ``[DONE]``), a well-formed
error before the stream (the documented error JSON), or a well-formed error mid-stream (an error
chunk, then ``[DONE]``). None may hang (each has a deadline), none may be lost from the proxy's
metrics (``infer_proxy_requests_total`` counts every one, by status), and the proxy's RSS after
the run must be within 10% of its RSS after the first 1,000 requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
from _bench_common import PYTHON, free_port, stop, wait_health

ROUTE = "/v1/chat/completions"
DEADLINE = 60.0  # seconds a request may take before it counts as hung
HUNG: list[dict[str, object]] = []  # what each hung request had seen, for the report


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmRSS for pid {pid}")


def classify(status: int, content_type: str, body: bytes, events: list[str]) -> str:
    """The kind of ending a response had; ``malformed:...`` when it fits none."""
    if status != 200:
        try:
            error = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            return f"malformed:status {status} without the error JSON"
        if not {"code", "message", "type"} <= set(error):
            return f"malformed:status {status} error lacks fields"
        return f"error-{status}"
    if "text/event-stream" not in content_type:
        return "malformed:200 without a stream"
    if not events or events[-1] != "[DONE]":
        return "malformed:no [DONE] at the end"
    chunks = [json.loads(data) for data in events[:-1]]
    if any("error" in chunk for chunk in chunks):
        last = chunks[-1]
        if "error" not in last and not any(
            choice.get("finish_reason") == "error" for choice in last.get("choices", [])
        ):
            return "malformed:the error chunk is not the last one"
        return "midstream-error"
    finishes = [c["choices"][0].get("finish_reason") for c in chunks if c.get("choices")]
    if not any(finishes) or not any(chunk.get("usage") for chunk in chunks):
        return "malformed:complete stream without finish reason or usage"
    return "complete"


async def one(client: httpx.AsyncClient, url: str, rng: random.Random) -> str:
    body = {
        "model": "sim-model",
        "messages": [{"role": "user", "content": "soak " * rng.randint(5, 200)}],
        "max_tokens": rng.randint(4, 48),
        "stream": True,
    }
    events: list[str] = []
    stage = "connecting"
    try:
        async with asyncio.timeout(DEADLINE):
            async with client.stream("POST", url + ROUTE, json=body) as response:
                stage = "reading"
                if response.status_code != 200:
                    raw = await response.aread()
                    return classify(response.status_code, "", raw, events)
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        events.append(line[6:])
                kind = response.headers.get("content-type", "")
                return classify(200, kind, b"", events)
    except TimeoutError:
        HUNG.append({"stage": stage, "events": len(events), "last": events[-1:], **body})
        return "hung"
    except httpx.HTTPError as error:
        return f"malformed:transport {type(error).__name__}"


def proxy_counts(url: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("infer_proxy_requests_total{") and f'route="{ROUTE}"' in line:
            status = line.split('status="', 1)[1].split('"', 1)[0]
            counts[status] += int(float(line.rsplit(" ", 1)[1]))
    return counts


async def soak(url: str, pid: int, total: int, concurrency: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    kinds: Counter[str] = Counter()
    rss_first: float | None = None
    done = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(total):
        queue.put_nowait(index)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(DEADLINE + 5)
    began = time.monotonic()
    async with httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as client:

        async def worker() -> None:
            nonlocal done, rss_first
            while not queue.empty():
                queue.get_nowait()
                kinds[await one(client, url, rng)] += 1
                done += 1
                if done == 1000:
                    rss_first = rss_mib(pid)
                if done % 1000 == 0:
                    print(f"  {done:>6} done, {time.monotonic() - began:6.1f} s", file=sys.stderr)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - began
    await asyncio.sleep(1.0)  # let the proxy finish its bookkeeping
    rss_last = rss_mib(pid)
    return {
        "requests": total,
        "concurrency": concurrency,
        "seconds": round(elapsed, 1),
        "kinds": dict(kinds),
        "rss_after_1000_mib": None if rss_first is None else round(rss_first, 1),
        "rss_after_all_mib": round(rss_last, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=10_000)
    parser.add_argument("-c", "--concurrency", type=int, default=200)
    parser.add_argument("--error-rate", type=float, default=0.05)
    parser.add_argument("--fail-after-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    port = free_port()
    settings = {
        "sim.error_rate": args.error_rate,
        "sim.fail_after_tokens": args.fail_after_tokens,
        "sim.ms_per_output_token": 2,
        "sim.max_num_seqs": 1024,
    }
    argv = [PYTHON, "-m", "infer_cli", "serve", "--profile", "sim", "--port", str(port)]
    for key, value in settings.items():
        argv += ["--set", f"{key}={value}"]
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "INFER_HOME": home, "NO_COLOR": "1"}
        server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_health(url, server, 60)
            result = asyncio.run(soak(url, server.pid, args.requests, args.concurrency, args.seed))
            counted = proxy_counts(url)
        finally:
            stop(server)
    kinds: dict[str, int] = result["kinds"]  # type: ignore[assignment]
    bad = {kind: n for kind, n in kinds.items() if kind.startswith("malformed") or kind == "hung"}
    client_by_status = Counter(
        {
            "200": kinds.get("complete", 0) + kinds.get("midstream-error", 0),
            **{k.split("-", 1)[1]: n for k, n in kinds.items() if k.startswith("error-")},
        }
    )
    lost = args.requests - sum(counted.values())
    first, last = result["rss_after_1000_mib"], result["rss_after_all_mib"]
    growth = None if not first else (float(last) / float(first) - 1) * 100  # type: ignore[arg-type]
    result.update(
        {
            "proxy_counted_by_status": dict(counted),
            "client_counted_by_status": dict(client_by_status),
            "lost_from_metrics": lost,
            "rss_growth_percent": None if growth is None else round(growth, 1),
        }
    )
    print(json.dumps(result, indent=2))
    verdicts = {
        "no request hung or ended malformed": not bad,
        "the proxy's metrics count every request, by status": lost == 0
        and counted == client_by_status,
        "RSS after the run within 10% of after the first 1,000": growth is not None
        and growth <= 10.0,
    }
    for claim, ok in verdicts.items():
        print(f"{'PASS' if ok else 'FAIL'}  {claim}")
    if bad:
        print(f"bad endings: {bad}")
    for hung in HUNG[:5]:
        hung["messages"] = "..."
        print(f"hung: {hung}")
    sys.exit(0 if all(verdicts.values()) else 1)


if __name__ == "__main__":
    main()
