"""``infer serve --worker`` for real: a second "machine" whose engine joins the head's router.

Two ``infer serve`` processes stand in for two machines: the worker runs its own LMCache server and
vLLM (no proxy, no router) on a port the head's profile lists in ``replicas.workers``; the head runs
its own LMCache server, one vLLM and vllm-router over both, behind infer's proxy. The two LMCache
servers share nothing but an ``fs`` L2 directory, as two machines would share a network folder:
a prompt served behind one machine is a cache hit behind the other. When the worker goes away,
``/health`` names it and the head keeps serving.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import SHARED_ENGINE_HOME, SHARED_MODELS_HOME
from tests.e2e.conftest import serve_cpu
from tests.e2e.test_serve_cpu import LONG_PROMPT, chat
from tests.helpers import descendants, free_port, pid_alive


def test_a_worker_machine_joins_the_router_and_shares_kv_through_l2(
    cpu_engine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFER_WORKERS_API_KEY", "shared-secret-of-both-machines")
    l2 = tmp_path / "shared-l2"
    l2.mkdir()
    tier = f'lmcache.l2=[{{type = "fs", path = "{l2}"}}]'
    worker_port = free_port()
    env = {
        **os.environ,
        "INFER_HOME": str(tmp_path / "worker-home"),
        "INFER_ENGINE_HOME": str(SHARED_ENGINE_HOME),
        "INFER_MODELS_HOME": str(SHARED_MODELS_HOME),
        "NO_COLOR": "1",
    }
    log = tmp_path / "worker.stderr"
    with log.open("wb") as sink:
        worker = subprocess.Popen(
            [sys.executable, "-m", "infer_cli", "serve", "-p", "cpu", "--worker", "--no-install",
             "--set", "replicas.worker_host=127.0.0.1",
             "--set", f"replicas.worker_port={worker_port}", "--set", tier],
            env=env, stdout=subprocess.DEVNULL, stderr=sink,
        )  # fmt: skip
    worker_url = f"http://127.0.0.1:{worker_port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            assert worker.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"worker not ready:\n{log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{worker_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        time.sleep(2)  # the "ready" line follows the health check
        said = log.read_text()
        assert f'workers = ["http://127.0.0.1:{worker_port}"]' in said, said[-2000:]
        # the worker's engine takes only the shared key
        refused = httpx.post(f"{worker_url}/v1/completions", json={"prompt": "x"}, timeout=10)
        assert refused.status_code == 401

        head_settings = [
            "--set", f'replicas.workers=["{worker_url}"]',
            "--set", "replicas.policy=round_robin",
            "--set", tier,
        ]  # fmt: skip
        (tmp_path / "head-home").mkdir()
        with serve_cpu(tmp_path / "head-home", *head_settings, timeout=600) as head:
            health = httpx.get(f"{head.url}/health", timeout=5).json()
            assert health["workers"] == {"ready": 1, "total": 1, "unreachable": []}
            prompt = LONG_PROMPT.replace("quick brown fox", "lonely grey goose") + " Summarise."
            first = chat(head.url, prompt, max_tokens=4)["usage"]
            time.sleep(3)  # the L2 write behind the first machine's server
            second = chat(head.url, prompt, max_tokens=4)["usage"]
            assert first["prompt_tokens_details"]["cached_tokens"] == 0  # type: ignore[index]
            cached = second["prompt_tokens_details"]["cached_tokens"]  # type: ignore[index]
            assert cached >= 1024, f"the other machine should read the KV from L2: {second}"
            assert any(l2.rglob("*")), "the fs L2 tier holds the chunks"

            worker.send_signal(signal.SIGINT)  # the worker machine goes away
            assert worker.wait(timeout=90) == 0
            deadline = time.monotonic() + 60
            while True:
                health = httpx.get(f"{head.url}/health", timeout=5).json()
                if health["workers"]["unreachable"] == ["worker-0"]:
                    break
                assert time.monotonic() < deadline, health
                time.sleep(1)
            assert health["status"] == "ok" and "127.0.0.1" not in str(health)
            time.sleep(12)  # the router's health checks take the worker out of the rotation
            for _ in range(3):
                assert chat(head.url, "Say hello.", max_tokens=4)["usage"]
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGINT)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    assert [pid for pid in descendants(worker.pid) if pid_alive(pid)] == []
