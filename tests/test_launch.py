"""The exact engine command lines for every bundled profile, pinned by golden files.

Regenerate after a deliberate change with ``INFER_UPDATE_GOLDEN=1 pytest tests/test_launch.py`` and
review the diff: it is the change in what users' engines will run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from infer_cli import serve
from infer_cli.config import loader
from infer_cli.engine import launch
from infer_cli.errors import EngineNotInstalledError, ProfileError

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
        replica_ports=(41000, *range(41010, 41017)),
        router="/opt/engine/bin/vllm-router",
        router_port=41020,
        router_metrics_port=41021,
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


# --- replicas, the router, workers -------------------------------------------------------------


def flag(command: launch.Command, name: str) -> str:
    return command.argv[command.argv.index(name) + 1]


def connector_port(command: launch.Command) -> object:
    config = json.loads(flag(command, "--kv-transfer-config"))
    return config["kv_connector_extra_config"]["lmcache.mp.port"]


def test_cpu_2x_shares_one_cache_server_between_two_replicas_behind_the_router() -> None:
    profile = loader.load("cpu-2x", environ={}).profile
    commands = launch.plan(profile, target("cpu"))
    assert [c.name for c in commands] == ["lmcache", "vllm-0", "vllm-1", "router"]
    _, first, second, router = commands
    assert first.requires == second.requires == ("lmcache",)  # restarted with their server
    assert router.after == ("vllm-0", "vllm-1") and router.requires == ()
    assert connector_port(first) == connector_port(second) == 41001
    assert [flag(c, "--port") for c in (first, second)] == ["41000", "41010"]
    assert first.health_url == "http://127.0.0.1:41000/health"
    assert second.health_url == "http://127.0.0.1:41010/health"
    # one key for every engine behind the router: it passes the caller's header through
    assert first.env["VLLM_API_KEY"] == second.env["VLLM_API_KEY"] == "INTERNAL-KEY"
    assert "CUDA_VISIBLE_DEVICES" not in first.env
    # the replicas differ in nothing but their port
    port_at = first.argv.index("--port") + 1
    assert first.argv[:port_at] == second.argv[:port_at]
    assert first.argv[port_at + 1 :] == second.argv[port_at + 1 :]
    urls = router.argv[router.argv.index("--worker-urls") + 1 : router.argv.index("--policy")]
    assert urls == ["http://127.0.0.1:41000", "http://127.0.0.1:41010"]
    assert flag(router, "--policy") == "cache_aware"
    assert flag(router, "--host") == "127.0.0.1"
    assert flag(router, "--prometheus-port") == "41021"
    assert router.health_url == "http://127.0.0.1:41020/liveness"
    assert "INTERNAL-KEY" not in " ".join(router.argv) and "VLLM_API_KEY" not in router.env


def test_unshared_lmcache_gives_each_replica_its_own_server() -> None:
    profile = loader.load("cpu-2x", environ={}, overrides=["lmcache.shared=false"]).profile
    servers = ((41101, 41102), (41103, 41104))
    commands = launch.plan(profile, dataclasses.replace(target("cpu"), lmcache_servers=servers))
    names = [c.name for c in commands]
    assert names == ["lmcache-0", "lmcache-1", "vllm-0", "vllm-1", "router"]
    by_name = {c.name: c for c in commands}
    assert flag(by_name["lmcache-1"], "--port") == "41103"
    assert by_name["lmcache-1"].health_url == "http://127.0.0.1:41104/healthcheck"
    assert connector_port(by_name["vllm-0"]) == 41101
    assert connector_port(by_name["vllm-1"]) == 41103
    assert by_name["vllm-1"].requires == ("lmcache-1",)


def test_gpu_replicas_get_consecutive_device_groups_of_their_parallel_size() -> None:
    profile = loader.load("h100x8-dp", environ={}).profile
    replicas = [c for c in launch.plan(profile, target("cuda")) if c.name.startswith("vllm-")]
    assert [c.env["CUDA_VISIBLE_DEVICES"] for c in replicas] == [str(i) for i in range(8)]

    profile = loader.load(
        "h100x8-dp",
        environ={},
        overrides=["replicas.count=4", "engine.tensor_parallel_size=2"],
    ).profile
    replicas = [c for c in launch.plan(profile, target("cuda")) if c.name.startswith("vllm-")]
    assert [c.env["CUDA_VISIBLE_DEVICES"] for c in replicas] == ["0,1", "2,3", "4,5", "6,7"]
    assert all(flag(c, "--tensor-parallel-size") == "2" for c in replicas)


def test_explicit_device_groups_win() -> None:
    profile = loader.load(
        "h100x8-dp",
        environ={},
        overrides=[
            "replicas.count=2",
            "replicas.device_groups=[[6, 7], [0, 3]]",
            "engine.tensor_parallel_size=2",
        ],
    ).profile
    replicas = [c for c in launch.plan(profile, target("cuda")) if c.name.startswith("vllm-")]
    assert [c.env["CUDA_VISIBLE_DEVICES"] for c in replicas] == ["6,7", "0,3"]


def test_workers_join_the_router_even_with_one_local_replica() -> None:
    profile = loader.load(
        "h100", environ={}, overrides=["replicas.workers=['http://gpu-b:8000/', 'https://gpu-c']"]
    ).profile
    commands = launch.plan(profile, target("cuda"))
    assert [c.name for c in commands] == ["lmcache", "vllm-0", "router"]
    router = commands[-1]
    urls = router.argv[router.argv.index("--worker-urls") + 1 : router.argv.index("--policy")]
    assert urls == ["http://127.0.0.1:41000", "http://gpu-b:8000", "https://gpu-c"]
    assert "CUDA_VISIBLE_DEVICES" not in commands[1].env  # one local replica: all the GPUs


def test_router_settings_become_its_flags_and_extra_args_come_last() -> None:
    profile = loader.load(
        "cpu-2x",
        environ={},
        overrides=[
            "replicas.cache_threshold=0.5",
            "replicas.balance_abs_threshold=32",
            "replicas.balance_rel_threshold=1.25",
            "replicas.health_failure_threshold=2",
            "replicas.max_retries=3",
            "replicas.request_timeout=900",
            "replicas.health_check_interval=2",
            "replicas.router_extra_args=['--log-level', 'debug']",
        ],
    ).profile
    router = launch.plan(profile, target("cpu"))[-1]
    assert flag(router, "--cache-threshold") == "0.5"
    assert flag(router, "--balance-abs-threshold") == "32"
    assert flag(router, "--balance-rel-threshold") == "1.25"
    assert flag(router, "--health-failure-threshold") == "2"
    assert flag(router, "--retry-max-retries") == "3"
    assert flag(router, "--request-timeout-secs") == "900"
    assert flag(router, "--health-check-interval-secs") == "2"
    assert router.argv[-2:] == ["--log-level", "debug"]


def test_a_worker_machine_runs_replicas_on_a_reachable_address_and_no_router() -> None:
    profile = loader.load("cpu-2x", environ={}, overrides=["replicas.worker_host=0.0.0.0"]).profile
    worker = dataclasses.replace(
        target("cpu"), worker=True, replica_host="0.0.0.0", replica_ports=(8000, 8001)
    )
    commands = launch.plan(profile, worker)
    assert [c.name for c in commands] == ["lmcache", "vllm-0", "vllm-1"]
    assert [flag(c, "--host") for c in commands[1:]] == ["0.0.0.0", "0.0.0.0"]
    assert [flag(c, "--port") for c in commands[1:]] == ["8000", "8001"]
    assert commands[1].health_url == "http://127.0.0.1:8000/health"  # checked over loopback
    assert flag(commands[0], "--host") == "127.0.0.1"  # the cache server stays private

    single = loader.load("cpu", environ={}).profile
    assert [c.name for c in launch.plan(single, worker)] == ["lmcache", "vllm"]


def test_l2_tiers_become_the_cache_servers_adapters_in_order() -> None:
    profile = loader.load(
        "h100",
        environ={},
        overrides=[
            "lmcache.l2=[{type='fs', path='/mnt/kv'}, {type='redis', url='valkey://kv:6390'},"
            " {type='s3', bucket='kv-bucket', region='eu-west-1'},"
            " {type='s3', bucket='b', region='r', endpoint='minio.local:9000'},"
            " {type='raw', adapter={type='p2p', port=7000}},"
            ' {type=\'raw\', adapter=\'{"type": "mooncake_store", "x": 1}\'}]',
            "lmcache.l2_store_policy=skip_l1",
            "lmcache.l2_prefetch_policy=retain",
        ],
    ).profile
    lmcache = launch.plan(profile, target("cuda"))[0]
    adapters = [
        json.loads(lmcache.argv[i + 1]) for i, a in enumerate(lmcache.argv) if a == "--l2-adapter"
    ]
    assert adapters == [
        {"type": "fs", "base_path": "/mnt/kv"},
        {"type": "resp", "host": "kv", "port": 6390},
        {"type": "s3", "s3_endpoint": "s3://kv-bucket.s3.eu-west-1.amazonaws.com",
         "s3_region": "eu-west-1"},
        {"type": "s3", "s3_endpoint": "s3://b.minio.local:9000", "s3_region": "r"},
        {"type": "p2p", "port": 7000},
        {"type": "mooncake_store", "x": 1},
    ]  # fmt: skip
    assert flag(lmcache, "--l2-store-policy") == "skip_l1"
    assert flag(lmcache, "--l2-prefetch-policy") == "retain"


# --- the plan of one run (serve.prepare) -------------------------------------------------------


def fake_executables(folder: Path) -> list[str]:
    """A vllm and an lmcache that exist (nothing runs them), as profile overrides."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("vllm", "lmcache"):
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
    return [f"engine.vllm={folder / 'vllm'}", f"lmcache.lmcache={folder / 'lmcache'}"]


