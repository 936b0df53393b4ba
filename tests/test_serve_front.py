"""``infer serve --upstream URL``: the proxy alone in front of an engine that is already running
(here infer's simulated engine as its own process), including the prototype's VLLM_BASE_URL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import free_port, stop_process


def start_sim(port: int, model: str = "front-model") -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "infer_cli.sim", "--port", str(port), "--settings-json",
         f'{{"model": "{model}", "ms_per_output_token": 0}}'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def health(url: str) -> httpx.Response:
    return httpx.get(f"{url}/health", timeout=5)


def wait_for(predicate: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


@pytest.fixture
def engine_port() -> Iterator[int]:
    port = free_port()
    sim = start_sim(port)
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}"))
        yield port
    finally:
        stop_process(sim)


def _answers(url: str) -> bool:
    try:
        return health(url).status_code == 200
    except httpx.TransportError:
        return False


def serve_front(port: int, extra_env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NO_COLOR": "1", **extra_env}
    return subprocess.Popen(
        [sys.executable, "-m", "infer_cli", "serve", "--profile", "sim", "--port", str(port),
         *args],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_fronts_a_running_engine_and_survives_its_absence(engine_port: int) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proxy = serve_front(
        port,
        {"MODEL_ID": "front-model"},
        "--upstream",
        f"http://127.0.0.1:{engine_port}/v1",
    )
    try:
        wait_for(lambda: _answers(url))
        body = {"model": "front-model", "messages": [{"role": "user", "content": "hi"}]}
        response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["model"] == "front-model"
    finally:
        stderr = stop_process(proxy)
    assert proxy.returncode == 0
    assert "Traceback" not in stderr


def test_upstream_down_is_503_with_the_reason_and_recovers() -> None:
    engine_port, port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    proxy = serve_front(port, {"VLLM_BASE_URL": f"http://127.0.0.1:{engine_port}"})
    sim = None
    try:
        wait_for(lambda: _up(url))
        down = health(url)
        assert down.status_code == 503
        assert "unreachable" in down.json()["detail"]
        sim = start_sim(engine_port, model="sim-model")
        wait_for(lambda: _answers(url))
        stop_process(sim)
        wait_for(lambda: health(url).status_code == 503)  # the proxy itself stays up
    finally:
        if sim is not None:
            stop_process(sim)
        stop_process(proxy)
    assert proxy.returncode == 0


def test_an_upstream_serving_another_model_says_which(engine_port: int) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proxy = serve_front(port, {}, "--upstream", f"http://127.0.0.1:{engine_port}")
    try:
        wait_for(lambda: _up(url) and "front-model" in health(url).text)
        detail = health(url).json()["detail"]
        assert "upstream serves front-model, not sim-model" in detail
    finally:
        stop_process(proxy)


def test_a_bad_upstream_url_is_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "infer_cli", "serve", "--upstream", "localhost:8000"],
        capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --upstream 'localhost:8000' is not an http(s) URL; e.g. --upstream "
        "http://127.0.0.1:8000 (a running vLLM or OpenAI-compatible API)"
    ]


def _up(url: str) -> bool:
    try:
        health(url)
        return True
    except httpx.TransportError:
        return False
