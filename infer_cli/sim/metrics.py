"""The simulated engine's counters, rendered in Prometheus text under vLLM's metric names.

Written by hand (no prometheus_client): a handful of integers and two histograms, laid out as
prometheus_client lays out vLLM's (``# TYPE vllm:x counter`` over ``vllm:x_total``), with the
labels vLLM uses (``model_name``, ``engine``). ``infer_sim_*`` series are the simulator's own.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field

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


class Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1


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
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    e2e: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))


def render(metrics: SimMetrics, *, model: str, running: int, waiting: int, kv_usage: float) -> str:
    """The Prometheus text exposition of ``metrics`` and the live gauges."""
    labels = f'engine="0",model_name={json.dumps(model)}'
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    def sample(name: str, value: float, extra: str = "") -> None:
        out.append(f"{name}{{{labels}{extra}}} {_number(value)}")

    def counter(name: str, value: int, help_text: str) -> None:
        family(name, "counter", help_text)
        sample(name + "_total", value)

    def gauge(name: str, value: float, help_text: str) -> None:
        family(name, "gauge", help_text)
        sample(name, value)

    def histogram(name: str, hist: Histogram, help_text: str) -> None:
        family(name, "histogram", help_text)
        cumulative = 0
        for bound, count in zip(hist.buckets, hist.counts, strict=False):
            cumulative += count
            sample(name + "_bucket", cumulative, f',le="{_number(bound)}"')
        sample(name + "_bucket", hist.count, ',le="+Inf"')
        sample(name + "_count", hist.count)
        sample(name + "_sum", hist.total)

    gauge("vllm:num_requests_running", running, "Number of requests in model execution batches.")
    gauge("vllm:num_requests_waiting", waiting, "Number of requests waiting to be processed.")
    gauge("vllm:kv_cache_usage_perc", kv_usage, "KV-cache usage. 1 means 100 percent usage.")
    counter(
        "vllm:prefix_cache_queries",
        metrics.prefix_cache_queries,
        "Prefix cache queries, in terms of number of queried tokens.",
    )
    counter(
        "vllm:prefix_cache_hits",
        metrics.prefix_cache_hits,
        "Prefix cache hits, in terms of number of cached tokens.",
    )
    counter(
        "vllm:external_prefix_cache_queries",
        0,
        "External prefix cache queries from KV connector cross-instance cache sharing.",
    )
    counter(
        "vllm:external_prefix_cache_hits",
        0,
        "External prefix cache hits from KV connector cross-instance cache sharing.",
    )
    counter("vllm:num_preemptions", 0, "Cumulative number of preemptions from the engine.")
    counter("vllm:prompt_tokens", metrics.prompt_tokens, "Number of prefill tokens processed.")
    counter(
        "vllm:prompt_tokens_cached",
        metrics.prefix_cache_hits,
        "Number of cached prompt tokens (local prefix cache hits).",
    )
    counter(
        "vllm:generation_tokens",
        metrics.generation_tokens,
        "Number of generation tokens processed.",
    )
    family("vllm:request_success", "counter", "Count of successfully processed requests.")
    for reason in FINISH_REASONS:
        sample(
            "vllm:request_success_total",
            metrics.request_success.get(reason, 0),
            f',finished_reason="{reason}"',
        )
    histogram(
        "vllm:time_to_first_token_seconds",
        metrics.ttft,
        "Histogram of time to first token in seconds.",
    )
    histogram(
        "vllm:e2e_request_latency_seconds",
        metrics.e2e,
        "Histogram of e2e request latency in seconds.",
    )
    counter(
        "infer_sim_cancelled",
        metrics.cancelled,
        "Requests cancelled because their client went away (simulated engine).",
    )
    counter(
        "infer_sim_injected_errors",
        metrics.injected_errors,
        "Requests answered with HTTP 500 by error_rate (simulated engine).",
    )
    counter(
        "infer_sim_failed",
        metrics.failed,
        "Requests broken after fail_after_tokens (simulated engine).",
    )
    out.append("")
    return "\n".join(out)


def _number(value: float) -> str:
    return repr(float(value))
