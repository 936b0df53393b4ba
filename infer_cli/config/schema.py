"""The profile schema: what a TOML profile may say, strictly.

Every table forbids unknown keys, so a typo is an error that names the key instead of a setting
silently ignored. Field names follow vLLM's and LMCache's own option names where one exists
(``max_num_seqs`` is ``--max-num-seqs``), so a profile reads like the command line it becomes.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from infer_cli.config.sim import SimSettings

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


class FsTier(_Strict):
    """A folder (local disk, NFS, a parallel file system): LMCache's ``fs`` adapter."""

    type: Literal["fs"]
    path: str = Field(description="Folder for KV chunks; servers sharing it share their KV")

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        folder = value.removeprefix("file://")
        if not folder.startswith(("/", "~")):
            raise ValueError(f"{value!r} must be an absolute folder (e.g. '/mnt/shared/lmcache')")
        return value


class RedisTier(_Strict):
    """A Redis or Valkey server, spoken to over RESP: LMCache's ``resp`` adapter."""

    type: Literal["redis"]
    url: str = Field(description="redis://HOST:PORT or valkey://HOST:PORT")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("redis", "valkey") or not parts.hostname:
            raise ValueError(f"{value!r} is not redis://HOST:PORT or valkey://HOST:PORT")
        if parts.username or parts.password:
            raise ValueError(
                "no credentials in the URL (they would show in 'ps'); use a raw adapter tier "
                "with username and password"
            )
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError(f"{value!r} has a bad port") from None
        return value


class S3Tier(_Strict):
    """An S3 bucket (or an S3-compatible store): LMCache's ``s3`` adapter.

    Credentials come from the environment (``AWS_*`` variables, a profile, an instance role).
    """

    type: Literal["s3"]
    bucket: str = Field(min_length=1, description="Bucket name")
    region: str = Field(min_length=1, description="Region used to sign requests")
    endpoint: str | None = Field(
        default=None,
        description="Host of the store (default: AWS, s3.REGION.amazonaws.com); the bucket is "
        "addressed virtual-hosted style, as BUCKET.HOST",
    )

    @property
    def host(self) -> str:
        return self.endpoint or f"s3.{self.region}.amazonaws.com"


