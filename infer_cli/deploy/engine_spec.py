"""A profile's ``[model]``, ``[engine]`` and ``[lmcache]`` as one ``modelSpec`` entry of the chart.

Every setting of those tables is accounted for here: a chart key where the chart has one, a vLLM
flag in ``vllmConfig.extraArgs`` or an ``LMCACHE_*`` variable in ``env`` where it has none, or a
note on stderr where the chart cannot carry it (``HANDLED`` lists them all; a test keeps it
complete, so a new profile key cannot be dropped in silence).
"""

from __future__ import annotations

import math
from typing import Any

from infer_cli.config.schema import EngineSection, LMCacheSection, Profile
from infer_cli.deploy.common import Images, Notes, gibibytes, k8s_name, number, served_model
from infer_cli.deploy.scale import ScaleOut
from infer_cli.deploy.yamltext import Commented

CONTAINER_PORT = 8000  # servingEngineSpec.containerPort's default; the chart's probes use it
CPU_PER_GPU = 4
MEMORY_BASE_GB = 16  # vLLM's own process, tokenizer, CUDA context
MEMORY_PER_GPU_GB = 8
STORAGE_PER_GPU_GB = 120  # weights must fit the GPUs, so they fit this
CPU_ENGINE_CPUS = 4
CPU_ENGINE_MEMORY_GB = 4  # plus the KV cache (engine.kv_cache_memory)
CPU_ENGINE_STORAGE = "20Gi"
PROBE_PERIOD = 10

HANDLED: dict[str, frozenset[str]] = {
    "model": frozenset(
        (
            "source",
            "served_name",
            "context_length",
            "dtype",
            "quantization",
            "revision",
            "tokenizer",
            "trust_remote_code",
        )
    ),
    "engine": frozenset(
        (
            "backend",
            "vllm",
            "device",
            "tensor_parallel_size",
            "pipeline_parallel_size",
            "data_parallel_size",
            "distributed_executor_backend",
            "gpu_memory_utilization",
            "kv_cache_memory",
            "max_num_seqs",
            "max_num_batched_tokens",
            "enable_prefix_caching",
            "enable_chunked_prefill",
            "block_size",
            "kv_cache_dtype",
            "enforce_eager",
            "enable_prompt_tokens_details",
            "enable_force_include_usage",
            "enable_log_requests",
            "enable_auto_tool_choice",
            "tool_call_parser",
            "reasoning_parser",
            "chat_template",
            "generation_config",
            "seed",
            "startup_timeout",
            "stop_timeout",
            "extra_args",
            "env",
        )
    ),
    "lmcache": frozenset(
        (
            "mode",
            "lmcache",
            "host",
            "port",
            "http_port",
            "l1_size_gb",
            "chunk_size",
            "eviction_policy",
            "transfer_mode",
            "local_disk",
            "max_local_disk_size_gb",
            "remote_url",
            "remote_serde",
            "save_unfull_chunk",
            "l2",
            "l2_store_policy",
            "l2_prefetch_policy",
            "shared",
            "startup_timeout",
            "stop_timeout",
            "extra_args",
            "env",
        )
    ),
}
"""Every key of these tables that :func:`model_spec` reads (a test checks it against the schema,
so a key added to the profile fails until it is given a place here)."""

# [engine] keys that become one vLLM flag each when set (the chart has no key for them)
_FLAG_SETTINGS = (
    "max_num_batched_tokens",
    "block_size",
    "kv_cache_dtype",
    "reasoning_parser",
    "generation_config",
    "seed",
)
_SWITCHES = (
    "enforce_eager",
    "enable_prompt_tokens_details",
    "enable_force_include_usage",
    "enable_log_requests",
)
# [lmcache] keys that only configure a standalone `lmcache server` (infer's mp mode)
_SERVER_ONLY = (
    "lmcache",
    "host",
    "port",
    "http_port",
    "transfer_mode",
    "startup_timeout",
    "stop_timeout",
    "extra_args",
    "l2",
    "l2_store_policy",
    "l2_prefetch_policy",
    "shared",
)


