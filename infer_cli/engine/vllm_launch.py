"""``vllm serve``: one replica's command line and environment from the profile."""

from __future__ import annotations

import json

from infer_cli.config.schema import EngineSection, Profile
from infer_cli.engine.argv import LOOPBACK, client_host, flag, number, switch
from infer_cli.engine.command import Command
from infer_cli.engine.lmcache_launch import kv_transfer_config, lmcache_in_process_env
from infer_cli.engine.routing import device_group, kv_events, replica_name
from infer_cli.engine.target import LaunchTarget

ENGINE_DEFAULT_ENV = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


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
    if kv_events(profile, target):
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
    url = f"http://{client_host(host)}:{port}"
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
            flags += [flag(option), str(value)]
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
            flags += [flag(option), number(value) if isinstance(value, float) else str(value)]
    if engine.kv_cache_memory_bytes is not None:
        flags += ["--kv-cache-memory-bytes", str(engine.kv_cache_memory_bytes)]
    if not engine.enable_prefix_caching:
        flags.append("--no-enable-prefix-caching")
    if engine.enable_chunked_prefill is not None:
        flags.append(switch("enable_chunked_prefill", engine.enable_chunked_prefill))
    for option in (
        "enforce_eager",
        "enable_prompt_tokens_details",
        "enable_force_include_usage",
        "enable_log_requests",
        "enable_auto_tool_choice",
    ):
        if getattr(engine, option):
            flags.append(flag(option))
    return flags
