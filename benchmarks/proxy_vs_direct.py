"""The proxy against a direct connection to the same engine: added TTFT and streamed throughput.

The engine (the simulator, or with ``--engine cpu`` the real CPU engine: vLLM + LMCache + SmolLM2)
and the proxy (``infer serve --upstream``, as a user runs it) are processes of their own; the load
generator is this process, a small raw-socket HTTP/1.1 client with one keep-alive connection per
stream. At each concurrency (1, 32, 128 streams) rounds alternate direct / proxied, the order
swapped every round, so that drift on a shared machine hits both sides alike. In a round every
stream sends ``--requests-per-stream`` streamed chat completions back to back (``--max-tokens``
each; the simulator paced at ``--ms-per-token``, its first token after ``--first-token-ms``, or
with ``--ms-per-token 0`` saturated: every chunk at once); on the simulator the streams start spread
over one answer's time (``--stagger``), as independent clients do, rather than all in the same
millisecond (``--burst``). The proxy runs with the full contract (``--contract full``: an API key
the client sends, rate and concurrency limits far above the load, prices; metrics and usage are
always on), or ``--contract bare``. Reported per concurrency:

- TTFT, request written to first content token read: median and p99 of each side, and what the
  proxy adds;
- streamed tokens per second while every stream is busy (from the start of the last stream to the
  end of the first; each answer's tokens, from its usage chunk, spread over its streaming time), and
  the proxy's as a ratio of direct (median of the rounds' ratios);
- CPU time per request of the proxy, the engine (its whole process tree) and the client, from
  ``/proc``: on a small machine the three share the cores, and noise moves CPU time less than
  latency.

    .venv/bin/python benchmarks/proxy_vs_direct.py --output proxy_vs_direct.json
    .venv/bin/python benchmarks/proxy_vs_direct.py --engine cpu --max-tokens 16 --rounds 2 \
        --requests-at-1 8 --requests-per-stream 1

``--front router`` puts vLLM's Rust router (``vllm-router`` from infer's engine venv, round robin
over the one engine) on the proxied side instead of infer's proxy: the baseline issue 14 compares
the proxy with, measured on the same machine and load. Run both fronts back to back.

``--engine cpu`` needs the CPU engine and the model (``infer engine install``, ``infer pull``); it
starts LMCache and vLLM bare, with the command lines ``infer serve --profile cpu`` would run (the
internal key included), and the proxy in front of that vLLM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from _bench_common import free_port, process_tree, stop_group, wait_ok

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIM_MODEL = "sim-model"
CONTENT = re.compile(rb'"(?:content|text)":"[^"]')
"""An event with output text (the chat role chunk has ``"content":""``)."""
ENGINE_KEY = "bench-internal-key"


# --- the processes --------------------------------------------------------------------------------


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process (and its waited-for children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    tick = os.sysconf("SC_CLK_TCK")
    return (utime + cutime) / tick, (stime + cstime) / tick


def cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and every live process below it."""
    total = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            total += sum(cpu_times(member))
    return total


@dataclass
class Stack:
    """The processes under test, stopped in reverse order."""

    logs: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, name: str, argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                list(argv),
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def close(self) -> None:
        pids = [pid for process in self.processes for pid in process_tree(process.pid)]
        for process in reversed(self.processes):
            stop_group(process)
        for pid in pids:  # what vLLM's workers leave of LMCache's shared memory when stopped
            for segment in Path("/dev/shm").glob(f"lmcache_kv_{pid}_*"):
                segment.unlink(missing_ok=True)


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    key: str | None
    pid: int
    """The process that does this side's work in front of the engine (the engine for direct)."""


def start_sim(stack: Stack, options: argparse.Namespace) -> tuple[Target, str]:
    port = free_port()
    settings = {
        "model": SIM_MODEL,
        "ms_per_output_token": options.ms_per_token,
        "first_token_ms": options.first_token_ms if options.ms_per_token else 0.0,
        "prefill_ms_per_token": 0.01,
        "max_num_seqs": 256,
        "max_tokens_default": options.max_tokens,
        "seed": 7,
    }
    process = stack.spawn(
        "sim",
        [sys.executable, "-m", "infer_cli.sim", "--host", "127.0.0.1", "--port", str(port),
         "--settings-json", json.dumps(settings)],
        {**os.environ, "VLLM_API_KEY": ENGINE_KEY},
    )  # fmt: skip
    wait_ok(f"http://127.0.0.1:{port}/health", process, 30)
    return Target("direct", port, ENGINE_KEY, process.pid), SIM_MODEL


