"""``[proxy]``: the public port, keys, limits and what one client connection may cost."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from infer_cli.config.strict import Strict, parse_size


class ProxySection(Strict):
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
