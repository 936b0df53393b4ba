"""The simulated engine's counters, exposed under vLLM's metric names and labels.

The engine bumps the plain fields of :class:`SimMetrics` as requests go; :func:`render` writes them,
with the live gauges, through the one Prometheus registry (``infer_cli.wire.prometheus``), labelled
``engine`` and ``model_name`` as vLLM labels its own. ``infer_sim_*`` series are the simulator's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infer_cli.wire.prometheus import Counter, Gauge, Histogram, Registry

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
    40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
FINISH_REASONS = ("stop", "length", "abort", "error")
"""vLLM's ``finished_reason`` labels: aborts are cancelled requests, errors failed ones."""


def _ttft() -> Histogram:
    return Histogram(
        "vllm:time_to_first_token_seconds",
        "Histogram of time to first token in seconds.",
        buckets=TTFT_BUCKETS,
    )


def _e2e() -> Histogram:
    return Histogram(
        "vllm:e2e_request_latency_seconds",
        "Histogram of e2e request latency in seconds.",
        buckets=LATENCY_BUCKETS,
    )


@dataclass
class SimMetrics:
    """Everything /metrics reports that is not read from the engine's live state."""

    prompt_tokens: int = 0
    generation_tokens: int = 0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    request_success: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(FINISH_REASONS, 0)
    )
    cancelled: int = 0
    """Requests whose client went away before they finished (their slot freed at once)."""
    injected_errors: int = 0
    """Requests answered with 500 by ``error_rate``."""
    failed: int = 0
    """Requests broken after ``fail_after_tokens``."""
    ttft: Histogram = field(default_factory=_ttft)
    e2e: Histogram = field(default_factory=_e2e)


def render(metrics: SimMetrics, *, model: str, running: int, waiting: int, kv_usage: float) -> str:
    """The Prometheus text exposition of ``metrics`` and the live gauges."""
    registry = Registry(labels={"engine": "0", "model_name": model})

    def gauge(name: str, value: float, help_text: str) -> None:
        registry.add(Gauge(name, help_text)).set(value)

    def counter(name: str, value: int, help_text: str) -> None:
        registry.add(Counter(name, help_text)).inc(amount=value)

    gauge("vllm:num_requests_running", running, "Number of requests in model execution batches.")
    gauge("vllm:num_requests_waiting", waiting, "Number of requests waiting to be processed.")
    gauge("vllm:kv_cache_usage_perc", kv_usage, "KV-cache usage. 1 means 100 percent usage.")
    counter(
        "vllm:prefix_cache_queries_total",
        metrics.prefix_cache_queries,
        "Prefix cache queries, in terms of number of queried tokens.",
    )
    counter(
        "vllm:prefix_cache_hits_total",
        metrics.prefix_cache_hits,
        "Prefix cache hits, in terms of number of cached tokens.",
    )
    counter(
        "vllm:external_prefix_cache_queries_total",
        0,
        "External prefix cache queries from KV connector cross-instance cache sharing.",
    )
    counter(
        "vllm:external_prefix_cache_hits_total",
        0,
        "External prefix cache hits from KV connector cross-instance cache sharing.",
    )
    counter("vllm:num_preemptions_total", 0, "Cumulative number of preemptions from the engine.")
    counter(
        "vllm:prompt_tokens_total", metrics.prompt_tokens, "Number of prefill tokens processed."
    )
    counter(
        "vllm:prompt_tokens_cached_total",
        metrics.prefix_cache_hits,
        "Number of cached prompt tokens (local prefix cache hits).",
    )
    counter(
        "vllm:generation_tokens_total",
        metrics.generation_tokens,
        "Number of generation tokens processed.",
    )
    success = registry.add(
        Counter(
            "vllm:request_success_total",
            "Count of successfully processed requests.",
            ("finished_reason",),
        )
    )
    for reason in FINISH_REASONS:
        success.inc(reason, amount=metrics.request_success.get(reason, 0))
    registry.add(metrics.ttft)
    registry.add(metrics.e2e)
    counter(
        "infer_sim_cancelled_total",
        metrics.cancelled,
        "Requests cancelled because their client went away (simulated engine).",
    )
    counter(
        "infer_sim_injected_errors_total",
        metrics.injected_errors,
        "Requests answered with HTTP 500 by error_rate (simulated engine).",
    )
    counter(
        "infer_sim_failed_total",
        metrics.failed,
        "Requests broken after fail_after_tokens (simulated engine).",
    )
    return registry.render()