def start_cpu_engine(stack: Stack, options: argparse.Namespace) -> tuple[Target, str]:
    """LMCache and vLLM bare, exactly as ``infer serve --profile cpu`` plans them."""
    from infer_cli import serve
    from infer_cli.config import loader

    plan = serve.prepare(loader.load("cpu"), install=False)
    vllm: subprocess.Popen[bytes] | None = None
    port, key = 0, None
    for command in plan.commands:
        env = {**os.environ, **command.env}
        process = stack.spawn(command.name, command.argv, env)
        print(f"starting {command.name} ...", file=sys.stderr, flush=True)
        wait_ok(str(command.health_url), process, options.engine_timeout)
        if command.name == "vllm":
            vllm, key = process, command.env.get("VLLM_API_KEY")
            port = int(command.argv[command.argv.index("--port") + 1])
    if vllm is None:
        raise SystemExit("the cpu profile planned no vllm command")
    return Target("direct", port, key, vllm.pid), plan.model


CLIENT_KEY = "bench-client-key"
FULL_CONTRACT = [
    # Limits on, far above the load (every request is checked and counted, none refused), and
    # prices, so that every generation is priced: OpenRouter's contract as a provider runs it.
    "proxy.rate_limit_rpm=100000000",
    "proxy.rate_limit_tpm=1000000000000",
    "proxy.max_concurrent_per_key=100000",
    "proxy.max_concurrent=100000",
    'openrouter.pricing.prompt="0.0000002"',
    'openrouter.pricing.completion="0.0000008"',
    'openrouter.pricing.input_cache_read="0.0000001"',
]


def start_proxy(
    stack: Stack,
    profile: str,
    engine: Target,
    model: str,
    home: Path,
    contract: str,
    probe: Path | None = None,
    loop: str = "asyncio",
) -> Target:
    """``infer serve --upstream``; with the ``full`` contract an API key (the client sends it),
    rate and concurrency limits and prices are on; metrics and usage always are. With ``probe``
    the proxy runs under ``_proxy_probe.py``, which writes its loop-lag and GC report there."""
    port = free_port()
    launcher = ["-m", "infer_cli"]
    if probe is not None or loop == "uvloop":
        launcher = [str(Path(__file__).with_name("_proxy_probe.py"))]
    argv = [
        sys.executable, *launcher, "serve", "--profile", profile,
        "--host", "127.0.0.1", "--port", str(port),
        "--upstream", f"http://127.0.0.1:{engine.port}",
        "--set", f"model.served_name={model}",
    ]  # fmt: skip
    env = {**os.environ, "INFER_HOME": str(home), "NO_COLOR": "1"}
    env.pop("INFER_API_KEYS", None)
    if probe is not None:
        env["PROXY_PROBE_OUT"] = str(probe.resolve())
    if loop == "uvloop":
        env["PROXY_PROBE_UVLOOP"] = "1"
    key = None
    if contract == "full":
        key = env["INFER_API_KEYS"] = CLIENT_KEY
        for setting in FULL_CONTRACT:
            argv += ["--set", setting]
    if engine.key:
        argv += ["--upstream-key", engine.key]
    process = stack.spawn("proxy", argv, env)
    wait_ok(f"http://127.0.0.1:{port}/health", process, 60)
    return Target("proxy", port, key, process.pid)


def start_router(stack: Stack, engine: Target) -> Target:
    """vLLM's Rust router (``vllm-router``, from infer's engine venv) over the one engine, on the
    same side of the comparison as the proxy: what the field's own front costs on this machine.
    It passes the client's ``Authorization`` through, so the client sends the engine's key."""
    from infer_cli.engine.environment import router_executable

    router = router_executable()
    if router is None:
        raise SystemExit("vllm-router is not installed: run `infer engine install`")
    port, metrics_port = free_port(), free_port()
    argv = [
        str(router), "--host", "127.0.0.1", "--port", str(port),
        "--worker-urls", f"http://127.0.0.1:{engine.port}", "--policy", "round_robin",
        "--prometheus-host", "127.0.0.1", "--prometheus-port", str(metrics_port),
    ]  # fmt: skip
    process = stack.spawn("router", argv, dict(os.environ))
    wait_ok(f"http://127.0.0.1:{port}/liveness", process, 60)
    return Target("proxy", port, engine.key, process.pid)


