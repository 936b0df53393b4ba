"""Issue 11, items 6, 10 and 11: max_tokens defaulted and capped by the listing, query-parameter
errors in words, unknown roles and content-part types refused before the engine. Over real
sockets, on the simulated engine or the fake upstream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from infer_cli.proxy.guards.middleware import GuardConfig
from tests.fake_upstream import FakeUpstream
from tests.guard_harness import assert_error, client, serve
from tests.sim_harness import MODEL, sim_proxy


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream()
    await upstream.start()
    try:
        yield upstream
    finally:
        await upstream.stop()


def chat(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "fake/model", "messages": list(messages), **fields}


USER = {"role": "user", "content": "hi"}


# --- item 11: roles and content parts -------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "named"),
    [
        ({"role": "wizard", "content": "hi"}, "'wizard'"),
        ({"role": "user", "content": [{"type": "spell", "text": "hi"}]}, "'spell'"),
        ({"role": "user", "content": [{"text": "hi"}]}, "no type"),
        ({"role": "user", "content": [{"type": "text"}]}, "'text' string"),
        ({"role": "user", "content": 42}, "string, null or a list"),
    ],
)
async def test_unknown_roles_and_content_parts_are_400(
    fake: FakeUpstream, message: dict[str, Any], named: str
) -> None:
    async with serve(fake, GuardConfig(engine_metrics=False)) as served, client(served.url) as http:
        response = await http.post("/v1/chat/completions", json=chat(USER, message))
        tokenize = await http.post("/tokenize", json={"messages": [message]})
    error = assert_error(response, 400, "invalid_request")
    assert named in error["message"] and "message 1" in error["message"]
    assert named in assert_error(tokenize, 400, "invalid_request")["message"]
    assert fake.requests == []


async def test_known_roles_and_parts_reach_the_engine(fake: FakeUpstream) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "what is this?"}]},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y"}}]},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "content": "42", "tool_call_id": "c1"},
    ]
    async with serve(fake, GuardConfig(engine_metrics=False)) as served, client(served.url) as http:
        response = await http.post("/v1/chat/completions", json=chat(*messages))
    assert response.status_code == 200, response.text


# --- item 10: query parameters ------------------------------------------------------------------


async def test_a_bad_query_parameter_is_named_without_the_proxys_source(
    fake: FakeUpstream,
) -> None:
    async with serve(fake, GuardConfig(engine_metrics=False)) as served, client(served.url) as http:
        no_id = await http.get("/api/v1/generation")
        version = await http.get("/api/v1/models", params={"schema_version": "true"})
    missing = assert_error(no_id, 400, "invalid_request")["message"]
    assert missing == "query parameter 'id' is required"
    wrong = assert_error(version, 400, "invalid_request")["message"]
    assert "'schema_version'" in wrong and "'2.4'" in wrong
    for text in (no_id.text, version.text):
        assert ".py" not in text and "/infer_cli" not in text and "line " not in text


# --- item 6: max_output_length ------------------------------------------------------------------


async def test_the_maximum_output_is_the_default_max_tokens() -> None:
    async with (
        sim_proxy(max_output_length=40, max_tokens_default=600) as proxy,
        proxy.client() as http,
    ):
        body = {"model": MODEL, "messages": [USER]}
        plain = await http.post("/v1/chat/completions", json=body)
        over = await http.post("/v1/chat/completions", json={**body, "max_tokens": 41})
        under = await http.post("/v1/chat/completions", json={**body, "max_tokens": 7})
    # Before: the engine's own default (600 here) applied, beyond the promised maximum.
    assert plain.status_code == 200
    assert 0 < plain.json()["usage"]["completion_tokens"] <= 40
    error = assert_error(over, 400, "max_tokens_exceeded")
    assert error["metadata"]["max_output_length"] == 40
    assert under.status_code == 200 and under.json()["usage"]["completion_tokens"] <= 7


async def test_a_long_prompt_gets_what_room_the_context_leaves() -> None:
    # 512 tokens of context, at most 400 of output: a prompt of ~300 tokens must not be refused
    # for a max_tokens the client never sent.
    prompt = "The tide rises and the boats lift. " * 40
    async with (
        sim_proxy(max_output_length=400, context_length=512) as proxy,
        proxy.client() as http,
    ):
        body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}]}
        response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    assert usage["prompt_tokens"] > 112  # more than the context minus the maximum output
    assert usage["prompt_tokens"] + usage["completion_tokens"] <= 512


async def test_the_engine_gets_the_default_unless_the_client_set_one(fake: FakeUpstream) -> None:
    from tests.proxy_harness import PROVIDER, running_proxy

    async with running_proxy(fake) as proxy, proxy.http() as http:
        await http.post("/v1/chat/completions", json=chat(USER))
        await http.post("/v1/chat/completions", json=chat(USER, max_completion_tokens=9))
    first, second = (json.loads(request["body"]) for request in fake.requests[-2:])
    assert first["max_tokens"] == PROVIDER.max_output_length
    assert second["max_completion_tokens"] == 9 and "max_tokens" not in second
