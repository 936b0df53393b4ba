"""What ``infer status`` reports: the endpoint's health and the figures in its ``/metrics``.

:func:`read_status` asks ``/health`` and ``/metrics`` (and the model listing when the health answer
names no model); :func:`status_from` is the pure part that turns their answers into a
:class:`Status`. Every figure comes from the server: a metric it does not expose is ``None`` and
shown as unknown, never as zero.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

from infer_cli.client.api import Client, Health
from infer_cli.client.metrics import Samples, ratio
from infer_cli.errors import AuthenticationError, ClientError, EndpointUnreachableError

GENERATION_ROUTES = ("/chat/completions", "/completions", "/embeddings")
CLIENT_CLOSED = 499


@dataclass
class CacheRate:
    hits: float
    queries: float

    @property
    def rate(self) -> float | None:
        return ratio(self.hits, self.queries)


@dataclass
class ReplicaStatus:
    """One engine replica behind the router, from ``/health`` and its ``replica``-labelled
    metrics."""

    name: str
    state: str | None = None
    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None
    prefix_cache: CacheRate | None = None
    external_cache: CacheRate | None = None


@dataclass
class Status:
    url: str
    up: bool
    checked_at: float = field(default_factory=time.time)
    error: str | None = None
    health_code: int | None = None
    latency: float | None = None
    model: str | None = None
    engine: str | None = None
    detail: str | None = None
    uptime: float | None = None
    version: str | None = None
    restarts: int | None = None
    """Engine restarts since ``infer serve`` started (None: the server does not say)."""
    last_restart: str | None = None
    """Why the last one happened, in words."""
    last_restart_at: float | None = None
    replicas: list[ReplicaStatus] = field(default_factory=list)
    """With several replicas behind a router: each one (empty otherwise)."""
    workers_unreachable: list[str] = field(default_factory=list)
    workers_total: int | None = None
    router_requests: float | None = None
    """Requests the router sent on (``vllm_router_requests_total``)."""
    metrics_error: str | None = None
    engine_metrics: bool = False
    """The engine's ``vllm:*`` metrics were present."""
    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None
    """Fraction of the KV cache in use (vLLM's ``kv_cache_usage_perc`` is a 0..1 fraction)."""
    prefix_cache: CacheRate | None = None
    external_cache: CacheRate | None = None
    """LMCache (and any KV connector): ``vllm:external_prefix_cache_*``."""
    requests: float | None = None
    """Completion requests the proxy answered (any status)."""
    errors: float | None = None
    """Of those, answered with an error status (a client that left is not an error)."""
    mid_stream_errors: float | None = None
    rate_limited: float | None = None
    cancelled: float | None = None
    prompt_tokens: float | None = None
    completion_tokens: float | None = None
    cached_tokens: float | None = None
    cost: float | None = None
    mean_ttft: float | None = None
    recent_prefix_rate: float | None = None
    """Prefix-cache hit rate since the previous reading (``--watch``)."""
    recent_external_rate: float | None = None
    request_rate: float | None = None
    """Completion requests per second since the previous reading (``--watch``)."""
    prompt_token_rate: float | None = None
    completion_token_rate: float | None = None

    @property
    def external_cache_off(self) -> bool:
        """No KV connector (LMCache) is asked: the engine's own cache missed tokens, and not one
        was looked up outside it (with a connector, every miss is)."""
        own, external = self.prefix_cache, self.external_cache
        if external is None:  # an engine without the metric: nothing can be said
            return False
        return own is not None and own.queries > own.hits and external.queries == 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in COUNTS:
            data[key] = _whole(data[key])
        for key in ("prefix_cache", "external_cache"):
            rate: CacheRate | None = getattr(self, key)
            data[key] = (
                None
                if rate is None
                else {"hits": _whole(rate.hits), "queries": _whole(rate.queries), "rate": rate.rate}
            )
        data["external_cache_off"] = self.external_cache_off
        return data


COUNTS = (
    "running",
    "waiting",
    "requests",
    "errors",
    "mid_stream_errors",
    "rate_limited",
    "cancelled",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
)
"""Figures that count things: whole numbers in JSON (Prometheus gives every value as a float)."""


