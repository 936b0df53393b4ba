"""From a profile to the exact ``lmcache server`` and ``vllm serve`` command lines.

Pure functions: every value that depends on the machine (executables, ports, the model folder, the
internal key, the run folder) arrives in a :class:`LaunchTarget`, so the same profile always gives
the same argv, and golden files can pin them for every bundled profile.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from infer_cli.config.schema import EngineSection, LMCacheSection, Profile
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


def shell_line(command: Command) -> str:
    """A copy-pasteable shell line: the environment assignments, then the command."""
    assignments = [f"{key}={shlex.quote(value)}" for key, value in sorted(command.env.items())]
    return " \\\n    ".join([*assignments, shlex.join(command.argv)])


def plan(profile: Profile, target: LaunchTarget) -> list[Command]:
    """The processes of one run, in start order."""
    if profile.engine.backend == "sim":
        return [sim_engine(profile, target)]
    launches = []
    if profile.lmcache.mode == "mp":
        launches.append(lmcache_server(profile.lmcache, target))
    launches.append(vllm_serve(profile, target))
    return launches


def lmcache_server(cache: LMCacheSection, target: LaunchTarget) -> Command:
    argv = [
        target.lmcache,
        "server",
        "--host",
        cache.host,
        "--port",
        str(target.lmcache_port),
        "--http-host",
        LOOPBACK,
        "--http-port",
        str(target.lmcache_http_port),
        "--l1-size-gb",
        _number(cache.l1_size_gb),
        "--eviction-policy",
        cache.eviction_policy,
        "--chunk-size",
        str(cache.chunk_size),
    ]
    for adapter in l2_adapters(cache):
        argv += ["--l2-adapter", json.dumps(adapter, separators=(",", ":"))]
    argv += cache.extra_args
    env = {**target.env, **cache.env}
    return Command(
        name="lmcache",
        argv=argv,
        env=env,
        health_url=f"http://{LOOPBACK}:{target.lmcache_http_port}/healthcheck",
        startup_timeout=cache.startup_timeout,
        stop_timeout=cache.stop_timeout,
    )


def vllm_serve(profile: Profile, target: LaunchTarget) -> Command:
    model, engine, cache = profile.model, profile.engine, profile.lmcache
    argv = [target.vllm, "serve", target.model]
    argv += ["--served-model-name", model.name, "--host", LOOPBACK, "--port", str(target.port)]
    argv += _model_flags(profile)
    argv += _engine_flags(engine)
    connector = kv_transfer_config(cache, target)
    if connector is not None:
        argv += ["--kv-transfer-config", json.dumps(connector, separators=(",", ":"))]
    argv += engine.extra_args

    env = {**ENGINE_DEFAULT_ENV, **target.env}
    if target.offline:
        env["HF_HUB_OFFLINE"] = "1"
    if cache.mode == "in-process":
        env.update(lmcache_in_process_env(cache))
    env.update(engine.env)
    env["VLLM_API_KEY"] = target.api_key
    return Command(
        name="vllm",
        argv=argv,
        env=env,
        health_url=f"http://{LOOPBACK}:{target.port}/health",
        startup_timeout=engine.startup_timeout,
        stop_timeout=engine.stop_timeout,
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


def kv_transfer_config(cache: LMCacheSection, target: LaunchTarget) -> dict[str, object] | None:
    if cache.mode == "off":
        return None
    if cache.mode == "in-process":
        return {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_both"}
    extra: dict[str, object] = {
        "lmcache.mp.host": f"tcp://{_client_host(cache.host)}",
        "lmcache.mp.port": target.lmcache_port,
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
    """The cache server's second tiers: a local folder and/or a RESP store (Redis, Valkey)."""
    adapters: list[dict[str, object]] = []
    if cache.local_disk:
        adapters.append({"type": "fs", "base_path": cache.local_disk.removeprefix("file://")})
    if cache.remote_url:
        from urllib.parse import urlsplit

        url = urlsplit(cache.remote_url)
        adapters.append(
            {"type": "resp", "host": url.hostname or "127.0.0.1", "port": url.port or 6379}
        )
    return adapters


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
