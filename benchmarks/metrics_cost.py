"""What the proxy's metrics cost per request: ours against ``prometheus_client``'s metric classes.

Issue 14 asks for ``prometheus_client`` unless it costs the proxy more than 2% of its CPU per
request. Per request the proxy records one completion: the in-flight gauge up and down, the
generation's counters (tokens, cost, finish reason), a TTFT and a latency observation, one
inter-token observation per streamed chunk, and the request count. This script records exactly
that, ``--completions`` times per round, with both:

- ``ours``: ``infer_cli.proxy.metrics.ProxyMetrics`` itself (``infer_cli.wire.prometheus``: a dict
  update per observation);
- ``prometheus_client``: the same metrics (names, labels, buckets) as ``prometheus_client``
  Counter / Gauge / Histogram in their own ``CollectorRegistry``, recorded the same way, each
  metric's labelled child looked up once per completion (its cheapest use).

Rounds alternate the two (the order swapped every round) and the figure is the median CPU time
(``time.process_time``) per completion. The proxy's own CPU per request comes from
``benchmarks/proxy_vs_direct.py --concurrency 32 --rounds 2 --ms-per-token 0`` run in the same
invocation (on the simulator, saturated, ``--chunks`` chunks per answer: where the proxy spends the
least CPU per request, so where the metrics' share is largest), or from ``--proxy-cpu-ms``. The
report: each variant's µs per completion, its share of the proxy's CPU per request, the difference.
Per scrape, not per request, and timed for information: writing the proxy's text, and merging
``--replicas`` simulated engines' texts into one (line by line, as ``wire.prometheus.merge`` does,
against parsing and rewriting them with ``prometheus_client``), which the proxy does on its event
loop at each scrape with replicas.

    .venv/bin/python benchmarks/metrics_cost.py
    .venv/bin/python benchmarks/metrics_cost.py --proxy-cpu-ms 0.8 --output metrics_cost.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client import Counter as PCounter  # noqa: E402
from prometheus_client import Gauge as PGauge  # noqa: E402
from prometheus_client import Histogram as PHistogram  # noqa: E402

from infer_cli.proxy import metrics as proxy_metrics  # noqa: E402
from infer_cli.proxy.guards import limits  # noqa: E402
from infer_cli.proxy.openrouter.generations import GenerationRecord  # noqa: E402
from infer_cli.wire.prometheus import text as prometheus_text  # noqa: E402

MODEL = "org/model"
ROUTE = "/api/v1/chat/completions"


def record(chunks: int, index: int) -> GenerationRecord:
    """A streamed completion of ``chunks`` chunks, as the proxy's generation observers get it."""
    gaps = tuple(0.004 + 0.0001 * ((index + step) % 50) for step in range(chunks - 1))
    return GenerationRecord(
        id=f"chatcmpl-{index}",
        model=MODEL,
        route=ROUTE,
        key_id="k",
        streamed=True,
        cancelled=False,
        status=200,
        finish_reason="length",
        native_finish_reason="length",
        prompt_tokens=40,
        completion_tokens=chunks,
        cached_tokens=16,
        cost=Decimal("0.000123"),
        created=time.time(),
        ttft=0.05 + 0.001 * (index % 7),
        latency=0.05 + sum(gaps),
        error=None,
        itl=gaps,
    )


class Ours:
    """The proxy's own metrics, driven as its middleware and generation observer drive them."""

    name = "ours"

    def __init__(self) -> None:
        self.metrics = proxy_metrics.ProxyMetrics()

    def complete(self, generation: GenerationRecord) -> None:
        metrics = self.metrics
        exchange = proxy_metrics._Exchange(route=proxy_metrics.route_label(ROUTE))
        token = proxy_metrics._CURRENT.set(exchange)
        metrics.in_flight.inc()
        exchange.status = 200
        metrics.observe(generation)
        metrics.in_flight.dec()
        proxy_metrics._CURRENT.reset(token)
        metrics.finish(exchange)

    def render(self) -> str:
        return self.metrics.render()


