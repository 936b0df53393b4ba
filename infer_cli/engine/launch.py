"""From a profile to the exact ``lmcache server``, ``vllm serve`` and ``vllm-router`` command lines.

Pure functions: every value that depends on the machine (executables, ports, the model folder, the
internal key, the run folder) arrives in a :class:`LaunchTarget`, so the same profile always gives
the same argv, and golden files can pin them for every bundled profile.

One replica and no workers: ``lmcache`` then ``vllm``. Several replicas (``[replicas]``) or other
machines' engines: ``lmcache`` (or ``lmcache-0``, ``lmcache-1``, ... when not shared), ``vllm-0``,
``vllm-1``, ..., then ``router`` over all of them. The replicas share one internal key: vllm-router
passes the caller's ``Authorization`` header through to whichever engine it picks (measured with
vllm-router 0.1.17; its ``--api-key`` is not sent on requests), so every engine behind it must
accept the key the proxy sends.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from infer_cli.config.schema import (
    EngineSection,
    FsTier,
    LMCacheSection,
    Profile,
    RedisTier,
    S3Tier,
)
from infer_cli.engine.process import Command

LOOPBACK = "127.0.0.1"
ENGINE_DEFAULT_ENV = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


@dataclass(frozen=True)
class LaunchTarget:
    """Where and how this run starts the engine; everything the profile cannot know."""

    vllm: str
    model: str  # a local folder or a Hugging Face id
    port: int  # vLLM's internal port on 127.0.0.1
    api_key: str
    device: str = "cuda"  # "cuda" or "cpu", after resolving the profile's "auto"
    lmcache: str = "lmcache"
    lmcache_port: int = 5555
    lmcache_http_port: int = 8088
    run_dir: Path = Path("/tmp/infer-run")
    env: Mapping[str, str] = field(
        default_factory=dict
    )  # e.g. the CPU engine environment's variables
    offline: bool = False  # the model is a local folder: never ask the hub
    python: str = "python3"  # the interpreter that runs infer's own simulated engine
    replica_ports: tuple[int, ...] = ()  # one per replica (default: port, port + 1, ...)
    lmcache_servers: tuple[tuple[int, int], ...] = ()
    """(port, http port) of each cache server when the replicas do not share one (default:
    consecutive pairs from lmcache_port)."""
    router: str = "vllm-router"
    router_port: int = 30000
    router_metrics_port: int = 29000
    kv_event_ports: tuple[int, ...] = ()  # kv_aware: each replica's KV event publisher
    worker: bool = False  # ``infer serve --worker``: replicas only, on a reachable address
    replica_host: str = LOOPBACK  # where replicas listen (the worker's address with --worker)

    def replica_port(self, index: int) -> int:
        if not self.replica_ports:
            return self.port + index
        if index >= len(self.replica_ports):
            raise ValueError(f"no port for replica {index}: {len(self.replica_ports)} given")
        return self.replica_ports[index]

    def kv_event_port(self, index: int) -> int:
        """Where replica ``index`` publishes KV cache events (read by the kv_aware policy)."""
        return self.kv_event_ports[index] if self.kv_event_ports else self.port + 1000 + index

    def lmcache_ports(self, index: int) -> tuple[int, int]:
        """The ports of cache server ``index`` (0 is the shared one)."""
        if not self.lmcache_servers:
            if index == 0:
                return self.lmcache_port, self.lmcache_http_port
            step = 2 * index
            return self.lmcache_port + step, self.lmcache_http_port + step
        return self.lmcache_servers[index]


def shell_line(command: Command) -> str:
    """A copy-pasteable shell line: the environment assignments, then the command, one option
    (with its values) per continued line."""
    assignments = [f"{key}={shlex.quote(value)}" for key, value in sorted(command.env.items())]
    return " \\\n    ".join([*assignments, *_option_lines(command.argv)])


def _option_lines(argv: list[str]) -> list[str]:
    """``vllm serve MODEL --a 1 --b`` -> ``["vllm serve MODEL", "--a 1", "--b"]`` (quoted)."""
    lines: list[list[str]] = [[]]
    for item in argv:
        if item.startswith("--") and lines[-1]:
            lines.append([])
        lines[-1].append(item)
    return [shlex.join(line) for line in lines]


def plan(profile: Profile, target: LaunchTarget) -> list[Command]:
    """The processes of one run, in start order."""
    if profile.engine.backend == "sim":
        return [sim_engine(profile, target)]
    if profile.replicas.count == 1 and not routed(profile, target):
        launches = []
        if profile.lmcache.mode == "mp":
            launches.append(lmcache_server(profile.lmcache, target))
        launches.append(vllm_serve(profile, target))
        return launches
    return replicated(profile, target)


def routed(profile: Profile, target: LaunchTarget) -> bool:
    """Whether this run starts vllm-router (never on a worker machine)."""
    return profile.replicas.routed and not target.worker


def replicated(profile: Profile, target: LaunchTarget) -> list[Command]:
    """Cache server(s), the replicas (they start side by side), then the router over them."""
    count, cache = profile.replicas.count, profile.lmcache
    servers: list[Command] = []
    if cache.mode == "mp":
        shared = cache.shared or count == 1
        servers = [lmcache_server(cache, target, None if shared else i) for i in range(count)]
        servers = servers[:1] if shared else servers
    replicas = []
    for index in range(count):
        server = servers[0 if len(servers) == 1 else index] if servers else None
        command = vllm_serve(profile, target, index)
        replicas.append(replace(command, requires=(server.name,) if server else ()))
    commands = [*servers, *replicas]
    if routed(profile, target):
        urls = [replica_url(target, i) for i in range(count)]
        commands.append(router_command(profile, target, [*urls, *profile.replicas.workers]))
    return commands


def replica_name(profile: Profile, target: LaunchTarget, index: int | None) -> str:
    if index is None or (profile.replicas.count == 1 and not routed(profile, target)):
        return "vllm"
    return f"vllm-{index}"


def replica_url(target: LaunchTarget, index: int) -> str:
    """Where the router (on this machine) reaches replica ``index``."""
    return f"http://{_client_host(target.replica_host)}:{target.replica_port(index)}"


def lmcache_server(
    cache: LMCacheSection, target: LaunchTarget, index: int | None = None
) -> Command:
    """``lmcache server``; ``index`` names one of several (one per replica, not shared)."""
    port, http_port = target.lmcache_ports(index or 0)
    argv = [
        target.lmcache,
        "server",
        "--host",
        cache.host,
        "--port",
        str(port),
        "--http-host",
        LOOPBACK,
        "--http-port",
        str(http_port),
        "--l1-size-gb",
        _number(cache.l1_size_gb),
        "--eviction-policy",
        cache.eviction_policy,
        "--chunk-size",
        str(cache.chunk_size),
    ]
    for adapter in l2_adapters(cache):
        argv += ["--l2-adapter", json.dumps(adapter, separators=(",", ":"))]
    if cache.l2_store_policy:
        argv += ["--l2-store-policy", cache.l2_store_policy]
    if cache.l2_prefetch_policy:
        argv += ["--l2-prefetch-policy", cache.l2_prefetch_policy]
    argv += cache.extra_args
    env = {**target.env, **cache.env}
    return Command(
        name="lmcache" if index is None else f"lmcache-{index}",
        argv=argv,
        env=env,
        health_url=f"http://{LOOPBACK}:{http_port}/healthcheck",
        startup_timeout=cache.startup_timeout,
        stop_timeout=cache.stop_timeout,
    )


def vllm_serve(profile: Profile, target: LaunchTarget, index: int | None = None) -> Command:
    """``vllm serve``; ``index`` is the replica's number when there are several."""
    model, engine, cache = profile.model, profile.engine, profile.lmcache
    port = target.replica_port(index or 0)
    host = target.replica_host
    argv = [target.vllm, "serve", target.model]
    argv += ["--served-model-name", model.name, "--host", host, "--port", str(port)]
    argv += _model_flags(profile)
    argv += _engine_flags(engine)
    server = 0 if index is None or cache.shared else index
    connector = kv_transfer_config(cache, target, target.lmcache_ports(server)[0])
    if connector is not None:
        argv += ["--kv-transfer-config", json.dumps(connector, separators=(",", ":"))]
    if _kv_events(profile, target):
        events = {
            "enable_kv_cache_events": True,
            "publisher": "zmq",
            "endpoint": f"tcp://{LOOPBACK}:{target.kv_event_port(index or 0)}",
        }
        argv += ["--kv-events-config", json.dumps(events, separators=(",", ":"))]
    argv += engine.extra_args

    env = {**ENGINE_DEFAULT_ENV, **target.env}
    if target.offline:
        env["HF_HUB_OFFLINE"] = "1"
    if cache.mode == "in-process":
        env.update(lmcache_in_process_env(cache))
    env.update(engine.env)
    devices = device_group(profile, target, index)
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = devices
    env["VLLM_API_KEY"] = target.api_key
    url = f"http://{_client_host(host)}:{port}"
    # A restarted LMCache server restarts vLLM too: vLLM's connector does not reliably register
    # its KV cache with a new server (measured on the CPU engine: once it did, once the new server
    # rejected every store from the old vLLM, which served on without LMCache).
    requires: tuple[str, ...] = ()
    if cache.mode == "mp":
        requires = ("lmcache" if index is None or cache.shared else f"lmcache-{index}",)
    return Command(
        name=replica_name(profile, target, index),
        argv=argv,
        env=env,
        health_url=f"{url}/health",
        startup_timeout=engine.startup_timeout,
        stop_timeout=engine.stop_timeout,
        requires=requires,
    )


