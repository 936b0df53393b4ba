"""The profile schema: what a TOML profile may say, strictly.

Every table forbids unknown keys, so a typo is an error that names the key instead of a setting
silently ignored. Field names follow vLLM's and LMCache's own option names where one exists
(``max_num_seqs`` is ``--max-num-seqs``), so a profile reads like the command line it becomes.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from infer_cli.sim.settings import SimSettings

PULLED_PREFIX = "infer:"
"""``model.source = "infer:NAME"``: a model that infer prepares itself (``infer pull NAME``)."""

Quantization = Literal[
    "int4", "int8", "fp4", "mxfp4", "nvfp4", "fp6", "fp8", "mxfp8", "fp16", "bf16", "fp32"
]
SamplingParameter = Literal[
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "top_a",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "stop",
    "seed",
    "max_tokens",
    "logit_bias",
    "logprobs",
    "top_logprobs",
]
Feature = Literal["tools", "json_mode", "structured_outputs", "logprobs", "web_search", "reasoning"]
InputModality = Literal["text", "image", "file", "audio", "video"]
OutputModality = Literal[
    "text", "image", "embeddings", "audio", "video", "rerank", "speech", "transcription"
]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(value: int | str) -> int:
    """Bytes from ``1073741824``, ``"1G"``, ``"1GiB"`` or ``"512M"`` (K, M, G, T: 1024-based)."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(
            f"{value!r} is not a size; use bytes or a number with K, M, G or T (e.g. '2G')"
        )
    return int(float(match.group(1)) * _FACTORS[match.group(2).upper()])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


class ModelSection(_Strict):
    source: str = Field(
        description="Hugging Face id, local folder, or 'infer:NAME' (a model infer prepares)",
    )
    served_name: str | None = Field(
        default=None, description="The model id clients send and /v1/models shows (default: source)"
    )
    context_length: int | None = Field(default=None, gt=0, description="vLLM --max-model-len")
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = "auto"
    quantization: str | None = Field(
        default=None, description="vLLM --quantization (awq, fp8, ...)"
    )
    revision: str | None = None
    tokenizer: str | None = None
    trust_remote_code: bool = False

    @property
    def name(self) -> str:
        return self.served_name or self.source.removeprefix(PULLED_PREFIX)


class EngineSection(_Strict):
    backend: Literal["vllm", "sim"] = Field(
        default="vllm",
        description="'vllm', or 'sim': infer's simulated engine (no model, no GPU; see [sim])",
    )
    vllm: str = Field(
        default="auto",
        description="vLLM executable: 'auto' (infer's engine environment, then PATH), a name "
        "on PATH, or a path",
    )
    device: Literal["auto", "cuda", "cpu"] = "auto"
    tensor_parallel_size: int = Field(default=1, ge=1)
    pipeline_parallel_size: int = Field(default=1, ge=1)
    data_parallel_size: int = Field(default=1, ge=1)
    distributed_executor_backend: Literal["mp", "ray"] | None = None
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    kv_cache_memory: int | str | None = Field(
        default=None, description="Explicit KV cache size (bytes or '1G'); required on the CPU"
    )
    max_num_seqs: int | None = Field(default=None, ge=1)
    max_num_batched_tokens: int | None = Field(default=None, ge=1)
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool | None = None
    block_size: int | None = Field(default=None, ge=1)
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16", "float16"] | None = (
        None
    )
    enforce_eager: bool = False
    enable_prompt_tokens_details: bool = True
    enable_force_include_usage: bool = False
    enable_log_requests: bool = False
    enable_auto_tool_choice: bool = False
    tool_call_parser: str | None = None
    reasoning_parser: str | None = None
    chat_template: str | None = None
    generation_config: str | None = None
    seed: int | None = None
    startup_timeout: float = Field(
        default=900.0, gt=0, description="Seconds vLLM may take to be ready"
    )
    stop_timeout: float = Field(
        default=15.0, gt=0, description="Seconds between SIGTERM and SIGKILL when stopping"
    )
    extra_args: list[str] = Field(default_factory=list, description="Raw vllm serve arguments")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment for vLLM")

    @field_validator("kv_cache_memory")
    @classmethod
    def _size(cls, value: int | str | None) -> int | str | None:
        if value is not None:
            parse_size(value)
        return value

    @model_validator(mode="after")
    def _tools(self) -> EngineSection:
        if self.enable_auto_tool_choice and not self.tool_call_parser:
            raise ValueError(
                "enable_auto_tool_choice needs tool_call_parser (e.g. 'hermes', 'llama3_json')"
            )
        return self

    @property
    def kv_cache_memory_bytes(self) -> int | None:
        return None if self.kv_cache_memory is None else parse_size(self.kv_cache_memory)