def _whole(value: float | None) -> int | float | None:
    return int(value) if value is not None and float(value).is_integer() else value


async def read_status(client: Client, previous: Status | None = None) -> Status:
    """Ask the endpoint; an endpoint that does not answer is a :class:`Status` with ``up=False``."""
    url = client.endpoint.url
    try:
        health, metrics = await asyncio.gather(
            client.health(), _metrics(client), return_exceptions=False
        )
    except (EndpointUnreachableError, AuthenticationError) as error:
        return Status(url=url, up=False, error=error.one_line())
    except ClientError as error:
        return Status(url=url, up=False, error=error.one_line())
    status = status_from(url, health, *metrics, previous=previous)
    if health.status_code == 404 and not status.up:  # no /health (OpenRouter): does it list?
        try:
            status.up = bool((await client.list_models()).ids)
        except ClientError as error:
            status.error = error.one_line()
    if status.model is None and status.up:
        try:
            ids = (await client.list_models()).ids
        except ClientError:
            ids = []
        status.model = ", ".join(ids[:3]) or None
    return status


async def _metrics(client: Client) -> tuple[str | None, str | None]:
    try:
        return await client.metrics_text(), None
    except EndpointUnreachableError:
        raise
    except ClientError as error:
        return None, error.message


def status_from(
    url: str,
    health: Health,
    metrics_text: str | None,
    metrics_error: str | None = None,
    *,
    previous: Status | None = None,
) -> Status:
    body = health.body
    up = health.ok or (health.status_code == 404 and metrics_text is not None)
    status = Status(
        url=url,
        up=up,
        health_code=health.status_code,
        latency=health.latency,
        model=_text(body.get("model")),
        engine=_text(body.get("engine")),
        detail=_text(body.get("detail")),
        uptime=_number(body.get("uptime")),
        version=_text(body.get("version")),
        metrics_error=metrics_error,
    )
    restarts = body.get("restarts")
    if isinstance(restarts, int) and not isinstance(restarts, bool):
        status.restarts = restarts
    last = body.get("last_restart")
    if isinstance(last, dict):
        status.last_restart = _text(last.get("reason"))
        status.last_restart_at = _number(last.get("at"))
    each = body.get("replicas", {}).get("each") if isinstance(body.get("replicas"), dict) else None
    if isinstance(each, dict):
        status.replicas = [ReplicaStatus(str(name), _text(state)) for name, state in each.items()]
    workers = body.get("workers")
    if isinstance(workers, dict):
        status.workers_total = int(_number(workers.get("total")) or 0)
        status.workers_unreachable = [str(w) for w in workers.get("unreachable") or []]
    if not health.ok and health.status_code != 404:
        status.error = f"/health answered {health.status_code}" + (
            f": {status.detail}" if status.detail else ""
        )
    if metrics_text is None:
        return status
    samples = Samples.from_text(metrics_text)
    _engine_figures(status, samples)
    _replica_figures(status, samples)
    _proxy_figures(status, samples)
    if previous is not None:
        status.recent_prefix_rate = _delta_rate(previous.prefix_cache, status.prefix_cache)
        status.recent_external_rate = _delta_rate(previous.external_cache, status.external_cache)
        _rates(previous, status)
    return status


def _rates(before: Status, after: Status) -> None:
    """Per-second rates of the proxy's counters between two readings."""
    seconds = after.checked_at - before.checked_at
    if seconds <= 0:
        return

    def rate(earlier: float | None, later: float | None) -> float | None:
        if earlier is None or later is None or later < earlier:  # counters began again
            return None
        return (later - earlier) / seconds

    after.request_rate = rate(before.requests, after.requests)
    after.prompt_token_rate = rate(before.prompt_tokens, after.prompt_tokens)
    after.completion_token_rate = rate(before.completion_tokens, after.completion_tokens)