def _kv_events(profile: Profile, target: LaunchTarget) -> bool:
    """kv_aware routing on this machine: replicas publish KV events over loopback ZMQ."""
    return profile.replicas.policy == "kv_aware" and routed(profile, target)


def device_group(profile: Profile, target: LaunchTarget, index: int | None) -> str | None:
    """``CUDA_VISIBLE_DEVICES`` of replica ``index`` on a GPU machine; None: leave it alone."""
    replicas = profile.replicas
    if target.device != "cuda" or (replicas.count == 1 and replicas.device_groups is None):
        return None
    i = index or 0
    if replicas.device_groups is not None:
        group = replicas.device_groups[i]
    else:
        size = profile.gpus_per_replica
        group = list(range(i * size, (i + 1) * size))
    return ",".join(str(device) for device in group)


def router_command(profile: Profile, target: LaunchTarget, worker_urls: list[str]) -> Command:
    """``vllm-router`` on loopback over ``worker_urls``; the proxy forwards to it.

    Ready when ``/liveness`` answers: its ``/health`` is 503 while any one engine is down, which
    is the router doing its job, not the router failing. ``/readiness`` says how many are healthy.
    """
    replicas = profile.replicas
    argv = [target.router, "--host", LOOPBACK, "--port", str(target.router_port)]
    argv += ["--worker-urls", *worker_urls, "--policy", replicas.policy]
    argv += ["--prometheus-host", LOOPBACK, "--prometheus-port", str(target.router_metrics_port)]
    argv += ["--health-check-interval-secs", str(replicas.health_check_interval)]
    if _kv_events(profile, target):  # the local replicas' KV events feed the kv_aware policy
        for i in range(replicas.count):
            source = f"{replica_url(target, i)}=tcp://{LOOPBACK}:{target.kv_event_port(i)}"
            argv += ["--kv-event-source", source]
        argv += ["--kv-event-model", profile.model.name]
        if profile.engine.block_size is not None:
            argv += ["--kv-event-block-size", str(profile.engine.block_size)]
    valued = (
        ("cache_threshold", "--cache-threshold"),
        ("balance_abs_threshold", "--balance-abs-threshold"),
        ("balance_rel_threshold", "--balance-rel-threshold"),
        ("health_failure_threshold", "--health-failure-threshold"),
        ("max_retries", "--retry-max-retries"),
        ("request_timeout", "--request-timeout-secs"),
    )
    for option, flag in valued:
        value = getattr(replicas, option)
        if value is not None:
            argv += [flag, _number(value)]
    argv += replicas.router_extra_args
    return Command(
        name="router",
        argv=argv,
        env={},
        health_url=f"http://{LOOPBACK}:{target.router_port}/liveness",
        startup_timeout=replicas.router_startup_timeout,
        stop_timeout=profile.engine.stop_timeout,
        after=tuple(replica_name(profile, target, i) for i in range(replicas.count)),
    )


