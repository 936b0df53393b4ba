"""What every route of the proxy shares: settings, upstream state, the pooled upstream client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from infer_cli.proxy.errors import ProxyError
from infer_cli.proxy.state import UpstreamState

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class ProxyConfig:
    request_timeout: float = 600.0
    """Seconds an upstream request may stay silent (read timeout between bytes; write, pool)."""
    keepalive_interval: float = 10.0
    """Seconds between SSE keep-alive comments while a stream waits for its first byte."""
    max_body_bytes: int = 10 * 2**20
    """Largest request body accepted; larger ones get 413."""
    connect_timeout: float = 10.0
    """Seconds to open a connection to the engine (loopback: a refusal is immediate anyway)."""
    max_connections: int = 1024
    """Concurrent upstream connections; more requests wait (up to ``request_timeout``)."""


@dataclass
class ProxyContext:
    config: ProxyConfig
    state: UpstreamState
    client: httpx.AsyncClient | None = field(default=None)
    """Created by the app's lifespan at startup, closed at shutdown."""

    def upstream_client(self) -> httpx.AsyncClient:
        if self.client is None:
            raise ProxyError(503, "the proxy is not started (its lifespan did not run)")
        return self.client