class PrometheusClient:
    """The same metrics on ``prometheus_client``'s classes, recorded as ProxyMetrics does."""

    name = "prometheus_client"

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=False)
        self.models: set[str] = set()

        def counter(name: str, help: str, labels: tuple[str, ...]) -> PCounter:
            return PCounter(name, help, labels, registry=registry)

        def histogram(name: str, help: str, buckets: tuple[float, ...]) -> PHistogram:
            return PHistogram(name, help, ("model",), registry=registry, buckets=buckets)

        self.requests = counter(
            "infer_proxy_requests_total", "HTTP requests", ("route", "status", "model")
        )
        self.in_flight = PGauge("infer_proxy_requests_in_flight", "In flight", registry=registry)
        self.generations = counter(
            "infer_proxy_generations_total", "Generations", ("model", "finish_reason")
        )
        self.cancelled = counter("infer_proxy_generations_cancelled_total", "Gone", ("model",))
        self.ttft = histogram(
            "infer_proxy_time_to_first_token_seconds", "TTFT", proxy_metrics.TTFT_BUCKETS
        )
        self.itl = histogram(
            "infer_proxy_inter_token_latency_seconds", "ITL", proxy_metrics.ITL_BUCKETS
        )
        self.latency = histogram(
            "infer_proxy_e2e_request_latency_seconds", "E2E", proxy_metrics.LATENCY_BUCKETS
        )
        self.prompt_tokens = counter("infer_proxy_prompt_tokens_total", "Prompt", ("model",))
        self.completion_tokens = counter(
            "infer_proxy_completion_tokens_total", "Completion", ("model",)
        )
        self.cached_tokens = counter("infer_proxy_cached_tokens_total", "Cached", ("model",))
        self.cost = counter("infer_proxy_cost_usd_total", "Cost", ("model",))
        self.rate_limited = counter("infer_proxy_rate_limited_total", "429", ("reason",))
        for reason in limits.REASONS:
            self.rate_limited.labels(reason)
        self.upstream_errors = counter("infer_proxy_upstream_errors_total", "Errors", ("status",))

    def model_label(self, model: str) -> str:
        if model in self.models or len(self.models) < proxy_metrics.MAX_MODELS:
            self.models.add(model)
            return model
        return proxy_metrics.OTHER

    def complete(self, generation: GenerationRecord) -> None:
        exchange = proxy_metrics._Exchange(route=proxy_metrics.route_label(ROUTE))
        token = proxy_metrics._CURRENT.set(exchange)
        self.in_flight.inc()
        exchange.status = 200
        model = self.model_label(generation.model)
        exchange.model, exchange.generation = model, True
        finish = generation.finish_reason or ("cancelled" if generation.cancelled else "none")
        self.generations.labels(model, finish).inc()
        if generation.cancelled:
            self.cancelled.labels(model).inc()
        if generation.ttft is not None:
            self.ttft.labels(model).observe(generation.ttft)
        itl = self.itl.labels(model)
        for gap in generation.itl:
            itl.observe(gap)
        self.latency.labels(model).observe(generation.latency)
        self.prompt_tokens.labels(model).inc(generation.prompt_tokens)
        self.completion_tokens.labels(model).inc(generation.completion_tokens)
        self.cached_tokens.labels(model).inc(generation.cached_tokens)
        self.cost.labels(model).inc(float(generation.cost))
        self.in_flight.dec()
        proxy_metrics._CURRENT.reset(token)
        self.requests.labels(exchange.route, str(exchange.status), exchange.model).inc()

    def render(self) -> str:
        return generate_latest(self.registry).decode()


Variant = Ours | PrometheusClient


def time_round(variant: Variant, records: list[GenerationRecord]) -> float:
    """CPU seconds per completion over ``records``."""
    complete = variant.complete
    started = time.process_time()
    for generation in records:
        complete(generation)
    return (time.process_time() - started) / len(records)


def replica_texts(replicas: int) -> list[tuple[str, str]]:
    """``replicas`` simulated engines' /metrics texts, each with a hundred requests' histograms."""
    from infer_cli.sim.metrics import SimMetrics
    from infer_cli.sim.metrics import render as sim_render

    counters = SimMetrics(prompt_tokens=4000, generation_tokens=6400, prefix_cache_queries=4000)
    for index in range(100):
        counters.ttft.observe(index / 100)
        counters.e2e.observe(index / 10)
    text = sim_render(counters, model="org/model", running=3, waiting=1, kv_usage=0.2)
    return [(f"vllm-{index}", text) for index in range(replicas)]


def merge_by_prometheus_client(texts: list[tuple[str, str]]) -> str:
    """The other way to merge: each text parsed by prometheus_client, relabelled, rewritten."""
    from prometheus_client.metrics_core import Metric

    merged: dict[str, Metric] = {}
    for source, text in texts:
        for family in prometheus_text.families(text):
            into = merged.setdefault(
                family.name, Metric(family.name, family.documentation, family.type)
            )
            for sample in family.samples:
                into.add_sample(sample.name, {**sample.labels, "replica": source}, sample.value)
    return prometheus_text.render(merged.values())


def time_scrape(render: Callable[[], str], repeat: int = 50) -> float:
    started = time.process_time()
    for _ in range(repeat):
        render()
    return (time.process_time() - started) / repeat