def test_a_routed_plan_forwards_to_the_router_and_knows_every_port() -> None:
    plan = serve.prepare(loader.load("cpu-2x", environ={}), install=False, dry_run=True)
    by_name = {c.name: c for c in plan.commands}
    assert list(by_name) == ["lmcache", "vllm-0", "vllm-1", "router"]
    router = by_name["router"]
    assert plan.router_port == int(flag(router, "--port"))
    assert plan.upstream_port == plan.vllm_port == plan.router_port
    assert plan.router_metrics_port == int(flag(router, "--prometheus-port"))
    assert plan.replica_ports == tuple(
        int(flag(by_name[n], "--port")) for n in ("vllm-0", "vllm-1")
    )
    assert plan.replica_names == ["vllm-0", "vllm-1"]
    ports = [*plan.replica_ports, plan.router_port, plan.router_metrics_port]
    ports += [int(flag(by_name["lmcache"], "--port")), int(flag(by_name["lmcache"], "--http-port"))]
    assert len(set(ports)) == len(ports)  # every process its own port
    assert sorted(plan.picked_ports) == sorted(ports)  # what a dry run replaces by placeholders
    assert {by_name[n].env["VLLM_API_KEY"] for n in plan.replica_names} == {plan.api_key}
    assert router.argv[0] == "vllm-router"  # not installed here: the dry run shows the name
    assert not plan.worker and plan.worker_line is None


