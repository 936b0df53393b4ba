"""The denial-of-service probes of issue 11 at full size, against the proxy with its connection and
body limits (``on``, the defaults) and with them switched off (``off``: every limit set huge), in
one run on this machine.

For each probe and mode a fresh proxy process (in front of the tests' fake vLLM, in its own
process) is started with two keys and ``max_concurrent=4``; a bystander with the other key streams
a long completion (a chunk every 10 ms) through it meanwhile. Reported per probe: the proxy's peak
RSS (VmHWM) and open file descriptors, the bystander stream's longest gap between chunks (its
stall) and what the attacker got.

1. ``headers``: one unauthenticated connection sends ``--header-mb`` MB of short header lines to
   ``/health`` as fast as the proxy takes them.
2. ``slow-heads``: ``--connections`` connections each send a header line a second, for
   ``--hold`` seconds; file descriptors are sampled throughout.
3. ``slow-bodies``: one key opens 4 POSTs with ``Content-Length: 1000`` and sends a byte every 2 s;
   the bystander's request comes after them (with the old slot timing it was refused 429).
4. ``parse``: a 10 MB body of 200,000 tiny messages, with ``/health`` polled meanwhile.

    .venv/bin/python benchmarks/dos_probe.py              # full size (about 3 minutes)
    .venv/bin/python benchmarks/dos_probe.py --header-mb 20 --connections 300 --hold 15
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
if not Path(PYTHON).exists():
    PYTHON = sys.executable

KEYS = ("key-attacker-1", "key-bystander-2")
MODES = ("off", "on")

UPSTREAM = """
import asyncio
from tests.fake_upstream import FakeUpstream
async def main():
    fake = FakeUpstream(api_key="k", model="m", chunks=100_000, chunk_delay=0.01)
    await fake.start()
    print(fake.url, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

PROXY = """
import asyncio, sys
from infer_cli.proxy.app import ProxyConfig, create_app
from infer_cli.proxy.guards.bounds import BodyBounds
from infer_cli.wire.guarded_http import ConnectionLimits
from infer_cli.proxy.guards.middleware import GuardConfig
from infer_cli.wire.server import AppServer, bind
from infer_cli.proxy.state import UpstreamState
HUGE = 10**12
async def main():
    upstream, mode, keys = sys.argv[1], sys.argv[2], tuple(sys.argv[3].split(","))
    state = UpstreamState(url=upstream, api_key="k", model="m", status="ready")
    if mode == "on":
        limits, bounds = ConnectionLimits(), BodyBounds()
    else:
        limits = ConnectionLimits(
            max_head_bytes=HUGE, max_header_lines=HUGE, max_url_bytes=HUGE,
            header_timeout=HUGE, body_timeout=HUGE, max_connections=HUGE,
        )
        bounds = BodyBounds(max_json_values=HUGE, max_json_depth=HUGE, max_messages=HUGE)
    guards = GuardConfig(api_keys=keys, max_concurrent=4, engine_metrics=False)
    app = create_app(ProxyConfig(body_bounds=bounds), state, guards=guards)
    server = AppServer(app, bind("127.0.0.1", 0), limits=limits)
    await server.start()
    print(server.url, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def spawn(code: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [PYTHON, "-c", code, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http"):
        process.kill()
        raise SystemExit(f"could not start: {code[:60]!r}")
    return process, url


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class Bystander:
    """A long streamed completion through the proxy; records the longest gap between chunks."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.gap = 0.0
        self.chunks = 0
        self.status: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Bystander:
        self._task = asyncio.create_task(self._run())
        deadline = time.monotonic() + 5
        while self.chunks < 5 and self.status in (None, 200) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self.gap = 0.0  # from now on
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await self._task

    async def _run(self) -> None:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        headers = {"authorization": f"Bearer {KEYS[1]}"}
        async with (
            httpx.AsyncClient(trust_env=False, timeout=600) as client,
            client.stream(
                "POST", self.url + "/v1/chat/completions", json=body, headers=headers
            ) as response,
        ):
            self.status = response.status_code
            last = time.monotonic()
            async for _ in response.aiter_raw():
                now = time.monotonic()
                self.gap = max(self.gap, now - last)
                last = now
                self.chunks += 1


async def read_answer(reader: asyncio.StreamReader, timeout: float) -> str:
    try:
        data = await asyncio.wait_for(reader.read(4096), timeout)
    except (TimeoutError, ConnectionError):
        return "no answer"
    if not data:
        return "closed without an answer"
    line = data.split(b"\r\n", 1)[0].decode("latin-1")
    return line.removeprefix("HTTP/1.1 ")


def address_of(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def probe_headers(url: str, pid: int, megabytes: int) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection(*address_of(url))
    answer = asyncio.create_task(read_answer(reader, 600))
    writer.write(b"GET /health HTTP/1.1\r\nHost: proxy\r\n")
    lines = (b"X-Pad: " + b"a" * 25 + b"\r\n") * 8192
    sent = 0
    started = time.monotonic()
    with contextlib.suppress(ConnectionError):
        while sent < megabytes * 2**20 and not answer.done():
            writer.write(lines)
            await writer.drain()
            sent += len(lines)
        if not answer.done():
            writer.write(b"\r\n")
            await writer.drain()
    got = await answer
    writer.close()
    return {
        "sent_mb": round(sent / 2**20, 1),
        "seconds": round(time.monotonic() - started, 1),
        "attacker_got": got,
    }


async def probe_slow_heads(url: str, pid: int, count: int, hold: float) -> dict[str, Any]:
    conns = []
    for _ in range(count):
        try:
            conns.append(await asyncio.open_connection(*address_of(url)))
        except OSError:
            break
    for _, writer in conns:
        writer.write(b"GET /health HTTP/1.1\r\n")
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    while time.monotonic() - started < hold:
        for _, writer in conns:
            if not writer.is_closing():
                with contextlib.suppress(ConnectionError):
                    writer.write(b"X-Slow: 1\r\n")
        samples.append((time.monotonic() - started, fds(pid)))
        await asyncio.sleep(1)
    answers: dict[str, int] = {}
    for reader, _ in conns:
        if reader.at_eof() or reader._buffer:  # type: ignore[attr-defined]
            got = await read_answer(reader, 0.1)
        else:
            got = "still held"
        answers[got] = answers.get(got, 0) + 1
    for _, writer in conns:
        writer.close()
    return {
        "opened": len(conns),
        "fds_max": max(value for _, value in samples),
        "fds_at_end": samples[-1][1],
        "held_at_end": answers.get("still held", 0),
        "attacker_got": answers,
    }


async def probe_slow_bodies(url: str, pid: int, hold: float) -> dict[str, Any]:
    conns = []
    for _ in range(4):
        reader, writer = await asyncio.open_connection(*address_of(url))
        writer.write(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\n"
            f"Authorization: Bearer {KEYS[0]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: 1000\r\n\r\n{{".encode()
        )
        conns.append((reader, writer))
    await asyncio.sleep(0.5)
    result: dict[str, Any] = {}
    async with Bystander(url) as bystander:
        result["bystander_status"] = bystander.status
        started = time.monotonic()
        while time.monotonic() - started < hold:
            for _, writer in conns:
                if not writer.is_closing():
                    with contextlib.suppress(ConnectionError):
                        writer.write(b" ")
            await asyncio.sleep(2)
        result["bystander_stall_ms"] = round(bystander.gap * 1000, 1)
    for _, writer in conns:
        writer.close()
    return result


TINY_MESSAGES = json.dumps(
    {"model": "m", "messages": [{"role": "user", "content": "hi"}] * 200_000}
).encode()
"""Built once, before any bystander runs: encoding it holds this process's loop too."""


SENDER = """
import json, socket, sys, time
host, port, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}] * 200_000})
head = (f"POST /v1/chat/completions HTTP/1.1\\r\\nHost: p\\r\\nAuthorization: Bearer {key}\\r\\n"
        f"Content-Type: application/json\\r\\nContent-Length: {len(body)}\\r\\n"
        "Connection: close\\r\\n\\r\\n")
sys.stdin.readline()
started = time.monotonic()
with socket.create_connection((host, port)) as sock:
    sock.sendall(head.encode() + body.encode())
    answer = sock.recv(64).split(b" ")[1].decode()
print(answer, round(time.monotonic() - started, 2), flush=True)
"""
"""The attacker of the parse probe, in its own process: the bystander's gaps are the proxy's."""


async def probe_parse(url: str, pid: int) -> dict[str, Any]:
    host, port = address_of(url)
    sender = subprocess.Popen(
        [PYTHON, "-c", SENDER, host, str(port), KEYS[0]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sender.stdin is not None and sender.stdout is not None
    health: list[float] = []
    done = asyncio.Event()

    async def poll(client: httpx.AsyncClient) -> None:
        while not done.is_set():
            started = time.monotonic()
            await client.get(url + "/health")
            health.append(time.monotonic() - started)
            await asyncio.sleep(0.01)

    async with httpx.AsyncClient(trust_env=False, timeout=120) as client:
        poller = asyncio.create_task(poll(client))
        await asyncio.sleep(1.0)  # the sender has built its body
        sender.stdin.write("go\n")
        sender.stdin.flush()
        status, seconds = (await asyncio.to_thread(sender.stdout.readline)).split()
        sender.wait()
        await asyncio.sleep(0.3)
        done.set()
        await poller
    return {
        "body_mb": round(len(TINY_MESSAGES) / 2**20, 1),
        "attacker_got": int(status),
        "answer_s": float(seconds),
        "health_max_ms": round(max(health) * 1000, 1),
    }


async def run_probe(
    name: str, upstream: str, mode: str, args: argparse.Namespace
) -> dict[str, Any]:
    process, url = spawn(PROXY, upstream, mode, ",".join(KEYS))
    try:
        before = rss_mb(process.pid)
        if name == "slow-bodies":
            result = await probe_slow_bodies(url, process.pid, args.body_hold)
        else:
            async with Bystander(url) as bystander:
                if name == "headers":
                    result = await probe_headers(url, process.pid, args.header_mb)
                elif name == "slow-heads":
                    result = await probe_slow_heads(url, process.pid, args.connections, args.hold)
                else:
                    result = await probe_parse(url, process.pid)
                result["bystander_stall_ms"] = round(bystander.gap * 1000, 1)
        result["rss_before_mb"] = round(before, 1)
        result["rss_peak_mb"] = round(rss_mb(process.pid, "VmHWM"), 1)
        result.setdefault("fds_max", fds(process.pid))
        return result
    finally:
        stop(process)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--header-mb", type=int, default=200)
    parser.add_argument("--connections", type=int, default=1500)
    parser.add_argument("--hold", type=float, default=35.0, help="seconds of trickled heads")
    parser.add_argument("--body-hold", type=float, default=12.0, help="seconds of trickled bodies")
    parser.add_argument("--probes", default="headers,slow-heads,slow-bodies,parse")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    upstream_process, upstream = spawn(UPSTREAM)
    results: dict[str, dict[str, Any]] = {}
    try:
        for name in args.probes.split(","):
            for mode in MODES:
                print(f"probe {name} ({mode}) ...", file=sys.stderr, flush=True)
                results[f"{name}/{mode}"] = await run_probe(name, upstream, mode, args)
    finally:
        stop(upstream_process)
    for key, result in results.items():
        print(f"{key:18} " + "  ".join(f"{name}={value}" for name, value in result.items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
