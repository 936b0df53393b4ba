"""Chaos on the real CPU engine: kill, wedge and abandon, and the endpoint heals itself.

One ``infer serve --profile cpu`` for the module, with a supervisor on a test's time scale (short
backoff, a health check every 2 s). In file order: a client that leaves frees the engine's slot;
vLLM SIGKILLed under 8 open streams (each stream ends with an error chunk and ``[DONE]``, the
proxy answers 503 meanwhile, vLLM is back without a human and LMCache still holds the KV of a
prompt served before the kill); LMCache SIGKILLed (restarted, then vLLM); vLLM stopped with
SIGSTOP (seen as wedged and restarted); and Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Served, serve_cpu
from tests.e2e.test_serve_cpu import LONG_PROMPT, MODEL, chat, engine_counter, vllm_process
from tests.helpers import descendants, pid_alive, shm_segments_of

SUPERVISOR = [
    "supervisor.backoff=0.5",
    "supervisor.health_interval=2",
    "supervisor.health_timeout=2",
    "supervisor.unhealthy_after=2",
]


@pytest.fixture(scope="module")
def served(cpu_engine: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings = [part for item in SUPERVISOR for part in ("--set", item)]
    with serve_cpu(tmp_path_factory.mktemp("chaos-home"), *settings) as running:
        yield running


def direct_url(served: Served) -> str:
    _, argv = vllm_process(served)
    return f"http://127.0.0.1:{argv[argv.index('--port') + 1]}"


def running_requests(direct: str) -> float:
    return engine_counter(direct, "vllm:num_requests_running")


def lmcache_pid(served: Served) -> int:
    for pid in descendants(served.process.pid):
        try:
            parts = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(parts) > 2 and parts[1].endswith(b"/lmcache") and parts[2] == b"server":
            return pid
    raise AssertionError("no lmcache server process found under infer")


def wait_back(served: Served, timeout: float = 300) -> dict[str, object]:
    """Wait for /health 200 (no human involved); return its body."""
    deadline = time.monotonic() + timeout
    while True:
        assert served.process.poll() is None, served.stderr.read_text()[-3000:]
        assert time.monotonic() < deadline, "the engine did not come back"
        try:
            response = httpx.get(f"{served.url}/health", timeout=5)
            if response.status_code == 200:
                body: dict[str, object] = response.json()
                return body
        except httpx.TransportError:
            pass
        time.sleep(0.5)


def wait_down(served: Served, timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "/health never said the engine was down"
        response = httpx.get(f"{served.url}/health", timeout=10)
        if response.status_code == 503:
            return response
        time.sleep(0.2)


@dataclass
class Stream:
    """One streamed chat request read on a thread: when each event came."""

    first_token: threading.Event = field(default_factory=threading.Event)
    events: list[tuple[float, str]] = field(default_factory=list)
    error: str | None = None

    def run(self, url: str, prompt: str) -> None:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 400,
            "ignore_eos": True,
            "stream": True,
        }
        try:
            with httpx.stream(
                "POST", f"{url}/v1/chat/completions", json=body, timeout=120
            ) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.events.append((time.monotonic(), line[6:]))
                        self.first_token.set()
        except httpx.HTTPError as error:
            self.error = repr(error)
        finally:
            self.first_token.set()

    @property
    def done_at(self) -> float | None:
        return next((at for at, data in self.events if data == "[DONE]"), None)

    def error_chunk(self) -> dict[str, object] | None:
        for _, data in self.events:
            if data != "[DONE]":
                chunk = json.loads(data)
                if "error" in chunk:
                    return dict(chunk)
        return None


def test_a_client_that_leaves_frees_the_engines_slot(served: Served) -> None:
    direct = direct_url(served)
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count to a thousand."}],
        "max_tokens": 2000,
        "ignore_eos": True,
        "stream": True,
    }
    with httpx.stream("POST", f"{served.url}/v1/chat/completions", json=body, timeout=60) as rsp:
        lines = rsp.iter_lines()  # kept: a dropped iterator may close the stream early
        for line in lines:
            if line.startswith("data: ") and '"content"' in line:
                break
        deadline = time.monotonic() + 15
        while running_requests(direct) != 1:  # the engine publishes its gauges as it steps
            assert time.monotonic() < deadline, "vLLM never reported the request as running"
            time.sleep(0.1)
        rsp.close()  # the client leaves
        left = time.monotonic()
        del lines
    # the connection is closed: the proxy must cancel the engine's work at once
    while running_requests(direct) != 0:
        assert time.monotonic() - left < 5, "the engine kept generating for a client that left"
        time.sleep(0.05)
    freed = time.monotonic() - left
    print(f"[chaos] engine slot freed {freed * 1000:.0f} ms after the client left")
    assert freed < 2.0  # measured ~0.1-0.3 s; loose against a busy machine


def test_sigkill_of_vllm_under_8_streams_heals_and_keeps_lmcaches_kv(served: Served) -> None:
    warm = LONG_PROMPT.replace("quick brown fox", "tired grey wolf") + " Summarise."
    chat(served.url, warm, max_tokens=4)  # its KV now lives in LMCache's server too
    streams = [Stream() for _ in range(8)]
    threads = [
        threading.Thread(target=s.run, args=(served.url, f"Story {i}: tell me a long tale."))
        for i, s in enumerate(streams)
    ]
    for thread in threads:
        thread.start()
    for stream in streams:
        assert stream.first_token.wait(120), "a stream never started"
    victim, _ = vllm_process(served)
    killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)

    # meanwhile: 503 at once, never a hang
    refused = None
    while refused is None:
        assert time.monotonic() - killed < 30, "requests were not refused while vLLM was down"
        began = time.monotonic()
        answer = httpx.post(
            f"{served.url}/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        if answer.status_code == 503:
            refused = answer
            assert time.monotonic() - began < 2.0
    assert refused.json()["error"]["metadata"]["engine"] == "restarting"
    assert "retry-after" in refused.headers
    down = httpx.get(f"{served.url}/health", timeout=10)
    assert down.status_code == 503 and "127.0.0.1" not in down.text

    for thread in threads:
        thread.join(60)
    ends = []
    for stream in streams:
        assert stream.error is None, stream.error
        assert stream.error_chunk() is not None, stream.events[-3:]
        assert stream.done_at is not None and stream.events[-1][1] == "[DONE]"
        ends.append(stream.done_at - killed)
    print(f"[chaos] 8 streams ended {max(ends) * 1000:.0f} ms (max) after the SIGKILL")
    assert max(ends) < 1.0

    health = wait_back(served)
    assert health["restarts"] == 1
    assert str(health["last_restart"]["reason"]).startswith("vllm exited with code -9")  # type: ignore[index]
    assert not pid_alive(victim)
    direct = direct_url(served)
    hits_before = engine_counter(direct, "vllm:external_prefix_cache_hits_total")
    usage = chat(served.url, warm, max_tokens=4)["usage"]
    cached = usage["prompt_tokens_details"]["cached_tokens"]  # type: ignore[index]
    hits = engine_counter(direct, "vllm:external_prefix_cache_hits_total") - hits_before
    assert cached >= 1024 and hits >= 1024, f"no LMCache hit after the restart: {usage}"
    metrics = httpx.get(f"{served.url}/metrics", timeout=10).text
    assert 'infer_proxy_engine_restarts_total{process="vllm",reason="exited"} 1' in metrics


def test_sigkill_of_lmcache_restarts_it_and_then_vllm(served: Served) -> None:
    cache = lmcache_pid(served)
    old_vllm, _ = vllm_process(served)
    os.kill(cache, signal.SIGKILL)
    wait_down(served, timeout=30)
    health = wait_back(served)
    assert health["restarts"] == 2
    assert str(health["last_restart"]["reason"]).startswith("lmcache exited")  # type: ignore[index]
    assert lmcache_pid(served) != cache
    # vLLM registers its KV cache with the new server only when it starts
    assert vllm_process(served)[0] != old_vllm and not pid_alive(old_vllm)
    assert chat(served.url, "What is the capital of France?", max_tokens=8)["usage"]


def test_a_wedged_vllm_is_seen_and_restarted(served: Served) -> None:
    victim, _ = vllm_process(served)
    os.kill(victim, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        down = wait_down(served, timeout=60)
        print(f"[chaos] SIGSTOP seen after {time.monotonic() - stopped:.1f} s")
        assert "health check" in down.json()["detail"] or down.json()["engine"] == "restarting"
        health = wait_back(served)
    finally:
        if pid_alive(victim):
            os.kill(victim, signal.SIGCONT)
    assert health["restarts"] == 3
    assert "health check" in str(health["last_restart"]["reason"])  # type: ignore[index]
    assert not pid_alive(victim)
    metrics = httpx.get(f"{served.url}/metrics", timeout=10).text
    assert 'infer_proxy_engine_restarts_total{process="vllm",reason="unhealthy"} 1' in metrics
    assert chat(served.url, "Say hello.", max_tokens=4)["usage"]


def test_ctrl_c_after_the_chaos_leaves_nothing(served: Served) -> None:
    served.remember_pids()
    engine_pids = served.pids - {served.process.pid}
    segments = shm_segments_of(engine_pids)
    served.process.send_signal(signal.SIGINT)
    assert served.process.wait(timeout=60) == 0
    assert [pid for pid in engine_pids if pid_alive(pid)] == []
    assert [s for s in segments if s.exists()] == []
