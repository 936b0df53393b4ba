"""``infer serve --profile sim`` as a user runs it: the whole composer (proxy, supervised engine
process, signals) with infer's simulated engine as the engine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import descendants, free_port, pid_alive, stop_process


def wait_health(url: str, process: subprocess.Popen[bytes], want: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, "infer serve exited"
        assert time.monotonic() < deadline, f"/health never answered {want}"
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == want:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)


def start_serve(*extra: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    env = {**os.environ, "NO_COLOR": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "infer_cli", "serve", "--profile", "sim", "--port", str(port),
         *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_health(url, process, 200)
    except BaseException:
        stop_process(process, signal.SIGKILL)
        raise
    return url, process


@pytest.fixture
def served(infer_home: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    url, process = start_serve("--set", "supervisor.backoff=0.2")
    try:
        yield url, process
    finally:
        stop_process(process, signal.SIGKILL)


def engine_pids(process: subprocess.Popen[bytes]) -> list[int]:
    return [pid for pid in descendants(process.pid) if pid != process.pid]


def ask(url: str) -> dict[str, object]:
    body = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def test_serve_sim_answers_restarts_on_sighup_and_stops_on_sigterm(
    served: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, process = served
    assert ask(url)["model"] == "sim-model"
    assert httpx.get(f"{url}/health", timeout=5).json()["profile"] == "sim"
    engine = engine_pids(process)
    assert engine, "the simulated engine runs as a child process"

    process.send_signal(signal.SIGHUP)
    wait_health(url, process, 503, timeout=10)
    wait_health(url, process, 200)
    assert ask(url)["usage"]
    assert not any(pid_alive(pid) for pid in engine), "the old engine process must be gone"
    assert httpx.get(f"{url}/health", timeout=5).json()["restarts"] == 1  # counted, as requested
    engine = engine_pids(process)

    log = stop_process(process, signal.SIGTERM, timeout=30)
    assert process.returncode == 0
    assert "restarting sim" in log and "stopped" in log
    assert "simulated engine" in log
    assert "Traceback" not in log
    assert not any(pid_alive(pid) for pid in engine)


def test_a_killed_engine_is_restarted_while_the_proxy_answers_503(
    served: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, process = served
    for pid in engine_pids(process):
        os.kill(pid, signal.SIGKILL)
    down = None
    deadline = time.monotonic() + 10
    while down is None:
        assert time.monotonic() < deadline, "the proxy never said the engine was down"
        answer = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "sim-model", "messages": [{"role": "user", "content": "hi"}]},
            timeout=5,
        )
        if answer.status_code == 503:
            down = answer
    assert down.json()["error"]["metadata"]["engine"] == "restarting"
    assert int(down.headers["retry-after"]) >= 1
    health = httpx.get(f"{url}/health", timeout=5)
    if health.status_code == 503:  # still restarting: the reason, in words, no address
        body = health.json()
        assert body["engine"] == "restarting" and "sim exited with code -9" in body["detail"]
        assert "127.0.0.1" not in health.text
    wait_health(url, process, 200)  # back without a human
    assert ask(url)["usage"]
    body = httpx.get(f"{url}/health", timeout=5).json()
    assert body["restarts"] == 1
    assert body["last_restart"]["reason"].startswith("sim exited with code -9 (SIGKILL)")
    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    assert 'infer_proxy_engine_restarts_total{process="sim",reason="exited"} 1' in metrics
    shown = subprocess.run(
        [sys.executable, "-m", "infer_cli", "status", "--url", url],
        capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    line = next(line for line in shown.stdout.splitlines() if "restart" in line)
    assert "1 restart" in line and "ago" in line and "sim exited with code -9 (SIGKILL)" in line
    as_json = subprocess.run(
        [sys.executable, "-m", "infer_cli", "status", "--url", url, "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    data = json.loads(as_json.stdout)
    assert data["restarts"] == 1 and data["last_restart"].startswith("sim exited")
    log = stop_process(process, signal.SIGINT, timeout=30)
    assert process.returncode == 0
    assert "sim exited with code -9 (SIGKILL)" in log and "restarting in 0.2 s" in log


@pytest.mark.parametrize(
    "settings",
    [["supervisor.on_failure=stop"], ["supervisor.max_restarts=0"]],
    ids=["on_failure-stop", "no-restarts-left"],
)
def test_an_engine_that_cannot_be_kept_up_takes_serve_down_with_the_cause(
    infer_home: Path, settings: list[str]
) -> None:
    _, process = start_serve(*(part for item in settings for part in ("--set", item)))
    try:
        for pid in engine_pids(process):
            os.kill(pid, signal.SIGKILL)
        log = stop_process(process, None, timeout=30)
        assert process.returncode == 1
        last = log.strip().splitlines()[-1]
        assert last.startswith("error: sim exited with code -9") and "log:" in last
        if "max_restarts" in settings[0]:
            assert "giving up" in last
    finally:
        stop_process(process, signal.SIGKILL)


def test_bench_behind_the_proxy_fits_prompt_lengths_with_the_engines_tokenizer(
    served: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    url, _ = served
    counted = httpx.post(f"{url}/tokenize", json={"prompt": "one two three"}, timeout=10)
    assert counted.status_code == 200 and counted.json()["count"] == 3
    out = tmp_path / "run.json"
    done = subprocess.run(
        [sys.executable, "-m", "infer_cli", "bench", "random", "--url", url, "-n", "3",
         "--input-len", "50", "--output-len", "2", "--endpoint", "completions", "--warmup", "0",
         "-q", "-o", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["lengths"] == {"exact": True, "source": f"{url}/tokenize", "off_target": 0}
    assert data["server"]["profile"] == "sim"
    assert [r["prompt_tokens"] for r in data["runs"][0]["requests"]] == [50, 50, 50]


def test_verbose_serve_prints_one_line_per_request(infer_home: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "infer_cli", "-v", "serve", "--profile", "sim", "--port", str(port)],
        env={**os.environ, "NO_COLOR": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_health(url, process, 200)
        ask(url)
        ask(url)
    finally:
        log = stop_process(process, signal.SIGINT, timeout=30)
    lines = [line for line in log.splitlines() if "/v1/chat/completions 200" in line]
    assert len(lines) == 2, lines
    assert "sim-model" in lines[0] and "tok" in lines[0] and "length" in lines[0]