# --- the load generator ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    started: float
    first: float | None
    """When the first content token was read (``time.perf_counter``)."""
    ended: float
    tokens: int
    """Completion tokens, from the usage chunk."""
    chunks: int
    """Events with content."""

    @property
    def ttft(self) -> float | None:
        return None if self.first is None else self.first - self.started


class StreamError(Exception):
    pass


_HEAD, _SIZE, _DATA, _TRAILER, _LENGTH, _IDLE = range(6)


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that sends streamed completions and reads them.

    A protocol that parses the answer as it arrives rather than a stream reader: on a two-core
    machine the client shares the cores with the proxy and the engine, so it should cost little.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Sample] | None = None
        self._state = _IDLE
        self._buffer = b""
        self._events = b""
        self._remaining = 0
        self._status = 0
        self._close_after = False
        self._started = 0.0
        self._first: float | None = None
        self._tokens = self._chunks = 0
        self._done = False

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail(StreamError(f"the connection was lost ({exc})"))

    async def complete(self, request: bytes) -> Sample:
        if self._transport is None:
            await self.open()
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._state, self._buffer, self._events = _HEAD, b"", b""
        self._first, self._tokens, self._chunks, self._done = None, 0, 0, False
        self._started = time.perf_counter()
        self._transport.write(request)
        return await self._waiter

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buffer = self._buffer + data if self._buffer else data
        pos = 0
        try:
            while pos < len(buffer):
                state = self._state
                if state == _DATA:
                    if len(buffer) - pos < self._remaining + 2:
                        break
                    self._read_events(buffer[pos : pos + self._remaining], now)
                    pos += self._remaining + 2
                    self._state = _SIZE
                elif state == _SIZE:
                    end = buffer.find(b"\r\n", pos)
                    if end < 0:
                        break
                    self._remaining = int(buffer[pos:end].split(b";")[0], 16)
                    self._state = _DATA if self._remaining else _TRAILER
                    pos = end + 2
                elif state == _TRAILER:
                    end = buffer.find(b"\r\n", pos)
                    if end < 0:
                        break
                    if end == pos:
                        self._finish()
                    pos = end + 2
                elif state == _HEAD:
                    end = buffer.find(b"\r\n\r\n", pos)
                    if end < 0:
                        break
                    self._read_head(buffer[pos:end])
                    pos = end + 4
                elif state == _LENGTH:
                    if len(buffer) - pos < self._remaining:
                        break
                    body = buffer[pos : pos + self._remaining]
                    pos += self._remaining
                    self._state = _IDLE
                    self._fail(StreamError(f"HTTP {self._status}: {body[:300]!r}"))
                else:
                    raise StreamError("bytes that answer no request")
        except (StreamError, ValueError) as exc:
            self._fail(exc if isinstance(exc, StreamError) else StreamError(str(exc)))
            if self._transport is not None:
                self._transport.close()
            return
        self._buffer = buffer[pos:]

    def _read_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        self._status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        self._close_after = headers.get(b"connection") == b"close"
        if headers.get(b"transfer-encoding") != b"chunked":
            self._state, self._remaining = _LENGTH, int(headers.get(b"content-length", b"0"))
        elif self._status != 200:
            raise StreamError(f"HTTP {self._status}")
        else:
            self._state = _SIZE

    def _read_events(self, payload: bytes, now: float) -> None:
        events = self._events + payload if self._events else payload
        start = 0
        while (end := events.find(b"\n\n", start)) >= 0:
            event, start = events[start:end], end + 2
            if not event.startswith(b"data: "):
                continue  # keep-alive comments
            if event == b"data: [DONE]":
                self._done = True
            elif CONTENT.search(event):
                self._chunks += 1
                if self._first is None:
                    self._first = now
            if b'"usage":{' in event:
                usage = json.loads(event[6:]).get("usage") or {}
                self._tokens = int(usage.get("completion_tokens", 0))
        self._events = events[start:]

    def _finish(self) -> None:
        self._state = _IDLE
        if not self._done:
            self._fail(StreamError("the stream ended without [DONE]"))
        elif self._waiter is not None and not self._waiter.done():
            sample = Sample(
                self._started, self._first, time.perf_counter(), self._tokens, self._chunks
            )
            self._waiter.set_result(sample)
        if self._close_after and self._transport is not None:
            self._transport.close()

    def _fail(self, error: StreamError) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)