def model_spec(profile: Profile, scale: ScaleOut, images: Images, notes: Notes, *,
               hf_secret: str | None, storage: str | None) -> dict[str, Any]:  # fmt: skip
    """One ``servingEngineSpec.modelSpec[]`` entry."""
    model, engine = profile.model, profile.engine
    cpu = engine.device == "cpu"
    lmcache = _lmcache_on(profile, notes)
    ray = engine.distributed_executor_backend == "ray" and engine.pipeline_parallel_size > 1
    image = images.lmcache if lmcache else images.vllm
    repository, _, tag = image.rpartition(":")
    if cpu:
        notes.chose(
            f"engine.device 'cpu': {repository} is a CUDA image; pass --vllm-image with a vLLM "
            "CPU build"
        )
    spec: dict[str, Any] = {
        "name": k8s_name(model.name.rsplit("/", 1)[-1]),
        "repository": repository,
        "tag": tag,
        "modelURL": served_model(profile, notes),
    }
    if model.revision:
        spec["modelRevision"] = model.revision
    spec["replicaCount"] = (engine.pipeline_parallel_size - 1) if ray else scale.replicas
    spec.update(_resources(profile, lmcache=lmcache, ray=ray, storage=storage))
    if cpu:
        spec["runtimeClassName"] = ""
    if hf_secret:
        spec["hf_token"] = {"secretName": hf_secret, "secretKey": "token"}
    if engine.enable_auto_tool_choice:
        spec["enableTool"] = True
    if engine.tool_call_parser:
        spec["toolCallParser"] = engine.tool_call_parser
    spec["vllmConfig"] = vllm_config(profile, notes, ray=ray)
    if lmcache:
        spec["lmcacheConfig"] = lmcache_config(profile.lmcache)
    env = _env(profile, lmcache=lmcache, notes=notes)
    if env:
        spec["env"] = env
    if ray:
        spec["raySpec"] = Commented(
            f"engine.distributed_executor_backend 'ray' with pipeline_parallel_size "
            f"{engine.pipeline_parallel_size}: a Ray head and {engine.pipeline_parallel_size - 1} "
            f"worker(s) of {engine.tensor_parallel_size} GPU(s) each (replicaCount counts workers)",
            {"enabled": True, "headNode": _head_node(spec)},
        )
        if scale.replicas > 1:
            notes.cannot("replicas", "a Ray cluster serves one copy of the model in the chart")
    _leftovers(profile, notes)
    return spec


def vllm_config(profile: Profile, notes: Notes, *, ray: bool) -> dict[str, Any]:
    model, engine = profile.model, profile.engine
    config: dict[str, Any] = {"enablePrefixCaching": engine.enable_prefix_caching}
    if engine.enable_chunked_prefill is not None:
        config["enableChunkedPrefill"] = engine.enable_chunked_prefill
    if model.context_length is not None:
        config["maxModelLen"] = model.context_length
    if model.dtype != "auto":
        config["dtype"] = model.dtype
    config["tensorParallelSize"] = engine.tensor_parallel_size
    if ray:
        config["pipelineParallelSize"] = engine.pipeline_parallel_size
        config["v1"] = "1"  # the chart's Ray template runs vLLM's old engine without it
    if engine.max_num_seqs is not None:
        config["maxNumSeqs"] = engine.max_num_seqs
    if engine.gpu_memory_utilization is not None:
        config["gpuMemoryUtilization"] = engine.gpu_memory_utilization
    config["extraArgs"] = extra_args(profile, ray=ray)
    return config


def extra_args(profile: Profile, *, ray: bool) -> list[str]:
    """vLLM flags for the profile's settings that have no chart key, then ``engine.extra_args``."""
    model, engine = profile.model, profile.engine
    args = ["--served-model-name", model.name]
    if model.quantization:
        args += ["--quantization", model.quantization]
    if model.tokenizer:
        args += ["--tokenizer", model.tokenizer]
    if model.trust_remote_code:
        args.append("--trust-remote-code")
    if engine.pipeline_parallel_size > 1 and not ray:
        args += ["--pipeline-parallel-size", str(engine.pipeline_parallel_size)]
    if engine.data_parallel_size > 1:
        args += ["--data-parallel-size", str(engine.data_parallel_size)]
    if engine.distributed_executor_backend and not ray:
        args += ["--distributed-executor-backend", engine.distributed_executor_backend]
    for name in _FLAG_SETTINGS:
        value = getattr(engine, name)
        if value is not None:
            args += [_flag(name), str(value)]
    if engine.kv_cache_memory_bytes is not None:
        args += ["--kv-cache-memory-bytes", str(engine.kv_cache_memory_bytes)]
    args += [_flag(name) for name in _SWITCHES if getattr(engine, name)]
    return args + list(engine.extra_args)


def lmcache_config(cache: LMCacheSection) -> dict[str, Any]:
    config: dict[str, Any] = {
        "enabled": True,
        "cpuOffloadingBufferSize": number(cache.l1_size_gb),
        "logLevel": "INFO",
    }
    if cache.local_disk:
        config["diskOffloadingBufferSize"] = number(cache.max_local_disk_size_gb)
    return config