def sim_engine(profile: Profile, target: LaunchTarget) -> Command:
    """infer's simulated engine as a child process, started and watched exactly like vLLM."""
    settings = profile.sim.model_copy(
        update={
            "model": profile.model.name,
            "context_length": profile.model.context_length or profile.sim.context_length,
        }
    )
    argv = [target.python, "-m", "infer_cli.sim", "--host", LOOPBACK, "--port", str(target.port)]
    argv += ["--settings-json", settings.model_dump_json(exclude_defaults=True)]
    return Command(
        name="sim",
        argv=argv,
        env={"VLLM_API_KEY": target.api_key},
        health_url=f"http://{LOOPBACK}:{target.port}/health",
        startup_timeout=profile.engine.startup_timeout,
        stop_timeout=profile.engine.stop_timeout,
    )


def _model_flags(profile: Profile) -> list[str]:
    model = profile.model
    flags: list[str] = []
    if model.context_length is not None:
        flags += ["--max-model-len", str(model.context_length)]
    if model.dtype != "auto":
        flags += ["--dtype", model.dtype]
    if model.quantization:
        flags += ["--quantization", model.quantization]
    if model.revision:
        flags += ["--revision", model.revision]
    if model.tokenizer:
        flags += ["--tokenizer", model.tokenizer]
    if model.trust_remote_code:
        flags.append("--trust-remote-code")
    return flags