class RawTier(_Strict):
    """Any other LMCache L2 adapter (p2p, mooncake_store, valkey, ...), as LMCache's own JSON."""

    type: Literal["raw"]
    adapter: dict[str, Any] = Field(
        description="The adapter's JSON object, with its own 'type' (see 'lmcache server --help')"
    )

    @field_validator("adapter", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as error:
                raise ValueError(f"not a JSON object: {error}") from None
        if not isinstance(value, dict) or not isinstance(value.get("type"), str):
            raise ValueError("must be an object with a 'type' string (an LMCache adapter name)")
        return value


L2Tier = Annotated[FsTier | RedisTier | S3Tier | RawTier, Field(discriminator="type")]


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
    l2: list[L2Tier] = Field(
        default_factory=list,
        description="mp mode: second tiers behind the server's RAM, in order (fs, redis, s3, "
        "or a raw LMCache adapter); servers that share one share their KV across machines",
    )
    l2_store_policy: Literal["default", "skip_l1"] | None = Field(
        default=None, description="lmcache server --l2-store-policy"
    )
    l2_prefetch_policy: Literal["default", "retain"] | None = Field(
        default=None, description="lmcache server --l2-prefetch-policy"
    )
    shared: bool = Field(
        default=True,
        description="With several replicas: one cache server shared by all of them (a prompt "
        "one replica computed is a hit on the others), or false: one server per replica",
    )
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
        elif self.l2 or self.l2_store_policy or self.l2_prefetch_policy:
            raise ValueError("l2 tiers belong to the cache server: they need mode = 'mp'")
        if self.mode == "in-process" and self.eviction_policy not in _IN_PROCESS_POLICIES:
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
    extra_routes: list[str] = Field(
        default_factory=list,
        description="Engine routes to serve besides the proxy's own, relayed as they are (e.g. "
        "'/v1/embeddings'): keys, body size, concurrency and requests per minute apply, token "
        "accounting does not",
    )

    @field_validator("extra_routes")
    @classmethod
    def _extra_routes(cls, routes: list[str]) -> list[str]:
        for route in routes:
            parts = route.split("/")
            if not route.startswith("/v1/") or any(p in ("", ".", "..") for p in parts[1:]):
                raise ValueError(
                    f"{route!r} is not an engine route under /v1 (e.g. '/v1/embeddings')"
                )
        return routes

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


RouterPolicy = Literal[
    "cache_aware",
    "round_robin",
    "power_of_two",
    "consistent_hash",
    "kv_aware",
    "random",
    "sticky_least_loaded",
]


class ReplicasSection(_Strict):
    """Several whole copies of the model behind vLLM's router (``vllm-router``).

    Each replica is one ``vllm serve`` on a loopback port of its own; on GPUs each gets its own
    ``CUDA_VISIBLE_DEVICES`` group of ``tensor_parallel_size x pipeline_parallel_size x
    data_parallel_size`` devices. The router spreads requests over them (and over ``workers``,
    engines other machines run with ``infer serve --worker``); infer's proxy stays the one door.
    """

    count: int = Field(default=1, ge=1, description="vLLM replicas on this machine")
    gpus: int | None = Field(
        default=None,
        ge=1,
        description="GPUs this machine gives the replicas (checked: whole groups, enough of "
        "them); unset: not checked",
    )
    device_groups: list[list[int]] | None = Field(
        default=None,
        description="CUDA device ids of each replica, e.g. [[0, 1], [2, 3]] (default: "
        "consecutive groups from device 0)",
    )
    min_ready: int | None = Field(
        default=None,
        ge=1,
        description="Replicas that must start for the stack to serve; with fewer it stops "
        "(default: all of them)",
    )
    router: str = Field(
        default="auto",
        description="vllm-router executable: 'auto' (infer's engine environment, then PATH), "
        "a name on PATH, or a path",
    )
    policy: RouterPolicy = Field(
        default="cache_aware", description="vllm-router --policy: how a request picks a replica"
    )
    cache_threshold: float | None = Field(
        default=None, ge=0, le=1, description="cache_aware: prefix match that wins (0.0-1.0)"
    )
    balance_abs_threshold: int | None = Field(
        default=None, ge=0, description="cache_aware: load gap (requests) that overrides the cache"
    )
    balance_rel_threshold: float | None = Field(
        default=None, ge=1, description="cache_aware: load ratio that overrides the cache"
    )
    health_check_interval: int = Field(
        default=5,
        ge=1,
        description="Seconds between the router's health checks of each replica (its own "
        "default, 60, keeps a dead replica in rotation for a minute)",
    )
    health_failure_threshold: int | None = Field(
        default=None, ge=1, description="Failed checks in a row that take a replica out"
    )
    max_retries: int | None = Field(
        default=None, ge=1, description="Tries of one request over replicas (1: no retry)"
    )
    request_timeout: int | None = Field(
        default=None, ge=1, description="Seconds the router gives one request"
    )
    router_startup_timeout: float = Field(
        default=60.0, gt=0, description="Seconds the router may take to answer"
    )
    router_extra_args: list[str] = Field(
        default_factory=list, description="Raw vllm-router arguments, added last"
    )
    workers: list[str] = Field(
        default_factory=list,
        description="Engines of other machines ('infer serve --worker' prints their line), "
        "e.g. ['http://gpu-b:8000']",
    )
    workers_api_key_env: str = Field(
        default="INFER_WORKERS_API_KEY",
        min_length=1,
        description="Environment variable holding the key every engine behind the router "
        "accepts (needed with workers, and on the workers themselves)",
    )
    worker_host: str = Field(
        default="0.0.0.0", description="--worker: address the replicas listen on"
    )
    worker_port: int = Field(
        default=8000,
        ge=1,
        le=65535,
        description="--worker: port of the first replica; replica i listens on worker_port + i",
    )
    advertise_host: str | None = Field(
        default=None,
        description="--worker: the name the head reaches this machine by (default: its host name)",
    )

    @field_validator("workers")
    @classmethod
    def _worker_urls(cls, urls: list[str]) -> list[str]:
        cleaned = [worker_url(url) for url in urls]
        repeated = sorted({url for url in cleaned if cleaned.count(url) > 1})
        if repeated:
            raise ValueError(f"{repeated[0]} is listed twice")
        return cleaned

    @field_validator("workers_api_key_env")
    @classmethod
    def _variable(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"{name!r} is not an environment variable name")
        return name

    @model_validator(mode="after")
    def _min_ready(self) -> ReplicasSection:
        if self.min_ready is not None and self.min_ready > self.count:
            _key_error(
                ("min_ready",),  # inside [replicas]: pydantic adds the table
                f"min_ready {self.min_ready} is more than the {self.count} replica(s) of "
                "replicas.count",
                self.min_ready,
            )
        tuning = ("cache_threshold", "balance_abs_threshold", "balance_rel_threshold")
        for name in tuning:
            if getattr(self, name) is not None and self.policy != "cache_aware":
                _key_error(
                    (name,),
                    f"{name} tunes the cache_aware policy; replicas.policy is {self.policy}",
                    getattr(self, name),
                )
        return self

    @property
    def ready_needed(self) -> int:
        """Replicas that must be ready for the stack to serve."""
        return self.min_ready if self.min_ready is not None else self.count

    @property
    def routed(self) -> bool:
        """Whether requests go through vllm-router (several replicas, or other machines)."""
        return self.count > 1 or bool(self.workers)


def worker_url(url: str) -> str:
    """An engine's base URL, ``http(s)://HOST:PORT`` without a trailing slash; else ValueError."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r} is not a URL with a valid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an engine URL like 'http://gpu-b:8000'")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: give only scheme, host and port (the key has its own setting)")
    if parts.path not in ("", "/"):
        raise ValueError(f"{url!r}: give the engine's root, without a path such as /v1")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _key_error(location: tuple[str, ...], message: str, value: Any) -> None:
    """Fail validation at ``location`` (a key of another table than the validator's own)."""
    from pydantic import ValidationError
    from pydantic_core import InitErrorDetails, PydanticCustomError

    raise ValidationError.from_exception_data(
        "Profile",
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", message), loc=location, input=value
            )
        ],
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
    replicas: ReplicasSection = Field(default_factory=ReplicasSection)
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

    @model_validator(mode="after")
    def _replica_devices(self) -> Profile:
        replicas, engine = self.replicas, self.engine
        if engine.backend == "sim" and replicas.routed:
            _key_error(
                ("replicas", "count" if replicas.count > 1 else "workers"),
                "the simulated engine runs alone: no replicas, no workers",
                replicas.count if replicas.count > 1 else replicas.workers,
            )
        if engine.device == "cpu" and (replicas.gpus or replicas.device_groups):
            key = "gpus" if replicas.gpus else "device_groups"
            _key_error(("replicas", key), "engine.device is 'cpu': replicas have no GPUs", None)
        if replicas.count > 1 and "CUDA_VISIBLE_DEVICES" in engine.env:
            _key_error(
                ("engine", "env"),
                "CUDA_VISIBLE_DEVICES would give every replica the same GPUs; set "
                "replicas.device_groups instead",
                None,
            )
        size = self.gpus_per_replica
        split = (
            f"engine.tensor_parallel_size {engine.tensor_parallel_size} x "
            f"pipeline_parallel_size {engine.pipeline_parallel_size} x "
            f"data_parallel_size {engine.data_parallel_size}"
        )
        if replicas.gpus is not None:
            if replicas.gpus % size:
                _key_error(
                    ("replicas", "gpus"),
                    f"{replicas.gpus} GPUs do not divide into replicas of {size} ({split})",
                    replicas.gpus,
                )
            if replicas.count * size > replicas.gpus:
                _key_error(
                    ("replicas", "count"),
                    f"{replicas.count} replicas of {size} GPU(s) ({split}) need "
                    f"{replicas.count * size} GPUs; replicas.gpus is {replicas.gpus}: at most "
                    f"{replicas.gpus // size} replicas",
                    replicas.count,
                )
        groups = replicas.device_groups
        if groups is not None:
            if len(groups) != replicas.count:
                _key_error(
                    ("replicas", "device_groups"),
                    f"{len(groups)} group(s) for {replicas.count} replica(s) of replicas.count",
                    groups,
                )
            if any(len(group) != size for group in groups):
                _key_error(
                    ("replicas", "device_groups"),
                    f"each replica needs {size} device(s) ({split})",
                    groups,
                )
            flat = [device for group in groups for device in group]
            if len(set(flat)) != len(flat) or min(flat, default=0) < 0:
                _key_error(
                    ("replicas", "device_groups"),
                    "a device is in two groups, or negative",
                    groups,
                )
        return self

    @property
    def gpus_per_replica(self) -> int:
        engine = self.engine
        return (
            engine.tensor_parallel_size * engine.pipeline_parallel_size * engine.data_parallel_size
        )
