"""Metrics: what the proxy counts, and ``GET /metrics`` over real sockets.

The text format itself: ``tests/test_wire_prometheus.py``.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest

from infer_cli.proxy.guards.middleware import GuardConfig
from infer_cli.proxy.metrics import MAX_MODELS, OTHER, ProxyMetrics, route_label
from infer_cli.proxy.openrouter.generations import GenerationRecord
from tests.fake_upstream import FakeUpstream
from tests.guard_harness import (
    CHAT,
    add_generate_route,
    client,
    parse_metrics,
    record_kwargs,
    sample,
    serve,
    total,
)
from tests.helpers import free_port, wait_until


def test_routes_and_models_are_bounded_label_values() -> None:
    assert route_label("/api/v1/chat/completions") == "/api/v1/chat/completions"
    assert route_label("/v1/models") == "/v1/models"
    assert route_label("/health") == "/health"
    assert route_label("/v1/random/path/123") == OTHER
    metrics = ProxyMetrics()
    labels = {metrics.model_label(f"m{index}") for index in range(MAX_MODELS + 10)}
    assert len(labels) == MAX_MODELS + 1 and OTHER in labels
    assert metrics.model_label("m0") == "m0"


def test_generation_records_feed_tokens_cost_and_latencies() -> None:
    metrics = ProxyMetrics()
    metrics.observe(
        GenerationRecord(
            **record_kwargs(
                prompt_tokens=100,
                completion_tokens=20,
                cached_tokens=64,
                cost=Decimal("0.0015"),
                ttft=0.3,
                latency=1.2,
                streamed=True,
            ),
            itl=(0.01, 0.02, 0.2),
        )
    )
    metrics.observe(
        GenerationRecord(
            **record_kwargs(status=200, error="engine died", finish_reason="error", ttft=None)
        )
    )
    metrics.observe(GenerationRecord(**record_kwargs(status=502, error="down", finish_reason=None)))
    metrics.observe(GenerationRecord(**record_kwargs(status=400, error="bad", finish_reason=None)))
    metrics.observe(
        GenerationRecord(**record_kwargs(cancelled=True, error="gone", finish_reason=None))
    )
    samples = parse_metrics(metrics.render())
    model = "fake/model"
    assert sample(samples, "infer_proxy_prompt_tokens_total", model=model) == 100 + 4 * 5
    assert sample(samples, "infer_proxy_completion_tokens_total", model=model) == 20 + 4 * 4
    assert sample(samples, "infer_proxy_cached_tokens_total", model=model) == 64
    assert sample(samples, "infer_proxy_cost_usd_total", model=model) == pytest.approx(0.0015)
    assert sample(samples, "infer_proxy_time_to_first_token_seconds_count", model=model) == 4
    assert sample(samples, "infer_proxy_inter_token_latency_seconds_count", model=model) == 3
    assert (
        sample(samples, "infer_proxy_inter_token_latency_seconds_bucket", model=model, le="0.01")
        == 1
    )
    assert sample(samples, "infer_proxy_e2e_request_latency_seconds_count", model=model) == 5
    assert sample(samples, "infer_proxy_generations_total", model=model, finish_reason="stop") == 1
    assert sample(samples, "infer_proxy_generations_total", model=model, finish_reason="error") == 1
    assert (
        sample(samples, "infer_proxy_generations_total", model=model, finish_reason="cancelled")
        == 1
    )
    assert sample(samples, "infer_proxy_generations_cancelled_total", model=model) == 1
    # Engine failures count; a client's own bad request and a cancellation do not.
    assert sample(samples, "infer_proxy_upstream_errors_total", status="midstream") == 1
    assert sample(samples, "infer_proxy_upstream_errors_total", status="502") == 1
    assert sample(samples, "infer_proxy_upstream_errors_total", status="400") is None


# --- over real sockets ------------------------------------------------------------------------


async def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with client(url) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse_metrics(response.text)


async def test_requests_rejections_and_in_flight_are_counted(fake: FakeUpstream) -> None:
    guards = GuardConfig(api_keys=("sk-metrics-test",), rate_limit_rpm=2, engine_metrics=False)
    async with serve(fake, guards) as served:
        async with client(served.url, "sk-metrics-test") as http:
            for _ in range(3):
                await http.post("/v1/chat/completions", json=CHAT)
            await http.get("/v1/models")
            await http.get("/no/such/route")
        async with client(served.url) as anonymous:
            await anonymous.get("/v1/models")
        samples = await scrape(served.url)
    requests = "infer_proxy_requests_total"
    chat = "/v1/chat/completions"
    # The model label comes from the generation record, when the completion route makes one.
    assert total(samples, requests, route=chat, status="200") == 2
    assert sample(samples, requests, route=chat, status="429", model="") == 1
    assert sample(samples, requests, route="/v1/models", status="200", model="") == 1
    assert sample(samples, requests, route="/v1/models", status="401", model="") == 1
    assert sample(samples, requests, route="other", status="404", model="") == 1
    limited = "infer_proxy_rate_limited_total"
    assert sample(samples, limited, reason="requests_per_minute") == 1
    assert sample(samples, limited, reason="concurrency") == 0
    assert sample(samples, "infer_proxy_requests_in_flight") == 1  # the scrape itself
    assert sample(samples, "infer_proxy_engine_ready") == 1
    assert sample(samples, "infer_proxy_engine_metrics_up") == 0
    assert not any(name.startswith("vllm:") for name, _ in samples)


async def test_a_generation_lends_its_model_to_the_request_count(fake: FakeUpstream) -> None:
    async with serve(fake, setup=add_generate_route) as served:
        async with client(served.url) as http:
            response = await http.post("/test/generate", json={"model": "org/served"})
            assert response.status_code == 200
        samples = await scrape(served.url)
    requests = "infer_proxy_requests_total"
    assert sample(samples, requests, route="other", status="200", model="org/served") == 1
    assert sample(samples, "infer_proxy_prompt_tokens_total", model="org/served") == 5


async def test_real_completions_are_counted_with_their_model(fake: FakeUpstream) -> None:
    async with serve(fake, GuardConfig(engine_metrics=False)) as served:
        async with client(served.url) as http:
            assert (await http.post("/api/v1/chat/completions", json=CHAT)).status_code == 200
            streamed = await http.post("/v1/chat/completions", json={**CHAT, "stream": True})
            assert streamed.status_code == 200
        samples = await scrape(served.url)
    requests, model = "infer_proxy_requests_total", "fake/model"
    chat = "/api/v1/chat/completions"
    assert sample(samples, requests, route=chat, status="200", model=model) == 1
    assert sample(samples, requests, route="/v1/chat/completions", status="200", model=model) == 1
    assert sample(samples, "infer_proxy_prompt_tokens_total", model=model) is not None
    assert total(samples, "infer_proxy_completion_tokens_total") >= 4
    assert total(samples, "infer_proxy_time_to_first_token_seconds_count") >= 1  # the stream
    assert sample(samples, "infer_proxy_e2e_request_latency_seconds_count", model=model) == 2
    assert total(samples, "infer_proxy_generations_total", finish_reason="stop") == 2


async def test_upstream_failures_are_counted(fake: FakeUpstream) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    async with serve(fake, GuardConfig(engine_metrics=False), upstream_url=down) as served:
        async with client(served.url) as http:
            relayed = await http.post("/tokenize", json={"prompt": "hi"})
            assert relayed.status_code == 502  # relayed: no generation
            assert (await http.post("/v1/chat/completions", json=CHAT)).status_code == 502
        samples = await scrape(served.url)
    # Each failure counted once, whether a generation record or the middleware saw it.
    assert sample(samples, "infer_proxy_upstream_errors_total", status="502") == 2


async def test_the_engines_metrics_are_appended(fake: FakeUpstream) -> None:
    fake.metrics_text = (
        "# HELP vllm:num_requests_running Running.\n"
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{engine="0",model_name="fake/model"} 3.0\n'
    )
    async with serve(fake) as served:
        samples = await scrape(served.url)
    assert sample(samples, "vllm:num_requests_running", engine="0", model_name="fake/model") == 3
    assert sample(samples, "infer_proxy_engine_metrics_up") == 1
    seen = [request for request in fake.requests if request["path"] == "/metrics"]
    assert len(seen) == 1
    assert ("authorization", "Bearer internal-key") in seen[0]["headers"]


async def test_a_slow_or_missing_engine_never_fails_the_proxys_metrics(
    fake: FakeUpstream,
) -> None:
    fake.metrics_delay = 1.0  # longer than the timeout; short enough not to slow the teardown
    guards = GuardConfig(engine_metrics_timeout=0.2)
    async with serve(fake, guards) as served:
        started = time.monotonic()
        slow = await scrape(served.url)
        took = time.monotonic() - started
        served.state.url = f"http://127.0.0.1:{free_port()}"
        down = await scrape(served.url)
        served.state.url, served.state.status = None, "starting"
        starting = await scrape(served.url)
    assert took < 0.9
    for samples in (slow, down, starting):
        assert sample(samples, "infer_proxy_engine_metrics_up") == 0
        assert not any(name.startswith("vllm:") for name, _ in samples)
    assert sample(starting, "infer_proxy_engine_ready") == 0


async def test_in_flight_follows_open_requests(fake: FakeUpstream) -> None:
    fake.gate = asyncio.Event()
    async with serve(fake, GuardConfig(engine_metrics=False)) as served:
        async with client(served.url) as http:
            held = [
                asyncio.create_task(http.post("/v1/chat/completions", json=CHAT)) for _ in range(3)
            ]
            await wait_until(lambda: len(fake.requests) >= 3)
            during = await scrape(served.url)
            fake.gate.set()
            await asyncio.gather(*held)
        after = await scrape(served.url)
    assert sample(during, "infer_proxy_requests_in_flight") == 4
    assert sample(after, "infer_proxy_requests_in_flight") == 1