def proxy_cpu_ms(options: argparse.Namespace) -> tuple[float, dict[str, Any]]:
    """The proxy's CPU ms per request from a proxy_vs_direct.py run on the simulator."""
    with tempfile.TemporaryDirectory(prefix="infer-metrics-cost-") as tmp:
        out = Path(tmp) / "run.json"
        argv = [
            sys.executable,
            str(ROOT / "benchmarks" / "proxy_vs_direct.py"),
            "--concurrency",
            str(options.concurrency),
            "--rounds",
            str(options.pvd_rounds),
            "--max-tokens",
            str(options.chunks),
            "--ms-per-token",
            str(options.ms_per_token),
            "--output",
            str(out),
        ]
        print("running " + " ".join(argv[1:]), file=sys.stderr, flush=True)
        subprocess.run(argv, check=True, cwd=ROOT)
        document = json.loads(out.read_text())
    result = document["results"][0]
    return float(result["proxy"]["cpu_ms_per_request"]), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=64, help="streamed chunks per completion")
    parser.add_argument("--completions", type=int, default=2000, help="completions per round")
    parser.add_argument("--rounds", type=int, default=20, help="rounds of each variant")
    parser.add_argument("--concurrency", type=int, default=32, help="for proxy_vs_direct.py")
    parser.add_argument(
        "--pvd-rounds", dest="pvd_rounds", type=int, default=2, help="proxy_vs_direct.py rounds"
    )
    parser.add_argument(
        "--ms-per-token",
        type=float,
        default=0.0,
        help="the simulator's pace for proxy_vs_direct.py (0: saturated, the proxy's least CPU "
        "per request and so the strictest share; paced chunks each cost a wake-up)",
    )
    parser.add_argument(
        "--proxy-cpu-ms",
        type=float,
        help="the proxy's CPU ms per request (skips the proxy_vs_direct.py run)",
    )
    parser.add_argument("--replicas", type=int, default=8, help="texts merged per scrape")
    parser.add_argument("--output", type=Path, help="write the results as JSON")
    options = parser.parse_args()

    records = [record(options.chunks, index) for index in range(options.completions)]
    variants: list[Variant] = [Ours(), PrometheusClient()]
    for variant in variants:  # warm up: first-seen labels, caches
        time_round(variant, records[:200])
    per: dict[str, list[float]] = {variant.name: [] for variant in variants}
    for index in range(options.rounds):
        for variant in variants if index % 2 == 0 else variants[::-1]:
            per[variant.name].append(time_round(variant, records))
    us = {name: statistics.median(values) * 1e6 for name, values in per.items()}
    scrape_ms = {variant.name: time_scrape(variant.render) * 1e3 for variant in variants}
    texts = replica_texts(options.replicas)
    merge_ms = {
        "ours": time_scrape(lambda: prometheus_text.merge(texts)) * 1e3,
        "prometheus_client": time_scrape(lambda: merge_by_prometheus_client(texts)) * 1e3,
    }

    pvd: dict[str, Any] | None = None
    if options.proxy_cpu_ms is not None:
        proxy_ms = options.proxy_cpu_ms
    else:
        proxy_ms, pvd = proxy_cpu_ms(options)
    proxy_us = proxy_ms * 1000
    extra = us["prometheus_client"] - us["ours"]
    print(f"proxy CPU per request: {proxy_ms:.3f} ms ({options.chunks} chunks per completion)")
    for name in per:
        print(
            f"{name:18} {us[name]:7.1f} us per completion  "
            f"{us[name] / proxy_us * 100:5.1f}% of the proxy's CPU per request  "
            f"(scrape {scrape_ms[name]:.2f} ms)"
        )
    print(
        f"prometheus_client adds {extra:.1f} us per completion: "
        f"{extra / proxy_us * 100:.1f}% of the proxy's CPU per request"
    )
    lines = len(prometheus_text.merge(texts).splitlines())
    print(
        f"merging {options.replicas} replicas' texts ({lines} lines) at each scrape: "
        + ", ".join(f"{name} {ms:.2f} ms" for name, ms in merge_ms.items())
    )
    if options.output:
        document = {
            "chunks": options.chunks,
            "completions_per_round": options.completions,
            "rounds": options.rounds,
            "us_per_completion": us,
            "us_per_completion_rounds": {k: [v * 1e6 for v in vs] for k, vs in per.items()},
            "scrape_ms": scrape_ms,
            "replicas": options.replicas,
            "merge_ms": merge_ms,
            "proxy_cpu_ms_per_request": proxy_ms,
            "ms_per_token": options.ms_per_token,
            "prometheus_client_extra_percent": extra / proxy_us * 100,
            "proxy_vs_direct": pvd,
        }
        options.output.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