def test_a_single_engine_plan_is_unchanged() -> None:
    plan = serve.prepare(loader.load("cpu", environ={}), install=False, dry_run=True)
    assert [c.name for c in plan.commands] == ["lmcache", "vllm"]
    assert plan.router_port is None and plan.router_metrics_port is None
    assert plan.replica_ports == (plan.vllm_port,) == (int(flag(plan.commands[1], "--port")),)
    assert plan.replica_names == ["vllm"]
    lmcache = plan.commands[0]
    ports = (plan.vllm_port, int(flag(lmcache, "--port")), int(flag(lmcache, "--http-port")))
    assert plan.picked_ports == ports


def test_a_missing_router_is_one_line_saying_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    loaded = loader.load("h100x8-dp", environ={}, overrides=fake_executables(tmp_path / "bin"))
    with pytest.raises(EngineNotInstalledError) as caught:
        serve.prepare(loaded, install=False)
    line = caught.value.one_line()
    assert "vllm-router is not installed" in line and "infer engine install" in line
    assert "\n" not in line


def test_the_worker_plan_serves_replicas_on_the_workers_port_with_the_shared_key(
    tmp_path: Path,
) -> None:
    overrides = [*fake_executables(tmp_path / "bin"), "replicas.count=2", "replicas.gpus=8",
                 "replicas.advertise_host=gpu-b.internal", "replicas.worker_port=9000"]  # fmt: skip
    loaded = loader.load("h100x8-dp", environ={}, overrides=overrides)
    plan = serve.prepare(
        loaded, install=False, worker=True, environ={"INFER_WORKERS_API_KEY": "shared-secret"}
    )
    assert [c.name for c in plan.commands] == ["lmcache", "vllm-0", "vllm-1"]
    assert plan.replica_ports == (9000, 9001)
    assert [flag(c, "--host") for c in plan.commands[1:]] == ["0.0.0.0", "0.0.0.0"]
    assert plan.api_key == "shared-secret"
    assert all(c.env["VLLM_API_KEY"] == "shared-secret" for c in plan.commands[1:])
    assert [c.env["CUDA_VISIBLE_DEVICES"] for c in plan.commands[1:]] == ["0", "1"]
    assert plan.router_port is None and plan.worker
    assert not {9000, 9001} & set(plan.picked_ports)  # the profile's ports, not picked
    assert plan.worker_urls == ("http://gpu-b.internal:9000", "http://gpu-b.internal:9001")
    assert (
        plan.worker_line == 'workers = ["http://gpu-b.internal:9000", "http://gpu-b.internal:9001"]'
    )


