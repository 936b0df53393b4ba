"""``[lmcache]``: LMCache's cache server (or its in-process connector) and its second tiers."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from infer_cli.config.strict import Strict


class FsTier(Strict):
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


class RedisTier(Strict):
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


class S3Tier(Strict):
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


class RawTier(Strict):
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


_MP_POLICIES = ("LRU", "ARC", "noop")  # eviction policies of the cache server
_IN_PROCESS_POLICIES = ("LRU", "LFU", "FIFO", "MRU")  # and of the in-process connector
L2Tier = Annotated[FsTier | RedisTier | S3Tier | RawTier, Field(discriminator="type")]


class LMCacheSection(Strict):
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
