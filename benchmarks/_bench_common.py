"""Helpers shared by the ``infer bench`` trust benchmarks: processes, ports, the two tools."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = str(ROOT / ".venv" / "bin" / "python")
if not Path(PYTHON).exists():
    PYTHON = sys.executable


def shared_homes() -> dict[str, str]:
    from infer_cli import paths

    return {
        "INFER_ENGINE_HOME": str(paths.engine_home()),
        "INFER_MODELS_HOME": str(paths.models_home()),
    }


def vllm_executable() -> str:
    os.environ.update(shared_homes())
    from infer_cli.engine import environment

    found = environment.vllm_executable()
    if found is None:
        raise SystemExit("vLLM's CPU engine is not installed: run `infer engine install`")
    return str(found)


def model_dir() -> Path:
    os.environ.update(shared_homes())
    from infer_cli.engine import models

    return models.model_dir("smollm2-135m-instruct")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ok(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Until ``url`` answers 200; stops the script if ``process`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"{url} not ready in {timeout:.0f} s")


def wait_health(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    wait_ok(url + "/health", process, timeout)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop_group(process: subprocess.Popen[bytes], grace: float = 30) -> None:
    """SIGTERM to the process's group (each runs in its own session), then SIGKILL."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def process_tree(root: int) -> list[int]:
    """``root`` and every live process below it (vLLM's engine core and workers are children)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def infer_bench(args: Sequence[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``infer bench ... -o FILE`` and return the first run of the JSON it wrote."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run.json"
        command = [PYTHON, "-m", "infer_cli", "bench", *args, "-q", "-o", str(out)]
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if not out.exists():
            raise SystemExit(f"infer bench failed: {done.stderr.strip()}")
        data = json.loads(out.read_text())
    run: dict[str, Any] = data["runs"][0]
    run["lengths"] = data["lengths"]
    return run


def vllm_bench(args: Sequence[str]) -> dict[str, Any]:
    """Run ``vllm bench serve ... --save-result`` and return its JSON."""
    with tempfile.TemporaryDirectory() as folder:
        command = [
            vllm_executable(), "bench", "serve", *args, "--disable-tqdm", "--save-result",
            "--result-dir", folder, "--result-filename", "vllm.json",
        ]  # fmt: skip
        env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        path = Path(folder) / "vllm.json"
        if not path.exists():
            raise SystemExit(
                f"vllm bench serve failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
        result: dict[str, Any] = json.loads(path.read_text())
        return result