class LMCacheSection(_Strict):
    mode: Literal["off", "mp", "in-process"] = Field(
        default="off",
        description="'mp': a standalone 'lmcache server' (recommended, the only mode on the CPU); "
        "'in-process': LMCacheConnectorV1 inside vLLM (CUDA only)",
    )
    lmcache: str = Field(
        default="auto",
        description="lmcache executable: 'auto' (next to vllm, then PATH), a name or a path",
    )
    host: str = "127.0.0.1"
    port: int = Field(
        default=0, ge=0, le=65535, description="ZMQ port of the cache server (0: a free port)"
    )
    http_port: int = Field(
        default=0, ge=0, le=65535, description="Health/metrics port (0: a free port)"
    )
    l1_size_gb: float = Field(default=5.0, gt=0, description="CPU RAM for cached KV, GB")
    chunk_size: int = Field(default=256, ge=1, description="Tokens per stored chunk")
    eviction_policy: Literal["LRU", "ARC", "LFU", "FIFO", "MRU", "noop"] = Field(
        default="LRU", description="mp: LRU, ARC or noop; in-process: LRU, LFU, FIFO or MRU"
    )
    transfer_mode: Literal["auto", "lmcache_driven", "vllm_driven"] = Field(
        default="auto", description="MP transfer mode; 'auto' is lmcache_driven on the CPU"
    )
    local_disk: str | None = Field(
        default=None, description="Folder to spill chunks to (an L2 tier)"
    )
    max_local_disk_size_gb: float = Field(
        default=0.0,
        ge=0,
        description="Disk budget, GB (in-process mode; mp mode's fs tier has none)",
    )
    remote_url: str | None = Field(
        default=None,
        description="Shared cache: 'redis://host:6379' (mp and in-process) or "
        "'lm://host:65432' (in-process)",
    )
    remote_serde: Literal["naive", "cachegen"] = "naive"
    save_unfull_chunk: bool = False
    startup_timeout: float = Field(default=120.0, gt=0)
    stop_timeout: float = Field(default=10.0, gt=0)
    extra_args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _mode_specific(self) -> LMCacheSection:
        if self.mode == "mp":
            if self.eviction_policy not in _MP_POLICIES:
                raise ValueError(
                    f"eviction_policy '{self.eviction_policy}' is not available in mp mode; "
                    f"use one of {', '.join(_MP_POLICIES)}"
                )
            if self.remote_url and not self.remote_url.startswith(("redis://", "valkey://")):
                raise ValueError(
                    "remote_url in mp mode must be redis://HOST:PORT or valkey://HOST:PORT"
                )
        elif self.mode == "in-process" and self.eviction_policy not in _IN_PROCESS_POLICIES:
            raise ValueError(
                f"eviction_policy '{self.eviction_policy}' is not available in in-process mode; "
                f"use one of {', '.join(_IN_PROCESS_POLICIES)}"
            )
        return self


_MP_POLICIES = ("LRU", "ARC", "noop")
_IN_PROCESS_POLICIES = ("LRU", "LFU", "FIFO", "MRU")


class ProxySection(_Strict):
    host: str = Field(default="127.0.0.1", description="Public bind address of the proxy")
    port: int = Field(default=8080, ge=0, le=65535, description="Public port of the proxy")
    request_timeout: float = Field(default=600.0, gt=0, description="Seconds per upstream request")
    keepalive_interval: float = Field(
        default=10.0, gt=0, description="Seconds between SSE keep-alive comments while waiting"
    )
    max_body_bytes: int | str = Field(
        default="10M", description="Largest request body accepted (bytes or '10M'); more: 413"
    )
    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Keys clients must send as 'Authorization: Bearer'; prefer api_keys_file "
        "or INFER_API_KEYS (none anywhere: the proxy is open)",
    )
    api_keys_file: str | None = Field(
        default=None,
        description="File of 'name:sha256' lines written by 'infer keys add' "
        "(default: api_keys in infer's home, when it exists)",
    )
    protect_health: bool = Field(default=False, description="Require a key for /health")
    protect_metrics: bool = Field(default=False, description="Require a key for /metrics")
    rate_limit_rpm: int | None = Field(
        default=None, ge=0, description="Requests per minute per key (0 or unset: no limit)"
    )
    rate_limit_tpm: int | None = Field(
        default=None, ge=0, description="Prompt + completion tokens per minute per key"
    )
    max_concurrent_per_key: int | None = Field(
        default=None, ge=0, description="Requests in flight per key; one more gets 429"
    )
    max_concurrent: int | None = Field(
        default=None,
        ge=0,
        description="Requests in flight over all keys; one more gets 429 at once (no queue)",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Browser origins allowed (empty: no CORS headers)"
    )
    engine_metrics: bool = Field(
        default=True, description="Append the engine's own Prometheus metrics to /metrics"
    )
    engine_metrics_timeout: float = Field(default=2.0, gt=0)
    # What one client connection and one request body may cost (the README's "Limits on
    # connections"); defaults an API client never reaches.
    max_connections: int = Field(
        default=1024, ge=1, description="Client connections open at once; one more: 503, closed"
    )
    header_timeout: float = Field(
        default=10.0, gt=0, description="Seconds for a request's head to arrive; slower: 408"
    )
    body_timeout: float = Field(
        default=60.0, gt=0, description="Seconds for a body to arrive after its head; slower: 408"
    )
    max_head_bytes: int | str = Field(
        default="64K", description="Request line and headers (bytes or '64K'); more: 431"
    )
    max_header_lines: int = Field(default=100, ge=1, description="Header lines; more: 431")
    max_url_bytes: int | str = Field(
        default="8K", description="Request URL, path and query (bytes or '8K'); longer: 414"
    )
    max_json_values: int = Field(
        default=50_000, ge=1, description="JSON values in one request body; more: 413"
    )
    max_json_depth: int = Field(
        default=64, ge=1, description="Nesting of objects and arrays in a body; deeper: 400"
    )
    max_messages: int = Field(default=2048, ge=1, description="Messages of one request; more: 400")

    @field_validator("max_body_bytes", "max_head_bytes", "max_url_bytes")
    @classmethod
    def _body_size(cls, value: int | str) -> int | str:
        if parse_size(value) < 1:
            raise ValueError("must be at least 1 byte")
        return value


