"""What every route of the proxy shares: settings, upstream state, the pooled upstream client."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from infer_cli.proxy.errors import ProxyError
from infer_cli.proxy.guards.bounds import BodyBounds
from infer_cli.proxy.openrouter.generations import GenerationRecord, GenerationStore
from infer_cli.proxy.openrouter.listing import ProviderInfo
from infer_cli.proxy.state import UpstreamState

if TYPE_CHECKING:
    import httpx

    from infer_cli.proxy.guards.limits import RateLimiter

GenerationObserver = Callable[[GenerationRecord], None]


@dataclass(frozen=True)
class ProxyConfig:
    request_timeout: float = 600.0
    """Seconds an upstream request may stay silent (read timeout between bytes; write, pool)."""
    keepalive_interval: float = 10.0
    """Seconds of silence after which a stream gets an SSE keep-alive comment (before the first
    byte, and in every gap of a completion stream)."""
    max_body_bytes: int = 10 * 2**20
    """Largest request body accepted; larger ones get 413."""
    connect_timeout: float = 10.0
    """Seconds to open a connection to the engine (loopback: a refusal is immediate anyway)."""
    max_connections: int = 1024
    """Concurrent upstream connections; more requests wait (up to ``request_timeout``)."""
    max_answer_bytes: int = 64 * 2**20
    """Largest plain (not streamed) completion the proxy reads whole to rewrite; larger: 502."""
    generations_kept: int = 10_000
    """Finished generations kept for ``GET /api/v1/generation`` (least recent dropped first)."""
    profile: str | None = None
    """The name of the profile being served, shown by ``/health``."""
    body_bounds: BodyBounds = field(default_factory=BodyBounds)
    extra_routes: tuple[str, ...] = ()
    """Engine routes relayed as they are (``proxy.extra_routes``), e.g. ``/v1/embeddings``."""
    """How many JSON values, how deep, how many messages one request body may hold."""


@dataclass
class ProxyContext:
    config: ProxyConfig
    state: UpstreamState
    client: httpx.AsyncClient | None = field(default=None)
    """Created by the app's lifespan at startup, closed at shutdown."""
    provider: ProviderInfo | None = None
    """The served model's listing and prices; None: a bare listing of ``state.model``."""
    observers: list[GenerationObserver] = field(default_factory=list)
    """Called with the one record of every finished generation (in order; one failing observer
    is logged and does not stop the others). The generation store is one of them."""
    generations: GenerationStore = field(default_factory=GenerationStore)
    engine_context_length: int | None = None
    """The engine's ``max_model_len``, once read (when the profile does not say)."""
    limiter: RateLimiter | None = None
    """The rate limiter (set by the guards): requests reserve their tokens at admission."""
    on_reject: Callable[[str], None] | None = None
    """Told the reason of every 429 a route answers itself (the rejection metric)."""

    @property
    def info(self) -> ProviderInfo:
        if self.provider is None:
            self.provider = ProviderInfo(model=self.state.model)
        return self.provider

    def upstream_client(self) -> httpx.AsyncClient:
        if self.client is None:
            raise ProxyError(503, "the proxy is not started (its lifespan did not run)")
        return self.client
