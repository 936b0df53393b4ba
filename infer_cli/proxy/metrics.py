"""``GET /metrics``: the proxy's own Prometheus metrics, with the engine's appended.

Two sources feed them. :class:`MetricsMiddleware` sees every HTTP exchange (route, status,
in-flight); :meth:`ProxyMetrics.observe`, a generation observer, sees every finished generation
(model, tokens, cost, TTFT, inter-token and total latency). The middleware keeps the exchange it
serves in a context variable, so that the generation observer, called inside that exchange, can
tell it the model: ``infer_proxy_requests_total`` then carries route, status and model together.

Label values are bounded: routes are a fixed set (anything else is ``other``) and at most
:data:`MAX_MODELS` model names are told apart, so a client sending random model names or paths
cannot blow up the number of series.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from infer_cli.proxy.guards import limits
from infer_cli.wire.prometheus import (
    CONTENT_TYPE,
    Counter,
    CounterView,
    Gauge,
    Histogram,
    Registry,
)

if TYPE_CHECKING:
    from fastapi import APIRouter
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from infer_cli.proxy.context import ProxyContext
    from infer_cli.proxy.openrouter.generations import GenerationRecord

log = logging.getLogger("infer.proxy")

PREFIXES = ("/v1", "/api/v1")
API_ROUTES = (
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/models",
    "/generation",
    "/key",
    "/tokenize",
    "/detokenize",
)
KNOWN_ROUTES = frozenset(
    {"/health", "/metrics", "/tokenize", "/detokenize"}
    | {prefix + route for prefix in PREFIXES for route in API_ROUTES}
)
OTHER = "other"
MAX_MODELS = 32
CLIENT_CLOSED = 499
"""Status label of an exchange whose client left before any response started (nginx's code)."""
ENGINE_METRICS_LIMIT = 8 * 2**20

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


def route_label(path: str) -> str:
    return path if path in KNOWN_ROUTES else OTHER


@dataclass
class _Exchange:
    route: str
    status: int | None = None
    model: str = ""
    generation: bool = False


_CURRENT: ContextVar[_Exchange | None] = ContextVar("infer_proxy_exchange", default=None)


class ProxyMetrics:
    """Every metric the proxy exposes, in one registry per app."""

    def __init__(self, context: ProxyContext | None = None) -> None:
        self.registry = registry = Registry()
        self._models: set[str] = set()
        self.requests = registry.add(
            Counter(
                "infer_proxy_requests_total",
                "HTTP requests answered, by route, status and model ('' when no generation)",
                ("route", "status", "model"),
            )
        )
        self.in_flight = registry.add(
            Gauge("infer_proxy_requests_in_flight", "HTTP requests being answered now")
        )
        self.generations = registry.add(
            Counter(
                "infer_proxy_generations_total",
                "Generations finished, by model and finish reason",
                ("model", "finish_reason"),
            )
        )
        self.cancelled = registry.add(
            Counter(
                "infer_proxy_generations_cancelled_total",
                "Generations whose client went away before the end",
                ("model",),
            )
        )
        self.ttft = registry.add(
            Histogram(
                "infer_proxy_time_to_first_token_seconds",
                "Seconds from a request's arrival to its first token",
                ("model",),
                buckets=TTFT_BUCKETS,
            )
        )
        self.itl = registry.add(
            Histogram(
                "infer_proxy_inter_token_latency_seconds",
                "Seconds between consecutive streamed chunks",
                ("model",),
                buckets=ITL_BUCKETS,
            )
        )
        self.latency = registry.add(
            Histogram(
                "infer_proxy_e2e_request_latency_seconds",
                "Seconds from a generation request's arrival to its end",
                ("model",),
                buckets=LATENCY_BUCKETS,
            )
        )
        self.prompt_tokens = registry.add(
            Counter("infer_proxy_prompt_tokens_total", "Prompt tokens", ("model",))
        )
        self.completion_tokens = registry.add(
            Counter("infer_proxy_completion_tokens_total", "Completion tokens", ("model",))
        )
        self.cached_tokens = registry.add(
            Counter(
                "infer_proxy_cached_tokens_total",
                "Prompt tokens served from the KV cache",
                ("model",),
            )
        )
        self.cost = registry.add(
            Counter("infer_proxy_cost_usd_total", "Cost charged to clients, in USD", ("model",))
        )
        self.rate_limited = registry.add(
            Counter(
                "infer_proxy_rate_limited_total",
                "Requests turned away with 429, by the limit they hit",
                ("reason",),
            )
        )
        for reason in limits.REASONS:
            self.rate_limited.inc(reason, amount=0)
        self.upstream_errors = registry.add(
            Counter(
                "infer_proxy_upstream_errors_total",
                "Engine failures seen by clients, by status ('midstream': after streaming began)",
                ("status",),
            )
        )
        state = context.state if context is not None else None
        self.engine_ready = registry.add(
            Gauge(
                "infer_proxy_engine_ready",
                "1 when the engine behind the proxy is ready",
                source=(lambda: 1.0 if state is not None and state.ready else 0.0),
            )
        )
        self.engine_restarts = registry.add(
            CounterView(
                "infer_proxy_engine_restarts_total",
                "Engine processes restarted by infer serve, by process and why "
                "('exited', 'unhealthy': failed health checks, 'start_failed', 'requested')",
                ("process", "reason"),
                source=lambda: state.restarts if state is not None else {},
            )
        )
        self.engine_scrape = registry.add(
            Gauge(
                "infer_proxy_engine_metrics_up",
                "1 when the engine's own metrics were read for this scrape",
            )
        )

    def render(self) -> str:
        return self.registry.render()

    def model_label(self, model: str) -> str:
        if model in self._models:
            return model
        if len(self._models) < MAX_MODELS:
            self._models.add(model)
            return model
        return OTHER

    def reject(self, reason: str) -> None:
        """Rate-limit observer."""
        self.rate_limited.inc(reason)

    def observe(self, record: GenerationRecord) -> None:
        """Generation observer."""
        model = self.model_label(record.model)
        exchange = _CURRENT.get()
        if exchange is not None:
            exchange.model, exchange.generation = model, True
        finish = record.finish_reason or ("cancelled" if record.cancelled else "none")
        self.generations.inc(model, finish)
        if record.cancelled:
            self.cancelled.inc(model)
        if record.ttft is not None:
            self.ttft.observe(record.ttft, model)
        if record.itl:
            self.itl.observe_all(record.itl, model)
        self.latency.observe(record.latency, model)
        self.prompt_tokens.inc(model, amount=record.prompt_tokens)
        self.completion_tokens.inc(model, amount=record.completion_tokens)
        self.cached_tokens.inc(model, amount=record.cached_tokens)
        self.cost.inc(model, amount=float(record.cost))
        if record.error is not None and not record.cancelled:
            if record.status >= 500:
                self.upstream_errors.inc(str(record.status))
            elif record.status < 400:
                self.upstream_errors.inc("midstream")

    def finish(self, exchange: _Exchange) -> None:
        status = exchange.status if exchange.status is not None else CLIENT_CLOSED
        self.requests.inc(exchange.route, str(status), exchange.model)
        if not exchange.generation and status in (502, 504):
            self.upstream_errors.inc(str(status))


class MetricsMiddleware:
    """Counts every HTTP exchange (outermost, so 401s and 429s count too)."""

    def __init__(self, app: ASGIApp, *, metrics: ProxyMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(route=route_label(scope["path"]))

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
            await send(message)

        token = _CURRENT.set(exchange)
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, watch)
        except BaseException:
            if exchange.status is None:
                exchange.status = 500
            raise
        finally:
            self.metrics.in_flight.dec()
            _CURRENT.reset(token)
            self.metrics.finish(exchange)


async def engine_metrics(context: ProxyContext, timeout: float) -> str | None:
    """The engine's own ``/metrics`` text, or None when it cannot be had within ``timeout``.

    With replicas behind a router (``state.metrics_sources``), every replica's text labelled
    ``replica="vllm-N"`` and the router's own, merged family by family; None when none answered.
    """
    import asyncio

    from infer_cli.wire.prometheus import merge

    state = context.state
    if not state.metrics_sources:
        return await _read_metrics(context, state.url, timeout)
    texts = await asyncio.gather(
        *(_read_metrics(context, url, timeout) for _, url in state.metrics_sources)
    )
    answered = [
        (label, _aliased(text, state.metrics_aliases))
        for (label, _), text in zip(state.metrics_sources, texts, strict=True)
        if text is not None
    ]
    return merge(answered) if answered else None


def _aliased(text: str, aliases: dict[str, str]) -> str:
    for url, name in aliases.items():
        text = text.replace(f'"{url}"', f'"{name}"')
    return text


async def _read_metrics(context: ProxyContext, base: str | None, timeout: float) -> str | None:
    import httpx

    state, client = context.state, context.client
    if client is None or not base:
        return None
    headers = {"accept": "text/plain"}
    if state.api_key:
        headers["authorization"] = f"Bearer {state.api_key}"
    data = bytearray()
    try:
        async with client.stream(
            "GET", base.rstrip("/") + "/metrics", headers=headers, timeout=timeout
        ) as response:
            if response.status_code != 200:
                return None
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > ENGINE_METRICS_LIMIT:
                    return None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        log.debug("engine metrics not read: %s", type(exc).__name__)
        return None
    text = data.decode("utf-8", "replace")
    return text if text.endswith("\n") or not text else text + "\n"


def metrics_router(
    metrics: ProxyMetrics,
    context: ProxyContext,
    *,
    engine: bool = True,
    engine_timeout: float = 2.0,
) -> APIRouter:
    from fastapi import APIRouter
    from starlette.responses import Response

    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def scrape() -> Response:
        engine_text = await engine_metrics(context, engine_timeout) if engine else None
        metrics.engine_scrape.set(1.0 if engine_text is not None else 0.0)
        body = metrics.render() + (engine_text or "")
        return Response(body, media_type=CONTENT_TYPE)

    return router