def _engine_figures(status: Status, samples: Samples) -> None:
    status.engine_metrics = any(name.startswith("vllm:") for name in samples.names())
    status.running = samples.total("vllm:num_requests_running")
    status.waiting = samples.total("vllm:num_requests_waiting")
    usage = samples.total("vllm:kv_cache_usage_perc")
    if usage is None:
        usage = samples.total("vllm:gpu_cache_usage_perc")  # older vLLM
    status.kv_cache_usage = usage
    status.prefix_cache = _cache(
        samples, "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"
    )
    status.external_cache = _cache(
        samples,
        "vllm:external_prefix_cache_hits_total",
        "vllm:external_prefix_cache_queries_total",
    )
    if status.model is None:
        for name in ("vllm:num_requests_running", "vllm:prefix_cache_queries_total"):
            for sample in samples.samples(name):
                if sample.labels.get("model_name"):
                    status.model = sample.labels["model_name"]
                    return


def _replica_figures(status: Status, samples: Samples) -> None:
    """Each replica's figures from its ``replica``-labelled samples; the KV use of the whole is
    their mean (a sum of fractions would pass 100%)."""
    status.router_requests = samples.total("vllm_router_requests_total")
    for replica in status.replicas:
        label = {"replica": replica.name}
        replica.running = samples.total("vllm:num_requests_running", **label)
        replica.waiting = samples.total("vllm:num_requests_waiting", **label)
        replica.kv_cache_usage = samples.total("vllm:kv_cache_usage_perc", **label)
        replica.prefix_cache = _cache(
            samples, "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total", **label
        )
        replica.external_cache = _cache(
            samples,
            "vllm:external_prefix_cache_hits_total",
            "vllm:external_prefix_cache_queries_total",
            **label,
        )
    usages = [r.kv_cache_usage for r in status.replicas if r.kv_cache_usage is not None]
    if usages:
        status.kv_cache_usage = sum(usages) / len(usages)


def _proxy_figures(status: Status, samples: Samples) -> None:
    requests = samples.samples("infer_proxy_requests_total")
    if requests:
        answered = [s for s in requests if s.labels.get("route", "").endswith(GENERATION_ROUTES)]
        status.requests = sum(s.value for s in answered)
        status.errors = sum(s.value for s in answered if _is_error(s.labels.get("status")))
    generations = samples.samples("infer_proxy_generations_total")
    if generations:
        status.mid_stream_errors = sum(
            s.value for s in generations if s.labels.get("finish_reason") == "error"
        )
    status.rate_limited = samples.total("infer_proxy_rate_limited_total")
    status.cancelled = samples.total("infer_proxy_generations_cancelled_total")
    if status.cancelled is None and "infer_proxy_generations_total" in samples:
        status.cancelled = 0.0  # declared, no series yet
    status.prompt_tokens = samples.total("infer_proxy_prompt_tokens_total")
    status.completion_tokens = samples.total("infer_proxy_completion_tokens_total")
    status.cached_tokens = samples.total("infer_proxy_cached_tokens_total")
    status.cost = samples.total("infer_proxy_cost_usd_total")
    ttft_sum = samples.total("infer_proxy_time_to_first_token_seconds_sum")
    ttft_count = samples.total("infer_proxy_time_to_first_token_seconds_count")
    status.mean_ttft = ratio(ttft_sum, ttft_count)


def _cache(samples: Samples, hits: str, queries: str, **labels: str) -> CacheRate | None:
    hit_total, query_total = samples.total(hits, **labels), samples.total(queries, **labels)
    if hit_total is None or query_total is None:
        return None
    return CacheRate(hit_total, query_total)


def _delta_rate(before: CacheRate | None, after: CacheRate | None) -> float | None:
    if before is None or after is None:
        return None
    queries = after.queries - before.queries
    if queries <= 0:  # nothing new (or the engine restarted and its counters began again)
        return None
    return (after.hits - before.hits) / queries


def _is_error(status: str | None) -> bool:
    """An error status; 499 (the client left before the answer) is the client's choice."""
    try:
        code = int(status or "0")
    except ValueError:
        return False
    return code >= 400 and code != CLIENT_CLOSED


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


async def watch(client: Client, interval: float) -> AsyncIterator[Status]:
    """A fresh :class:`Status` every ``interval`` seconds, each compared with the one before."""
    previous: Status | None = None
    while True:
        started = time.monotonic()
        status = await read_status(client, previous)
        yield status
        if status.up:
            previous = status
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