def _lmcache_on(profile: Profile, notes: Notes) -> bool:
    cache = profile.lmcache
    if cache.mode == "off":
        return False
    if profile.engine.device == "cpu":
        notes.cannot(
            "lmcache.mode",
            f"'{cache.mode}' on the CPU needs infer's standalone lmcache server; the chart runs "
            "LMCache inside vLLM (CUDA only), so the chart's LMCache stays off",
        )
        return False
    if cache.mode == "mp":
        notes.chose(
            "lmcache.mode 'mp': the chart runs LMCache inside each vLLM (LMCacheConnectorV1) "
            f"with the same {number(cache.l1_size_gb)} GB of CPU memory, not a separate server"
        )
    return True


def _env(profile: Profile, *, lmcache: bool, notes: Notes) -> list[dict[str, str]]:
    from infer_cli.engine.launch import lmcache_in_process_env

    values: dict[str, str] = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    if lmcache:
        cache = profile.lmcache
        set_by_chart = {"LMCACHE_LOCAL_CPU", "LMCACHE_MAX_LOCAL_CPU_SIZE",
                        "LMCACHE_MAX_LOCAL_DISK_SIZE"}  # fmt: skip
        for key, value in lmcache_in_process_env(cache).items():
            if key not in set_by_chart:
                values[key] = value
        values.update(cache.env)
        if cache.eviction_policy != "LRU":
            notes.cannot(
                "lmcache.eviction_policy",
                f"'{cache.eviction_policy}' belongs to infer's lmcache server; LMCache inside "
                "vLLM evicts LRU",
            )
        if cache.local_disk:
            notes.chose(f"lmcache.local_disk: {cache.local_disk} must be writable inside the pod")
    values.update(profile.engine.env)
    return [{"name": key, "value": value} for key, value in values.items()]


def _resources(profile: Profile, *, lmcache: bool, ray: bool, storage: str | None
               ) -> dict[str, Any]:  # fmt: skip
    engine = profile.engine
    if engine.device == "cpu":
        kv = (engine.kv_cache_memory_bytes or 0) / 2**30
        return {
            "requestCPU": CPU_ENGINE_CPUS,
            "requestMemory": gibibytes(CPU_ENGINE_MEMORY_GB + kv),
            "requestGPU": 0,
            "pvcStorage": storage or CPU_ENGINE_STORAGE,
        }
    gpus = engine.tensor_parallel_size * (1 if ray else engine.pipeline_parallel_size)
    offload = profile.lmcache.l1_size_gb if lmcache else 0.0
    return {
        "requestCPU": max(CPU_PER_GPU, CPU_PER_GPU * gpus),
        "requestMemory": gibibytes(MEMORY_BASE_GB + MEMORY_PER_GPU_GB * gpus + offload),
        "requestGPU": gpus,
        "pvcStorage": storage or f"{STORAGE_PER_GPU_GB * gpus}Gi",
    }


def _head_node(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestCPU": spec["requestCPU"],
        "requestMemory": spec["requestMemory"],
        "requestGPU": spec["requestGPU"],
    }


def startup_probe(profile: Profile) -> dict[str, Any]:
    """``engine.startup_timeout`` as the chart's startup probe (periods of 10 s)."""
    return {
        "initialDelaySeconds": 15,
        "periodSeconds": PROBE_PERIOD,
        "failureThreshold": max(1, math.ceil(profile.engine.startup_timeout / PROBE_PERIOD)),
        "httpGet": {"path": "/health", "port": CONTAINER_PORT},
    }


def _leftovers(profile: Profile, notes: Notes) -> None:
    """Settings with no place in the chart, said out loud when they differ from the default."""
    engine, cache = profile.engine, profile.lmcache
    if engine.vllm != "auto":
        notes.cannot("engine.vllm", "the image's own vllm runs in the cluster")
    if engine.chat_template:
        notes.cannot(
            "engine.chat_template",
            "a file on this machine; put it in the image and add --chat-template to "
            "engine.extra_args",
        )
    default_stop = EngineSection.model_fields["stop_timeout"].default
    if engine.stop_timeout != default_stop:
        notes.cannot("engine.stop_timeout", "the chart has no termination grace period key")
    if cache.mode == "off":
        return
    for name in _SERVER_ONLY:
        if getattr(cache, name) != LMCacheSection.model_fields[name].get_default(
            call_default_factory=True
        ):
            notes.cannot(f"lmcache.{name}", "it configures infer's lmcache server, which the "
                         "chart does not run")  # fmt: skip
    if cache.remote_serde != "naive" and not cache.remote_url:
        notes.cannot("lmcache.remote_serde", "no remote_url to use it with")


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")
