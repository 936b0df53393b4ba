"""``infer serve`` on the real CPU engine when vLLM cannot start: one line, exit 1, nothing left."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import descendants, free_port, pid_alive, shm_segments_of


def test_vllm_rejecting_its_arguments_is_one_line_and_leaves_nothing(
    cpu_engine: Path, tmp_path: Path
) -> None:
    from tests.conftest import SHARED_ENGINE_HOME, SHARED_MODELS_HOME

    env = {
        **os.environ,
        "INFER_HOME": str(tmp_path / "home"),
        "INFER_ENGINE_HOME": str(SHARED_ENGINE_HOME),
        "INFER_MODELS_HOME": str(SHARED_MODELS_HOME),
        "NO_COLOR": "1",
    }
    argv = [
        sys.executable,
        "-m",
        "infer_cli",
        "serve",
        "--profile",
        "cpu",
        "--port",
        str(free_port()),
        "--no-install",
        "--set",
        "engine.extra_args=['--no-such-vllm-flag']",
    ]
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen: set[int] = set()
    deadline = time.monotonic() + 240
    while process.poll() is None:
        assert time.monotonic() < deadline, (
            "infer serve did not give up on a vLLM that cannot start"
        )
        seen |= set(descendants(process.pid))
        time.sleep(0.2)
    _, err = process.communicate()
    assert process.returncode == 1, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "vllm" in last and "--no-such-vllm-flag" in last, err
    assert "log" in last  # names the log file to read
    assert seen, "LMCache's server should have been started before vLLM"
    assert [pid for pid in seen if pid_alive(pid)] == []
    assert shm_segments_of(seen) == []
