"""The client package's pure parts: endpoint URLs, Prometheus text, model listings (its SSE
decoding is infer_cli.wire.sse's: tests/test_wire_sse.py)."""

from __future__ import annotations

import math

import pytest

from infer_cli.client.api import StreamChunk, parse_endpoint
from infer_cli.client.listing import model_info
from infer_cli.client.metrics import Samples, ratio
from infer_cli.errors import UsageError
from infer_cli.wire.prometheus import parse, parse_line

# --- endpoints -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "root", "api"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080", "http://127.0.0.1:8080/v1"),
        ("127.0.0.1:8080/", "http://127.0.0.1:8080", "http://127.0.0.1:8080/v1"),
        ("http://h:8000/v1/", "http://h:8000", "http://h:8000/v1"),
        ("http://h:8080/api/v1", "http://h:8080", "http://h:8080/api/v1"),
        ("https://openrouter.ai/api/v1", "https://openrouter.ai", "https://openrouter.ai/api/v1"),
        ("https://x.io/proxy/v1", "https://x.io/proxy", "https://x.io/proxy/v1"),
        ("http://h/v1/chat/completions", "http://h", "http://h/v1"),
    ],
)
def test_endpoint_normalisation(url: str, root: str, api: str) -> None:
    endpoint = parse_endpoint(url)
    assert (endpoint.root, endpoint.api) == (root, api)
    assert endpoint.api_url("/chat/completions") == api + "/chat/completions"
    assert endpoint.root_url("health") == root + "/health"


def test_endpoint_listing_order_and_loopback() -> None:
    local = parse_endpoint("http://localhost:8080")
    assert local.loopback
    assert local.listing_urls() == [
        "http://localhost:8080/api/v1/models",
        "http://localhost:8080/v1/models",
    ]
    openrouter = parse_endpoint("https://openrouter.ai/api/v1")
    assert not openrouter.loopback and openrouter.openrouter_style
    assert openrouter.listing_urls()[0] == "https://openrouter.ai/api/v1/models"


@pytest.mark.parametrize("url", ["", "ftp://h/x", "http://", "http://h:notaport"])
def test_bad_urls_are_usage_errors(url: str) -> None:
    with pytest.raises(UsageError):
        parse_endpoint(url)


# --- Prometheus text -----------------------------------------------------------------------------

METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 2.0
vllm:num_requests_running{engine="1",model_name="m"} 1.0
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 200.0
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 50.0
weird{path="a\\"b\\\\c\\nd"} +Inf 1712345678000
broken{oops 1
infer_proxy_requests_total{route="/v1/chat/completions",status="200",model="m"} 3
infer_proxy_requests_total{route="/v1/chat/completions",status="404",model="m"} 1
nan_metric NaN
"""


def test_metrics_parse_and_sum() -> None:
    samples = Samples.from_text(METRICS)
    assert samples.total("vllm:num_requests_running") == 3.0
    assert samples.total("vllm:num_requests_running", engine="1") == 1.0
    assert samples.total("vllm:prefix_cache_hits") == 50.0  # with or without _total
    assert samples.total("missing") is None
    assert samples.by_label("infer_proxy_requests_total", "status") == {"200": 3.0, "404": 1.0}
    assert ratio(samples.total("vllm:prefix_cache_hits_total"), 200.0) == 0.25
    assert ratio(1.0, 0.0) is None
    weird = samples.samples("weird")[0]
    assert weird.labels == {"path": 'a"b\\c\nd'} and weird.value == math.inf
    assert "broken" not in samples
    assert math.isnan(samples.samples("nan_metric")[0].value)
    assert len(parse(METRICS)) == 8
    assert parse_line("no_value") is None


# --- listings ------------------------------------------------------------------------------------


def test_listing_provider_shape() -> None:
    info = model_info(
        {
            "id": "m",
            "name": "Model",
            "context_length": 8192,
            "quantization": "bf16",
            "pricing": {"prompt": "0.000001", "completion": "0.000002", "input_cache_read": "0"},
            "supported_features": ["tools", "json_mode"],
        }
    )
    assert (info.prompt_price, info.completion_price, info.cached_price) == (1.0, 2.0, 0.0)
    assert info.context_length == 8192 and info.quantization == "bf16"
    assert info.features == ["tools", "json_mode"]


def test_listing_openrouter_public_and_openai_shapes() -> None:
    public = model_info(
        {
            "id": "a/b",
            "name": "A: B",
            "top_provider": {"context_length": 131072},
            "pricing": {"prompt": "-1", "completion": "0.0000006"},
            "supported_parameters": ["tools", "response_format", "temperature"],
        }
    )
    assert public.context_length == 131072
    assert public.prompt_price is None  # OpenRouter's "-1": variable price
    assert public.completion_price == pytest.approx(0.6)
    assert public.features == ["tools", "json_mode"]
    openai = model_info({"id": "x", "object": "model", "max_model_len": 4096})
    assert (openai.name, openai.context_length, openai.prompt_price) == ("x", 4096, None)


# --- stream chunks -------------------------------------------------------------------------------


def _delta(delta: object, index: int = 0) -> StreamChunk:
    return StreamChunk({"choices": [{"index": index, "delta": delta}]}, at=0.0)


def test_stream_chunk_reasoning_under_either_name() -> None:
    older = _delta({"reasoning_content": "Let me", "content": None})  # vLLM --reasoning-parser
    assert (older.reasoning, older.content) == ("Let me", "")
    assert _delta({"reasoning": " think"}).reasoning == " think"  # newer vLLM, OpenRouter
    assert _delta({"reasoning_content": None, "reasoning": "b"}).reasoning == "b"
    assert _delta({"reasoning_content": "a", "reasoning": "a"}).reasoning == "a"  # not twice
    answer = _delta({"content": "Hi", "reasoning": None})
    assert (answer.reasoning, answer.content) == ("", "Hi")
    assert _delta({"reasoning": {"effort": "high"}}).reasoning == ""  # not text
    assert _delta({"reasoning": "other choice"}, index=1).reasoning == ""
    assert _delta(None).reasoning == "" and _delta("x").content == ""
    assert StreamChunk({"choices": [], "usage": {}}, at=0.0).reasoning == ""