class SupervisorSection(_Strict):
    """What ``infer serve`` does when an engine process dies or stops answering its health check."""

    on_failure: Literal["restart", "stop"] = Field(
        default="restart",
        description="'restart': restart the dead process (and what depends on it) with backoff; "
        "'stop': stop everything and exit non-zero (leave restarts to systemd or Kubernetes)",
    )
    max_restarts: int = Field(
        default=5, ge=0, description="Restarts allowed within restart_window; one more: give up"
    )
    restart_window: float = Field(
        default=600.0, gt=0, description="Seconds over which max_restarts is counted"
    )
    backoff: float = Field(
        default=1.0, ge=0, description="Seconds before the first restart; doubled for each next"
    )
    backoff_max: float = Field(default=60.0, ge=0, description="Longest wait before a restart")
    health_interval: float = Field(
        default=5.0, gt=0, description="Seconds between health checks of each running process"
    )
    health_timeout: float = Field(
        default=5.0, gt=0, description="Seconds a health check may take before it counts as failed"
    )
    unhealthy_after: int = Field(
        default=3,
        ge=1,
        description="Failed health checks in a row after which a process counts as wedged "
        "and is restarted like a dead one",
    )


class Pricing(_Strict):
    """USD per token, as strings (OpenRouter's rule: no float error)."""

    prompt: str = "0"
    completion: str = "0"
    input_cache_read: str = "0"
    image: str = "0"
    request: str = "0"

    @field_validator("*")
    @classmethod
    def _decimal(cls, value: str) -> str:
        from decimal import Decimal, InvalidOperation

        try:
            number = Decimal(value)
        except InvalidOperation:
            raise ValueError(
                f"{value!r} is not a decimal price in USD per token (e.g. '0.0000002')"
            ) from None
        if number < 0:
            raise ValueError("prices cannot be negative")
        return value


class OpenRouterSection(_Strict):
    """How the model is listed for OpenRouter (``/api/v1/models``)."""

    name: str | None = None
    description: str | None = None
    hugging_face_id: str | None = None
    created: int | None = Field(default=None, ge=0, description="Unix time the model was released")
    quantization: Quantization = "bf16"
    max_output_length: int | None = Field(default=None, gt=0)
    input_modalities: list[InputModality] = Field(default_factory=lambda: _text_only())
    output_modalities: list[OutputModality] = Field(default_factory=lambda: _text_only())
    supported_sampling_parameters: list[SamplingParameter] = Field(
        default_factory=lambda: _default_sampling()
    )
    supported_features: list[Feature] = Field(default_factory=list)
    pricing: Pricing = Field(default_factory=Pricing)


def _text_only() -> list[Any]:
    return ["text"]


DEFAULT_SAMPLING_PARAMETERS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "stop",
    "seed",
    "max_tokens",
    "logit_bias",
)
"""What a listing declares when the profile names no sampling parameters."""


def _default_sampling() -> list[Any]:
    return list(DEFAULT_SAMPLING_PARAMETERS)


class Profile(_Strict):
    """A whole profile after ``extends`` and every override were applied."""

    description: str = ""
    extends: str | None = Field(
        default=None, description="Name or path of the profile this one builds on"
    )
    model: ModelSection
    engine: EngineSection = Field(default_factory=EngineSection)
    lmcache: LMCacheSection = Field(default_factory=LMCacheSection)
    proxy: ProxySection = Field(default_factory=ProxySection)
    openrouter: OpenRouterSection = Field(default_factory=OpenRouterSection)
    supervisor: SupervisorSection = Field(default_factory=SupervisorSection)
    sim: SimSettings = Field(
        default_factory=SimSettings,
        description="The simulated engine (engine.backend = 'sim'); its model name and context "
        "length come from [model]",
    )

    @model_validator(mode="after")
    def _sim_alone(self) -> Profile:
        if self.engine.backend == "sim" and self.lmcache.mode != "off":
            raise ValueError("the simulated engine runs without LMCache: set lmcache.mode = 'off'")
        return self
