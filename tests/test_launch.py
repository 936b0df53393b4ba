"""The exact engine command lines for every bundled profile, pinned by golden files.

Regenerate after a deliberate change with ``INFER_UPDATE_GOLDEN=1 pytest tests/test_launch.py`` and
review the diff: it is the change in what users' engines will run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from infer_cli.config import loader
from infer_cli.engine import launch

GOLDEN = Path(__file__).parent / "golden"
PROFILES = sorted(s.name for s in loader.available() if s.bundled)


def target(device: str) -> launch.LaunchTarget:
    return launch.LaunchTarget(
        vllm="/opt/engine/bin/vllm",
        model="/models/the-model" if device == "cpu" else "MODEL",
        port=41000,
        api_key="INTERNAL-KEY",
        device=device,
        lmcache="/opt/engine/bin/lmcache",
        lmcache_port=41001,
        lmcache_http_port=41002,
        run_dir=Path("/runs/1"),
        env={"TMPDIR": "/cache/tmp"} if device == "cpu" else {},
        offline=device == "cpu",
        python="/opt/infer/bin/python",
    )


def render(name: str) -> str:
    profile = loader.load(name, environ={}).profile
    device = "cpu" if profile.engine.device == "cpu" else "cuda"
    commands = launch.plan(profile, target(device))
    return "\n\n".join(launch.shell_line(c) for c in commands) + "\n"


@pytest.mark.parametrize("name", PROFILES)
def test_golden_command_lines(name: str) -> None:
    text = render(name)
    golden = GOLDEN / f"{name}.sh"
    if os.environ.get("INFER_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.is_file(), f"no golden file for {name}: run with INFER_UPDATE_GOLDEN=1"
    assert text == golden.read_text()


def test_cpu_plan_starts_lmcache_first_and_connects_vllm_to_it() -> None:
    profile = loader.load("cpu", environ={}).profile
    lmcache, vllm = launch.plan(profile, target("cpu"))
    assert lmcache.name == "lmcache" and vllm.name == "vllm"
    assert lmcache.argv[1:4] == ["server", "--host", "127.0.0.1"]
    assert lmcache.health_url == "http://127.0.0.1:41002/healthcheck"
    config = json.loads(vllm.argv[vllm.argv.index("--kv-transfer-config") + 1])
    assert config["kv_connector"] == "LMCacheMPConnector"
    extra = config["kv_connector_extra_config"]
    assert extra["lmcache.mp.port"] == 41001
    assert extra["lmcache.mp.mp_transfer_mode"] == "lmcache_driven"
    assert "--enforce-eager" in vllm.argv
    assert vllm.argv[vllm.argv.index("--kv-cache-memory-bytes") + 1] == str(2**30)
    assert vllm.argv[vllm.argv.index("--host") + 1] == "127.0.0.1"
    assert vllm.env["VLLM_API_KEY"] == "INTERNAL-KEY"
    assert "INTERNAL-KEY" not in vllm.argv  # never visible in ps
    assert vllm.env["HF_HUB_OFFLINE"] == "1"
    assert vllm.health_url == "http://127.0.0.1:41000/health"


def test_gpu_profiles_keep_the_default_transfer_mode_and_the_hub() -> None:
    profile = loader.load("h100", environ={}).profile
    commands = launch.plan(profile, target("cuda"))
    vllm = commands[-1]
    extra = json.loads(vllm.argv[vllm.argv.index("--kv-transfer-config") + 1])[
        "kv_connector_extra_config"
    ]
    assert "lmcache.mp.mp_transfer_mode" not in extra
    assert "HF_HUB_OFFLINE" not in vllm.env


def test_multinode_uses_ray_pipeline_parallel_without_lmcache() -> None:
    profile = loader.load("multinode", environ={}).profile
    (vllm,) = launch.plan(profile, target("cuda"))
    argv = vllm.argv
    assert argv[argv.index("--pipeline-parallel-size") + 1] == "2"
    assert argv[argv.index("--tensor-parallel-size") + 1] == "8"
    assert argv[argv.index("--distributed-executor-backend") + 1] == "ray"
    assert "--kv-transfer-config" not in argv


def test_in_process_mode_uses_the_v1_connector_and_lmcache_env() -> None:
    profile = loader.load(
        "h100",
        environ={},
        overrides=[
            "lmcache.mode=in-process",
            "lmcache.local_disk=/nvme/lmcache",
            "lmcache.max_local_disk_size_gb=500",
        ],
    ).profile
    (vllm,) = launch.plan(profile, target("cuda"))
    config = json.loads(vllm.argv[vllm.argv.index("--kv-transfer-config") + 1])
    assert config == {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_both"}
    assert vllm.env["LMCACHE_LOCAL_DISK"] == "file:///nvme/lmcache/"
    assert vllm.env["LMCACHE_MAX_LOCAL_DISK_SIZE"] == "500"
    assert vllm.env["LMCACHE_MAX_LOCAL_CPU_SIZE"] == "64"


def test_mp_mode_second_tiers_become_l2_adapters() -> None:
    profile = loader.load(
        "h100",
        environ={},
        overrides=["lmcache.local_disk=/nvme/kv", "lmcache.remote_url=redis://cache.internal:6380"],
    ).profile
    lmcache, _ = launch.plan(profile, target("cuda"))
    adapters = [
        json.loads(lmcache.argv[i + 1]) for i, a in enumerate(lmcache.argv) if a == "--l2-adapter"
    ]
    assert adapters == [
        {"type": "fs", "base_path": "/nvme/kv"},
        {"type": "resp", "host": "cache.internal", "port": 6380},
    ]


def test_extra_args_and_env_come_last_and_win() -> None:
    profile = loader.load(
        "cpu",
        environ={},
        overrides=[
            "engine.extra_args=['--max-logprobs', '5']",
            "engine.env={ VLLM_LOGGING_LEVEL = 'DEBUG' }",
        ],
    ).profile
    vllm = launch.plan(profile, target("cpu"))[-1]
    assert vllm.argv[-2:] == ["--max-logprobs", "5"]
    assert vllm.env["VLLM_LOGGING_LEVEL"] == "DEBUG"


def test_shell_line_quotes_json() -> None:
    profile = loader.load("cpu", environ={}).profile
    line = launch.shell_line(launch.plan(profile, target("cpu"))[-1])
    assert "--kv-transfer-config '{" in line
    assert line.splitlines()[0].startswith("DO_NOT_TRACK=1")