def _engine_flags(engine: EngineSection) -> list[str]:
    flags: list[str] = []
    for option in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size"):
        value = getattr(engine, option)
        if value != 1:
            flags += [_flag(option), str(value)]
    valued = (
        "distributed_executor_backend",
        "gpu_memory_utilization",
        "max_num_seqs",
        "max_num_batched_tokens",
        "block_size",
        "kv_cache_dtype",
        "tool_call_parser",
        "reasoning_parser",
        "chat_template",
        "generation_config",
        "seed",
    )
    for option in valued:
        value = getattr(engine, option)
        if value is not None:
            flags += [_flag(option), _number(value) if isinstance(value, float) else str(value)]
    if engine.kv_cache_memory_bytes is not None:
        flags += ["--kv-cache-memory-bytes", str(engine.kv_cache_memory_bytes)]
    if not engine.enable_prefix_caching:
        flags.append("--no-enable-prefix-caching")
    if engine.enable_chunked_prefill is not None:
        flags.append(_switch("enable_chunked_prefill", engine.enable_chunked_prefill))
    for switch in (
        "enforce_eager",
        "enable_prompt_tokens_details",
        "enable_force_include_usage",
        "enable_log_requests",
        "enable_auto_tool_choice",
    ):
        if getattr(engine, switch):
            flags.append(_flag(switch))
    return flags


def kv_transfer_config(
    cache: LMCacheSection, target: LaunchTarget, port: int | None = None
) -> dict[str, object] | None:
    """vLLM's connector to LMCache; ``port``: the cache server's (default: the shared one)."""
    if cache.mode == "off":
        return None
    if cache.mode == "in-process":
        return {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_both"}
    extra: dict[str, object] = {
        "lmcache.mp.host": f"tcp://{_client_host(cache.host)}",
        "lmcache.mp.port": target.lmcache_port if port is None else port,
    }
    mode = cache.transfer_mode
    if mode == "auto" and target.device == "cpu":
        mode = "lmcache_driven"  # the default mode hangs at "Registering kv caches" on the CPU
    if mode != "auto":
        extra["lmcache.mp.mp_transfer_mode"] = mode
    return {
        "kv_connector": "LMCacheMPConnector",
        "kv_role": "kv_both",
        "kv_connector_extra_config": extra,
    }


def l2_adapters(cache: LMCacheSection) -> list[dict[str, object]]:
    """The cache server's second tiers, in order: ``local_disk``, ``remote_url``, then ``l2``."""
    adapters: list[dict[str, object]] = []
    if cache.local_disk:
        adapters.append(_fs_adapter(cache.local_disk))
    if cache.remote_url:
        adapters.append(_resp_adapter(cache.remote_url))
    for tier in cache.l2:
        if isinstance(tier, FsTier):
            adapters.append(_fs_adapter(tier.path))
        elif isinstance(tier, RedisTier):
            adapters.append(_resp_adapter(tier.url))
        elif isinstance(tier, S3Tier):
            adapters.append(
                {
                    "type": "s3",
                    "s3_endpoint": f"s3://{tier.bucket}.{tier.host}",
                    "s3_region": tier.region,
                }
            )
        else:
            adapters.append(dict(tier.adapter))
    return adapters


def _fs_adapter(folder: str) -> dict[str, object]:
    return {"type": "fs", "base_path": str(Path(folder.removeprefix("file://")).expanduser())}


def _resp_adapter(url: str) -> dict[str, object]:
    """Redis and Valkey both speak RESP: LMCache's ``resp`` adapter reaches either."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return {"type": "resp", "host": parts.hostname or "127.0.0.1", "port": parts.port or 6379}


def lmcache_in_process_env(cache: LMCacheSection) -> dict[str, str]:
    """LMCache's own ``LMCACHE_*`` settings for the in-process connector."""
    env = {
        "LMCACHE_CHUNK_SIZE": str(cache.chunk_size),
        "LMCACHE_LOCAL_CPU": "True",
        "LMCACHE_MAX_LOCAL_CPU_SIZE": _number(cache.l1_size_gb),
        "LMCACHE_SAVE_UNFULL_CHUNK": str(cache.save_unfull_chunk),
    }
    if cache.local_disk:
        folder = cache.local_disk.removeprefix("file://").rstrip("/")
        env["LMCACHE_LOCAL_DISK"] = f"file://{folder}/"
        env["LMCACHE_MAX_LOCAL_DISK_SIZE"] = _number(cache.max_local_disk_size_gb)
    if cache.remote_url:
        env["LMCACHE_REMOTE_URL"] = cache.remote_url
        env["LMCACHE_REMOTE_SERDE"] = cache.remote_serde
    return env


def _client_host(bind_host: str) -> str:
    return LOOPBACK if bind_host in ("0.0.0.0", "::", "") else bind_host


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def _switch(option: str, on: bool) -> str:
    return _flag(option) if on else "--no-" + option.replace("_", "-")


def _number(value: float | int) -> str:
    """``2.0`` -> ``2``, ``0.92`` -> ``0.92``: what a person would type."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