def test_workers_need_the_shared_key_on_both_sides(tmp_path: Path) -> None:
    executables = fake_executables(tmp_path / "bin")
    worker = loader.load("h100", environ={}, overrides=executables)
    with pytest.raises(ProfileError) as caught:
        serve.prepare(worker, install=False, worker=True, environ={})
    line = caught.value.one_line()
    assert "--worker" in line and "$INFER_WORKERS_API_KEY is empty" in line
    assert "export INFER_WORKERS_API_KEY" in line

    head = loader.load(
        "h100",
        environ={},
        overrides=[
            *executables,
            "replicas.workers=['http://gpu-b:8000']",
            "replicas.router=/bin/sh",
        ],
    )
    with pytest.raises(ProfileError, match="routes to workers"):
        serve.prepare(head, install=False, environ={})
    plan = serve.prepare(head, install=False, environ={"INFER_WORKERS_API_KEY": "k"})
    assert plan.api_key == "k"
    router = plan.commands[-1]
    assert router.argv[0] == "/bin/sh"
    assert "http://gpu-b:8000" in router.argv


def test_kv_aware_routing_wires_each_replicas_kv_events_to_the_router() -> None:
    profile = loader.load(
        "cpu-2x", environ={}, overrides=["replicas.policy=kv_aware", "engine.block_size=128"]
    ).profile
    events = dataclasses.replace(target("cpu"), kv_event_ports=(41030, 41031))
    *_, first, second, router = launch.plan(profile, events)
    assert json.loads(flag(first, "--kv-events-config")) == {
        "enable_kv_cache_events": True,
        "publisher": "zmq",
        "endpoint": "tcp://127.0.0.1:41030",
    }
    assert json.loads(flag(second, "--kv-events-config"))["endpoint"] == "tcp://127.0.0.1:41031"
    sources = [router.argv[i + 1] for i, a in enumerate(router.argv) if a == "--kv-event-source"]
    assert sources == [
        "http://127.0.0.1:41000=tcp://127.0.0.1:41030",
        "http://127.0.0.1:41010=tcp://127.0.0.1:41031",
    ]
    assert flag(router, "--kv-event-model") == "smollm2-135m-instruct"
    assert flag(router, "--kv-event-block-size") == "128"
    # other policies publish nothing
    plain = loader.load("cpu-2x", environ={}).profile
    assert not any("--kv-events-config" in c.argv for c in launch.plan(plain, events))
