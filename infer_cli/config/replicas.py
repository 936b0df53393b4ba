"""``[replicas]``: several copies of the model behind vllm-router, and other machines' engines."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from infer_cli.config.strict import Strict, key_error

RouterPolicy = Literal[
    "cache_aware",
    "round_robin",
    "power_of_two",
    "consistent_hash",
    "kv_aware",
    "random",
    "sticky_least_loaded",
]


class ReplicasSection(Strict):
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
            key_error(
                ("min_ready",),  # inside [replicas]: pydantic adds the table
                f"min_ready {self.min_ready} is more than the {self.count} replica(s) of "
                "replicas.count",
                self.min_ready,
            )
        tuning = ("cache_threshold", "balance_abs_threshold", "balance_rel_threshold")
        for name in tuning:
            if getattr(self, name) is not None and self.policy != "cache_aware":
                key_error(
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
