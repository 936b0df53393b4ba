"""The OpenRouter provider contract on plain (not streamed) requests: listing, completions, usage
and cost, errors, generation stats, OpenAPI. Real sockets, the ``openai`` SDK as a client.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio

from infer_cli.config.schema import Profile
from infer_cli.proxy.openrouter.generations import GenerationRecord, GenerationStore
from infer_cli.proxy.openrouter.listing import ProviderInfo, price_text, provider_info
from infer_cli.proxy.openrouter.pricing import Prices
from infer_cli.proxy.state import EngineStatus
from tests.fake_upstream import FakeUpstream
from tests.helpers import free_port
from tests.proxy_harness import (
    CHAT,
    HF_ID,
    MODEL,
    PRICES,
    PROVIDER,
    Running,
    reset,
    running_proxy,
    shared_proxy,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

REQUIRED_LISTING_FIELDS = {
    "id",
    "name",
    "created",
    "input_modalities",
    "output_modalities",
    "quantization",
    "context_length",
    "max_output_length",
    "pricing",
    "supported_sampling_parameters",
    "supported_features",
    "hugging_face_id",
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pair() -> AsyncIterator[tuple[FakeUpstream, Running]]:
    async with shared_proxy(max_body_bytes=4096, request_timeout=0.75) as both:
        yield both


@pytest.fixture
def fake(pair: tuple[FakeUpstream, Running]) -> FakeUpstream:
    reset(*pair)
    return pair[0]


@pytest.fixture
def proxy(pair: tuple[FakeUpstream, Running], fake: FakeUpstream) -> Running:
    return pair[1]


def assert_error(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    """OpenRouter's error JSON (``code``, ``message``, ``metadata``), the prototype's ``type``."""
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == status
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str)
    assert error["metadata"]["error_type"] == error_type
    return dict(error)


def expected_cost(prompt: int, completion: int, cached: int, prices: Prices = PRICES) -> Decimal:
    cached_price = prices.input_cache_read if prices.input_cache_read else prices.prompt
    return (
        (prompt - cached) * prices.prompt
        + cached * cached_price
        + completion * prices.completion
        + prices.request
    )


# --- the listing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["starting", "ready"])
async def test_provider_listing_has_every_required_field(
    fake: FakeUpstream, proxy: Running, status: EngineStatus
) -> None:
    proxy.state.status = status
    async with proxy.http() as http:
        response = await http.get("/api/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"  # the prototype's
    [entry] = body["data"]
    assert set(entry) >= REQUIRED_LISTING_FIELDS
    assert entry["id"] == MODEL
    assert entry["hugging_face_id"] == HF_ID
    assert entry["name"] == "Fake: Model 1B Instruct"
    assert entry["description"] == "A fake model for tests"
    assert entry["created"] == 1721692800
    assert entry["quantization"] == "bf16"
    assert entry["context_length"] == 8192
    assert entry["max_output_length"] == 2048
    assert entry["input_modalities"] == ["text"]
    assert entry["output_modalities"] == ["text"]
    assert "temperature" in entry["supported_sampling_parameters"]
    assert entry["supported_features"] == ["tools", "json_mode"]
    assert entry["pricing"] == {
        "prompt": "0.000001",
        "completion": "0.000002",
        "image": "0",
        "request": "0.0001",
        "input_cache_read": "0.00000025",
    }
    assert fake.requests == []  # served by the proxy, also while the engine starts


async def test_provider_listing_in_schema_2_4(fake: FakeUpstream, proxy: Running) -> None:
    async with proxy.http() as http:
        response = await http.get("/api/v1/models", params={"schema_version": "2.4"})
        wrong = await http.get("/api/v1/models", params={"schema_version": "9"})
    assert response.status_code == 200
    [entry] = response.json()["data"]
    assert entry["schema_version"] == "2.4"
    assert entry["id"] == MODEL and entry["hugging_face_id"] == HF_ID
    [text_in] = entry["input_modalities"]
    assert text_in["type"] == "text"
    assert text_in["supported_inputs"]["max_context_length"] == {"value": 8192, "unit": "token"}
    assert {"type": "prompt", "unit": "token", "cost_usd": "0.000001"} in text_in["pricing"]
    assert {"type": "cached_prompt", "unit": "token", "cost_usd": "0.00000025"} in text_in[
        "pricing"
    ]
    [text_out] = entry["output_modalities"]
    assert text_out["max_length"] == {"value": 2048, "unit": "token"}
    assert text_out["streaming"] is True
    assert text_out["supported_parameters"]["temperature"] == {"type": "range", "min": 0, "max": 2}
    assert text_out["supported_parameters"]["max_tokens"]["max"] == 2048
    assert text_out["pricing"] == [{"type": "completion", "unit": "token", "cost_usd": "0.000002"}]
    assert entry["pricing"] == [{"type": "request", "unit": "request", "cost_usd": "0.0001"}]
    assert_error(wrong, 400, "invalid_request")


async def test_openai_model_list_through_the_sdk(fake: FakeUpstream, proxy: Running) -> None:
    proxy.state.status = "starting"
    page = await proxy.sdk().models.list()
    [model] = page.data
    assert model.id == MODEL
    assert model.object == "model"
    assert model.owned_by == "infer"
    assert model.created == 1721692800
    assert model.model_extra is not None and model.model_extra["max_model_len"] == 8192


async def test_listing_without_a_provider_names_the_served_model(fake: FakeUpstream) -> None:
    async with (
        running_proxy(fake, provider=None, status="starting") as proxy,
        proxy.http() as http,
    ):
        body = (await http.get("/api/v1/models")).json()
    [entry] = body["data"]
    assert entry["id"] == MODEL and entry["name"] == MODEL
    assert entry["pricing"]["prompt"] == "0" and entry["pricing"]["completion"] == "0"
    assert entry["context_length"] is None  # unknown until the engine is ready


async def test_provider_info_from_a_profile() -> None:
    profile = Profile.model_validate(
        {
            "description": "profile description",
            "model": {
                "source": "meta-llama/Llama-3.1-8B-Instruct",
                "served_name": "llama-8b",
                "context_length": 131072,
            },
            "openrouter": {
                "hugging_face_id": "meta-llama/Llama-3.1-8B-Instruct",
                "created": 1721692800,
                "quantization": "fp8",
                "max_output_length": 16384,
                "supported_features": ["tools"],
                "pricing": {"prompt": "2e-8", "completion": "0.00000005", "request": "0"},
            },
        }
    )
    info = provider_info(profile)
    assert info.model == "llama-8b"
    assert info.name == "llama-8b"  # no [openrouter] name: the served name
    assert info.description == "profile description"
    assert info.accepts("llama-8b") and info.accepts("meta-llama/Llama-3.1-8B-Instruct")
    assert not info.accepts("other")
    assert info.context_length == 131072 and info.max_output_length == 16384
    assert info.quantization == "fp8" and info.supported_features == ("tools",)
    assert info.prices.prompt == Decimal("0.00000002")
    assert price_text(info.prices.prompt) == "0.00000002"  # never exponent notation
    assert price_text(Decimal("10")) == "10"
    pulled = provider_info(Profile.model_validate({"model": {"source": "infer:tiny"}}))
    assert pulled.model == "tiny" and pulled.aliases == frozenset()


# --- completions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/v1", "/api/v1"])
async def test_chat_completion_through_the_sdk(
    fake: FakeUpstream, proxy: Running, prefix: str
) -> None:
    fake.prompt_tokens, fake.chunks = 12, 4
    answer = await proxy.sdk(prefix).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.id.startswith("chatcmpl-")
    assert answer.object == "chat.completion"
    assert isinstance(answer.created, int)
    assert answer.model == MODEL
    choice = answer.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello, world!"
    assert choice.finish_reason == "stop"
    assert choice.model_extra == {"native_finish_reason": "stop"}
    usage = answer.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (12, 4, 16)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0  # the engine gave none
    extra = usage.model_extra or {}
    cost = expected_cost(12, 4, 0)
    assert Decimal(str(extra["cost"])) == cost
    assert {key: Decimal(str(value)) for key, value in extra["cost_details"].items()} == {
        "upstream_inference_cost": cost,
        "upstream_inference_prompt_cost": 12 * PRICES.prompt,
        "upstream_inference_completions_cost": 4 * PRICES.completion,
    }


async def test_cached_prompt_tokens_are_charged_at_the_cache_price(
    fake: FakeUpstream, proxy: Running
) -> None:
    fake.prompt_tokens, fake.cached_tokens, fake.chunks = 1000, 768, 3
    async with proxy.http() as http:
        usage = (await http.post("/api/v1/chat/completions", json=CHAT)).json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 768
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0}
    assert Decimal(str(usage["cost"])) == expected_cost(1000, 3, 768)
    # 232 fresh prompt tokens at 0.000001, 768 cached at 0.00000025, 3 completion at 0.000002.
    assert Decimal(str(usage["cost"])) == Decimal("0.000232") + Decimal("0.000192") + Decimal(
        "0.000006"
    ) + Decimal("0.0001")


async def test_cost_uses_the_prompt_price_for_cached_tokens_without_a_cache_price() -> None:
    prices = Prices.parse(prompt="0.000003", completion="0.000015")
    cost = prices.cost(prompt_tokens=100, completion_tokens=10, cached_tokens=60)
    assert cost.prompt == Decimal("0.000300")
    assert cost.completion == Decimal("0.000150")
    assert cost.total == Decimal("0.000450")
    assert prices.cost(10, 0, cached_tokens=50).prompt == Decimal("0.000030")  # capped
    assert cost.as_json()["cost"] == 0.00045
    assert Prices().cost(5, 5).as_json()["cost"] == 0


async def test_text_completion_through_the_sdk(fake: FakeUpstream, proxy: Running) -> None:
    fake.finish_reason = "length"
    answer = await proxy.sdk("/api/v1").completions.create(model=MODEL, prompt="Say hi")
    assert answer.id.startswith("cmpl-")
    assert answer.object == "text_completion"
    assert answer.choices[0].text == "Hello, world!"
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.total_tokens == 9
    assert fake.requests[-1]["path"] == "/v1/completions"


async def test_sampling_parameters_pass_and_openrouter_fields_are_stripped(
    fake: FakeUpstream,
    proxy: Running,
) -> None:
    sampling = {
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 40,
        "min_p": 0.05,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "repetition_penalty": 1.1,
        "seed": 7,
        "stop": ["\n\n"],
        "max_tokens": 64,
        "logit_bias": {"50256": -100},
        "logprobs": True,
        "top_logprobs": 3,
        "response_format": {"type": "json_object"},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": "auto",
        "user": "u-1",
    }
    openrouter_only = {
        "provider": {"order": ["infer"], "allow_fallbacks": False},
        "models": [MODEL, "other/model"],
        "route": "fallback",
        "transforms": ["middle-out"],
        "plugins": [{"id": "web"}],
        "reasoning": {"effort": "high"},
        "usage": {"include": True},
        "session_id": "s-1",
        "top_a": 0.1,
    }
    async with proxy.http() as http:
        response = await http.post(
            "/api/v1/chat/completions", json={**CHAT, **sampling, **openrouter_only}
        )
    assert response.status_code == 200
    sent = json.loads(fake.requests[-1]["body"])
    assert sent == {**CHAT, **sampling, "reasoning_effort": "high"}


@pytest.mark.parametrize(
    ("reasoning", "engine"),
    [
        (
            {"effort": "low", "max_tokens": 512},
            {"reasoning_effort": "low"},  # no reasoning parser: vLLM would refuse a budget
        ),
        ({"exclude": True}, {"include_reasoning": False}),
        ({"enabled": False}, {"reasoning_effort": "none"}),
        ({"enabled": True}, {}),
    ],
)
async def test_openrouter_reasoning_becomes_vllms_fields(
    fake: FakeUpstream, proxy: Running, reasoning: dict[str, object], engine: dict[str, object]
) -> None:
    async with proxy.http() as http:
        response = await http.post(
            "/api/v1/chat/completions", json={**CHAT, "reasoning": reasoning}
        )
    assert response.status_code == 200
    # max_tokens: the listing's max_output_length, the default when a request gives none
    assert json.loads(fake.requests[-1]["body"]) == {**CHAT, **engine, "max_tokens": 2048}


async def test_a_thinking_budget_reaches_an_engine_with_a_reasoning_parser(
    fake: FakeUpstream,
) -> None:
    thinker = dataclasses.replace(PROVIDER, reasoning_parser=True)
    body = {**CHAT, "reasoning": {"max_tokens": 512}}
    async with running_proxy(fake, provider=thinker) as proxy, proxy.http() as http:
        response = await http.post("/api/v1/chat/completions", json=body)
    assert response.status_code == 200
    sent = json.loads(fake.requests[-1]["body"])
    assert sent == {**CHAT, "thinking_token_budget": 512, "max_tokens": 2048}


async def test_vllms_own_reasoning_fields_win_over_openrouters(
    fake: FakeUpstream, proxy: Running
) -> None:
    body = {**CHAT, "reasoning": {"effort": "high"}, "reasoning_effort": "low"}
    async with proxy.http() as http:
        response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    sent = json.loads(fake.requests[-1]["body"])
    assert sent == {**CHAT, "reasoning_effort": "low", "max_tokens": 2048}


@pytest.mark.parametrize(
    ("reasoning", "message"),
    [
        ({"effort": "extreme"}, "reasoning.effort must be one of"),
        ({"max_tokens": -1}, "reasoning.max_tokens must be"),
        ({"exclude": "yes"}, "reasoning.exclude must be true or false"),
    ],
)
async def test_bad_reasoning_is_400_and_never_reaches_the_engine(
    fake: FakeUpstream, proxy: Running, reasoning: dict[str, object], message: str
) -> None:
    async with proxy.http() as http:
        response = await http.post(
            "/api/v1/chat/completions", json={**CHAT, "reasoning": reasoning}
        )
    error = assert_error(response, 400, "invalid_request")
    assert message in error["message"]
    assert fake.requests == []


@pytest.mark.parametrize("asked", [HF_ID, None])
async def test_model_aliases_and_a_missing_model_go_to_the_served_name(
    fake: FakeUpstream, proxy: Running, asked: str | None
) -> None:
    body = {"messages": CHAT["messages"]} | ({"model": asked} if asked else {})
    async with proxy.http() as http:
        response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert json.loads(fake.requests[-1]["body"])["model"] == MODEL


async def test_unknown_model_is_404(fake: FakeUpstream, proxy: Running) -> None:
    async with proxy.http() as http:
        response = await http.post("/v1/chat/completions", json={**CHAT, "model": "x/y"})
    with pytest.raises(openai.NotFoundError):
        await proxy.sdk().chat.completions.create(model="x/y", messages=CHAT["messages"])
    error = assert_error(response, 404, "not_found")
    assert error["metadata"]["available"] == [MODEL]
    assert "x/y" in error["message"]
    assert fake.requests == []


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ({**CHAT, "temperature": 3}, "temperature"),
        ({"model": MODEL}, "messages"),
        ({**CHAT, "messages": "hi"}, "messages"),
        ({**CHAT, "messages": [{"content": "no role"}]}, "role"),
        ({**CHAT, "stream": "yes"}, "stream"),
        ({**CHAT, "max_tokens": 0}, "max_tokens"),
        ({**CHAT, "top_logprobs": 50}, "top_logprobs"),
        ({**CHAT, "model": 5}, "model"),
        ([1, 2], "JSON object"),
    ],
)
async def test_invalid_bodies_are_400_with_readable_details(
    fake: FakeUpstream, proxy: Running, body: Any, mentions: str
) -> None:
    async with proxy.http() as http:
        response = await http.post("/api/v1/chat/completions", json=body)
    error = assert_error(response, 400, "invalid_request")
    assert mentions in error["message"]
    assert fake.requests == []


async def test_text_completion_needs_a_prompt(fake: FakeUpstream, proxy: Running) -> None:
    async with proxy.http() as http:
        response = await http.post("/v1/completions", json={"model": MODEL})
    assert "prompt" in assert_error(response, 400, "invalid_request")["message"]


async def test_max_tokens_over_the_listed_maximum_is_400(
    fake: FakeUpstream, proxy: Running
) -> None:
    async with proxy.http() as http:
        response = await http.post("/v1/chat/completions", json={**CHAT, "max_tokens": 5000})
    error = assert_error(response, 400, "max_tokens_exceeded")
    assert error["metadata"]["max_output_length"] == 2048


@pytest.mark.parametrize(
    ("native", "normalized"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("abort", "error"),
        ("eos", "stop"),
    ],
)
async def test_finish_reason_is_normalized_and_the_native_one_kept(
    fake: FakeUpstream, proxy: Running, native: str, normalized: str
) -> None:
    fake.finish_reason = native
    async with proxy.http() as http:
        choice = (await http.post("/v1/chat/completions", json=CHAT)).json()["choices"][0]
    assert choice["finish_reason"] == normalized
    assert choice["native_finish_reason"] == native


# --- errors before the answer --------------------------------------------------------------------


async def test_503_with_retry_after_while_the_engine_starts(
    fake: FakeUpstream, proxy: Running
) -> None:
    proxy.state.status = "starting"
    async with proxy.http() as http:
        response = await http.post("/api/v1/chat/completions", json=CHAT)
    with pytest.raises(openai.InternalServerError) as caught:
        await proxy.sdk().chat.completions.create(model=MODEL, messages=CHAT["messages"])
    assert_error(response, 503, "provider_unavailable")
    assert response.headers["retry-after"] == "10"
    assert caught.value.status_code == 503
    assert proxy.records == []  # no generation happened


async def test_502_unreachable_or_garbled_engine(fake: FakeUpstream, proxy: Running) -> None:
    proxy.state.url = f"http://127.0.0.1:{free_port()}"
    async with proxy.http() as http:
        unreachable = await http.post("/v1/chat/completions", json=CHAT)
        proxy.state.url = fake.url
        fake.garbled = True
        garbled = await http.post("/v1/chat/completions", json=CHAT)
    assert_error(unreachable, 502, "provider_unavailable")
    assert "not a completion" in assert_error(garbled, 502, "provider_unavailable")["message"]
    assert [record.status for record in proxy.records] == [502, 502]
    record = proxy.records[-1]
    assert record.status == 502 and record.error is not None


@pytest.mark.parametrize(
    ("upstream", "status", "error_type"),
    [
        (500, 502, "provider_unavailable"),
        (401, 502, "provider_unavailable"),
        (400, 400, "invalid_request"),
        (503, 503, "provider_unavailable"),
    ],
)
async def test_engine_errors_get_the_clients_status_and_shape(
    fake: FakeUpstream, proxy: Running, upstream: int, status: int, error_type: str
) -> None:
    fake.fail_status = upstream
    async with proxy.http() as http:
        response = await http.post("/v1/chat/completions", json=CHAT)
    error = assert_error(response, status, error_type)
    assert error["message"] == "fake failure"
    assert error["metadata"]["upstream_status"] == upstream
    assert ("retry-after" in response.headers) == (status == 503)


async def test_context_length_errors_are_typed(fake: FakeUpstream, proxy: Running) -> None:
    fake.fail_status = 400
    async with proxy.http() as http:
        proxy_error = await http.post("/v1/chat/completions", json=CHAT)
    assert_error(proxy_error, 400, "invalid_request")
    from infer_cli.proxy.openrouter.exchange import Exchange

    exchange = Exchange(
        model=MODEL,
        route="/v1/chat/completions",
        streamed=False,
        text=False,
        prices=PRICES,
        observers=[],
    )
    error = exchange.upstream_error(
        400, "This model's maximum context length is 4096 tokens. However, you requested 5000"
    )
    assert (error.status, error.error_type) == (400, "context_length_exceeded")


async def test_408_when_the_engine_stays_silent(fake: FakeUpstream, proxy: Running) -> None:
    fake.header_delay = 3.0
    async with proxy.http() as http:
        response = await http.post("/api/v1/chat/completions", json=CHAT)
    assert_error(response, 408, "timeout")
    assert proxy.records[0].status == 408


async def test_413_for_a_body_over_the_limit(fake: FakeUpstream, proxy: Running) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
    async with proxy.http() as http:
        response = await http.post("/api/v1/chat/completions", json=big)
    assert_error(response, 413, "payload_too_large")
    assert fake.requests == []


# --- one record per generation, and the generation endpoint --------------------------------------


async def test_one_record_per_generation_with_the_key_id(fake: FakeUpstream) -> None:
    fake.prompt_tokens, fake.cached_tokens, fake.chunks = 20, 16, 4
    auth = {"authorization": "Bearer client-key"}
    async with running_proxy(fake, api_keys=("client-key",)) as proxy, proxy.http() as http:
        body = (await http.post("/api/v1/chat/completions", json=CHAT, headers=auth)).json()
    [record] = proxy.records
    assert isinstance(record, GenerationRecord)
    assert record.id == body["id"]
    assert record.model == MODEL
    assert record.route == "/api/v1/chat/completions"
    assert record.key_id is not None and record.key_id.startswith("key-")  # the auth's id
    assert (record.streamed, record.cancelled, record.status) == (False, False, 200)
    assert (record.finish_reason, record.native_finish_reason) == ("stop", "stop")
    assert (record.prompt_tokens, record.completion_tokens, record.cached_tokens) == (20, 4, 16)
    assert record.cost == expected_cost(20, 4, 16)
    assert record.error is None and record.ttft is None and record.itl == ()
    assert 0 < record.latency < 5


async def test_generation_stats_by_the_id_the_client_received(
    fake: FakeUpstream, proxy: Running
) -> None:
    fake.prompt_tokens, fake.cached_tokens, fake.chunks = 10, 4, 3
    async with proxy.http() as http:
        answer = (await http.post("/v1/chat/completions", json=CHAT)).json()
        found = await http.get("/api/v1/generation", params={"id": answer["id"]})
        missing = await http.get("/api/v1/generation", params={"id": "chatcmpl-nope"})
        no_id = await http.get("/api/v1/generation")
    assert found.status_code == 200
    stats = found.json()["data"]
    assert stats["id"] == answer["id"]
    assert stats["model"] == MODEL
    assert stats["streamed"] is False and stats["cancelled"] is False
    assert (stats["tokens_prompt"], stats["tokens_completion"]) == (10, 3)
    assert stats["native_tokens_cached"] == 4
    assert Decimal(str(stats["total_cost"])) == expected_cost(10, 3, 4)
    assert stats["finish_reason"] == "stop" and stats["native_finish_reason"] == "stop"
    assert stats["latency"] > 0 and stats["generation_time"] > 0
    assert stats["time_to_first_token"] is None
    assert stats["created_at"].endswith("+00:00")
    assert_error(missing, 404, "not_found")
    assert_error(no_id, 400, "invalid_request")


async def test_generation_store_keeps_the_most_recent() -> None:
    store = GenerationStore(capacity=2)

    def record(ident: str) -> GenerationRecord:
        return GenerationRecord(
            id=ident,
            model="m",
            route="/v1/chat/completions",
            key_id=None,
            streamed=True,
            cancelled=False,
            status=200,
            finish_reason="stop",
            native_finish_reason="stop",
            prompt_tokens=1,
            completion_tokens=1,
            cached_tokens=0,
            cost=Decimal(0),
            created=0.0,
            ttft=0.1,
            latency=0.2,
            error=None,
            itl=(0.01,) * 1000,
        )

    for ident in ("a", "b", "c"):
        store(record(ident))
    assert store.get("a") is None
    kept = store.get("c")
    assert kept is not None and store.get("b") is not None and len(store) == 2
    assert kept.itl == ()  # the store does not keep per-token gaps
    with pytest.raises(ValueError):
        GenerationStore(capacity=0)


# --- the OpenAPI document ------------------------------------------------------------------------


async def test_openapi_document_covers_the_proxys_own_routes(
    fake: FakeUpstream, proxy: Running
) -> None:
    async with proxy.http() as http:
        response = await http.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    paths = document["paths"]
    assert set(paths) >= {
        "/health",
        "/v1/models",
        "/api/v1/models",
        "/v1/chat/completions",
        "/api/v1/chat/completions",
        "/v1/completions",
        "/api/v1/completions",
        "/api/v1/generation",
    }
    assert not [path for path in paths if "{path" in path]  # the catch-all stays out
    chat = paths["/api/v1/chat/completions"]["post"]
    schema = chat["requestBody"]["content"]["application/json"]["schema"]
    assert "messages" in schema["required"]
    assert schema["properties"]["temperature"]["anyOf"][0]["maximum"] == 2
    assert {"200", "400", "404", "408", "413", "502", "503"} <= set(chat["responses"])
    assert "ChatCompletion" in document["components"]["schemas"]
    assert "GenerationStatsResponse" in document["components"]["schemas"]


async def test_provider_info_defaults_are_sensible() -> None:
    info = ProviderInfo(model="m")
    assert info.display_name == "m" and info.max_output(4096) == 4096
    assert info.prices.is_free and PROVIDER.accepts(HF_ID)