def request_bytes(target: Target, model: str, max_tokens: int, index: int) -> bytes:
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": f"Count to ten, please ({index})."}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "ignore_eos": True,  # vLLM: every answer is max_tokens long
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    head = [
        "POST /v1/chat/completions HTTP/1.1",
        f"Host: 127.0.0.1:{target.port}",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {len(body)}",
    ]
    if target.key:
        head.append(f"Authorization: Bearer {target.key}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class Round:
    side: str
    concurrency: int
    samples: list[Sample]
    window: tuple[float, float]
    """While every stream was busy: from the start of the last stream to the end of the first."""
    seconds: float
    """From the first request to the end of the last."""
    cpu: float
    """CPU seconds of the side's process (the proxy; the engine for direct) during the round."""
    engine_cpu: float
    client_cpu: float
    errors: list[str] = field(default_factory=list)
    """Requests that failed (an error status, a broken stream): counted, not measured."""

    @property
    def window_tokens(self) -> float:
        """Tokens streamed inside the window, each answer's spread evenly over its stream."""
        a, b = self.window
        total = 0.0
        for sample in self.samples:
            start = sample.first if sample.first is not None else sample.started
            if sample.ended > start:
                overlap = min(b, sample.ended) - max(a, start)
                total += sample.tokens * max(0.0, overlap) / (sample.ended - start)
            elif a <= sample.ended <= b:
                total += sample.tokens
        return total

    @property
    def tokens_per_second(self) -> float:
        a, b = self.window
        return self.window_tokens / (b - a)


async def run_round(
    target: Target,
    engine_pid: int,
    model: str,
    concurrency: int,
    per_stream: int,
    max_tokens: int,
    stagger: float,
) -> Round:
    """``concurrency`` streams, each sending ``per_stream`` requests back to back, the n-th stream
    starting ``n / concurrency * stagger`` s after the first.
    """
    connections = [Connection(target.port) for _ in range(concurrency)]
    await asyncio.gather(*(connection.open() for connection in connections))
    samples: list[Sample] = []
    errors: list[str] = []
    last_ends: list[float] = []

    async def stream(index: int, connection: Connection) -> None:
        await asyncio.sleep(index / concurrency * stagger)
        for number in range(per_stream):
            request = request_bytes(target, model, max_tokens, index * per_stream + number)
            try:
                samples.append(await connection.complete(request))
            except (StreamError, OSError) as exc:
                errors.append(str(exc))
        last_ends.append(time.perf_counter())

    cpu_before, engine_before = cpu_seconds(target.pid), cpu_seconds(engine_pid)
    client_before = sum(os.times()[:2])
    started = time.perf_counter()
    try:
        await asyncio.gather(*(stream(i, c) for i, c in enumerate(connections)))
    finally:
        await asyncio.gather(*(connection.close() for connection in connections))
    client_cpu = sum(os.times()[:2]) - client_before
    cpu = cpu_seconds(target.pid) - cpu_before
    engine_cpu = cpu_seconds(engine_pid) - engine_before
    if not samples:
        raise SystemExit(f"every request failed on {target.name}: {errors[0]}")
    begin = min(sample.started for sample in samples)
    end = max(sample.ended for sample in samples)
    window = (started + (concurrency - 1) / concurrency * stagger, min(last_ends))
    if per_stream < 2 or window[1] - window[0] < 0.1 * (end - begin):
        window = (begin, end)  # too few requests per stream for a steady state: the whole round
    if errors:
        print(f"  {len(errors)} failed on {target.name}, e.g. {errors[0]}", file=sys.stderr)
    return Round(
        target.name, concurrency, samples, window, end - begin, cpu, engine_cpu, client_cpu, errors
    )


# --- statistics and the report --------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ttfts(rounds: Sequence[Round]) -> list[float]:
    return [ttft for r in rounds for s in r.samples if (ttft := s.ttft) is not None]


def summarize(concurrency: int, direct: list[Round], proxy: list[Round]) -> dict[str, Any]:
    ratios = [p.tokens_per_second / d.tokens_per_second for d, p in zip(direct, proxy, strict=True)]

    def side(rounds: list[Round]) -> dict[str, Any]:
        values = ttfts(rounds)
        requests = sum(len(r.samples) for r in rounds)
        tokens = sum(s.tokens for r in rounds for s in r.samples)
        chunks = sum(s.chunks for r in rounds for s in r.samples)
        return {
            "requests": requests,
            "failed": sum(len(r.errors) for r in rounds),
            "ttft_median_ms": statistics.median(values) * 1000,
            "ttft_p99_ms": percentile(values, 99) * 1000,
            "tokens_per_s": sum(r.window_tokens for r in rounds)
            / sum(r.window[1] - r.window[0] for r in rounds),
            "tokens_per_s_whole_round": tokens / sum(r.seconds for r in rounds),
            "tokens_per_chunk": tokens / chunks if chunks else 0.0,
            "cpu_ms_per_request": sum(r.cpu for r in rounds) / requests * 1000,
            "engine_cpu_ms_per_request": sum(r.engine_cpu for r in rounds) / requests * 1000,
            "client_cpu_ms_per_request": sum(r.client_cpu for r in rounds) / requests * 1000,
        }

    d, p = side(direct), side(proxy)
    return {
        "concurrency": concurrency,
        "direct": d,
        "proxy": p,
        "added_ttft_median_ms": p["ttft_median_ms"] - d["ttft_median_ms"],
        "added_ttft_p99_ms": p["ttft_p99_ms"] - d["ttft_p99_ms"],
        "throughput_ratio_median": statistics.median(ratios),
        "throughput_ratio_pooled": p["tokens_per_s"] / d["tokens_per_s"],
        "round_ratios": ratios,
    }


def table(results: Sequence[dict[str, Any]], front: str = "proxy") -> str:
    """The figures per concurrency; ``front`` names the proxied side's columns (``router``)."""
    rows = [
        f"{'':7} {'TTFT median (ms)':^26} {'TTFT p99 (ms)':^26} {'streamed tokens/s':^23}"
        f" {'CPU ms per request':^22}",
        f"{'streams':>7} {'direct':>8} {front:>8} {'added':>8} {'direct':>8} {front:>8}"
        f" {'added':>8} {'direct':>8} {front:>8} {'ratio':>5} {front:>6} {'engine':>7}"
        f" {'client':>7}",
    ]
    failed = []
    for r in results:
        d, p = r["direct"], r["proxy"]
        if d["failed"] or p["failed"]:
            failed.append(
                f"{r['concurrency']} streams: {d['failed']} requests failed direct, "
                f"{p['failed']} through the proxy (not in the figures)"
            )
        rows.append(
            f"{r['concurrency']:>7} {d['ttft_median_ms']:>8.2f} {p['ttft_median_ms']:>8.2f}"
            f" {r['added_ttft_median_ms']:>+8.2f} {d['ttft_p99_ms']:>8.2f} {p['ttft_p99_ms']:>8.2f}"
            f" {r['added_ttft_p99_ms']:>+8.2f} {d['tokens_per_s']:>8.0f} {p['tokens_per_s']:>8.0f}"
            f" {r['throughput_ratio_median']:>5.2f} {p['cpu_ms_per_request']:>6.2f}"
            f" {d['engine_cpu_ms_per_request']:>7.2f} {d['client_cpu_ms_per_request']:>7.2f}"
        )
    return "\n".join(rows + failed)


# --- the run --------------------------------------------------------------------------------------


async def measure(
    direct: Target, proxy: Target, model: str, options: argparse.Namespace
) -> list[dict[str, Any]]:
    results = []
    for concurrency in options.concurrency:
        per_stream = options.requests_at_1 if concurrency == 1 else options.requests_per_stream
        stagger = 0.0 if concurrency == 1 else options.stagger
        for target in (direct, proxy):  # warm-up: connections, caches, code paths
            await run_round(target, direct.pid, model, concurrency, 1, options.max_tokens, 0.0)
        rounds: dict[str, list[Round]] = {"direct": [], "proxy": []}
        for index in range(options.rounds):
            order = (direct, proxy) if index % 2 == 0 else (proxy, direct)
            for target in order:
                measured = await run_round(
                    target, direct.pid, model, concurrency, per_stream, options.max_tokens, stagger
                )
                rounds[target.name].append(measured)
                print(
                    f"  {concurrency:>3} streams, round {index + 1}, {target.name:6}: "
                    f"{measured.tokens_per_second:8.0f} tok/s, TTFT median "
                    f"{statistics.median(ttfts([measured])) * 1000:8.2f} ms",
                    file=sys.stderr,
                    flush=True,
                )
        results.append(summarize(concurrency, rounds["direct"], rounds["proxy"]))
    return results


@contextlib.contextmanager
def running(options: argparse.Namespace) -> Iterator[tuple[Target, Target, str]]:
    with tempfile.TemporaryDirectory(prefix="infer-proxy-bench-") as tmp:
        home = Path(tmp)
        stack = Stack(options.logs or home)
        try:
            if options.engine == "sim":
                direct, model = start_sim(stack, options)
            else:
                direct, model = start_cpu_engine(stack, options)
            if options.front == "router":
                yield direct, start_router(stack, direct), model
                return
            proxy = start_proxy(
                stack,
                options.engine,
                direct,
                model,
                home,
                options.contract,
                options.probe,
                options.proxy_loop,
            )
            yield direct, proxy, model
        finally:
            stack.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["sim", "cpu"], default="sim")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--rounds", type=int, default=4, help="rounds of each side per level")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per answer")
    parser.add_argument("--ms-per-token", type=float, default=10.0, help="the simulator's pace")
    parser.add_argument(
        "--first-token-ms",
        type=float,
        default=50.0,
        help="the simulator's wait before the first token when paced (0 with --ms-per-token 0)",
    )
    parser.add_argument(
        "--contract",
        choices=["full", "bare"],
        default="full",
        help="full: the proxy with an API key, rate limits and prices (metrics, usage always on)",
    )
    parser.add_argument(
        "--front",
        choices=["infer", "router"],
        default="infer",
        help="what stands in front of the engine on the proxied side: infer's proxy, or vLLM's "
        "Rust router (vllm-router from infer's engine venv) as the field's baseline",
    )
    parser.add_argument(
        "--requests-at-1", type=int, default=25, help="requests per round at concurrency 1"
    )
    parser.add_argument(
        "--requests-per-stream", type=int, default=4, help="requests per stream per round above 1"
    )
    parser.add_argument(
        "--stagger",
        type=float,
        help="seconds over which the streams start (default: one answer's time on the "
        "simulator, 0 on the CPU engine)",
    )
    parser.add_argument(
        "--burst", action="store_true", help="start every stream at once (no stagger)"
    )
    parser.add_argument("--engine-timeout", type=float, default=300)
    parser.add_argument("--logs", type=Path, help="keep the processes' logs in this folder")
    parser.add_argument("--output", type=Path, help="write the results as JSON")
    parser.add_argument(
        "--proxy-loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="the proxy's event loop (uvloop: through _proxy_probe.py, which sets its policy)",
    )
    parser.add_argument(
        "--probe",
        type=Path,
        help="run the proxy under _proxy_probe.py (loop lag, GC pauses, long callbacks) and write "
        "its report to this file (the probes cost CPU: not for CPU figures)",
    )
    options = parser.parse_args()
    if options.burst:
        options.stagger = 0.0
    elif options.stagger is None:
        sim = options.engine == "sim"
        options.stagger = options.max_tokens * options.ms_per_token / 1000 if sim else 0.0
    if options.logs:
        options.logs.mkdir(parents=True, exist_ok=True)

    with running(options) as (direct, proxy, model):
        print(
            f"engine {options.engine} ({model}) on :{direct.port}, proxy on :{proxy.port}"
            f" (pid {proxy.pid})",
            file=sys.stderr,
            flush=True,
        )
        results = asyncio.run(measure(direct, proxy, model, options))
    print(table(results, "router" if options.front == "router" else "proxy"))
    if options.output:
        document = {
            "engine": options.engine,
            "model": model,
            "max_tokens": options.max_tokens,
            "ms_per_token": options.ms_per_token if options.engine == "sim" else None,
            "first_token_ms": options.first_token_ms
            if options.engine == "sim" and options.ms_per_token
            else None,
            "front": options.front,
            "contract": options.contract if options.front == "infer" else None,
            "stagger_s": options.stagger,
            "rounds": options.rounds,
            "requests_at_1": options.requests_at_1,
            "requests_per_stream": options.requests_per_stream,
            "cores": os.cpu_count(),
            "results": results,
        }
        options.output.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
