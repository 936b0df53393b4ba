"""Issue 11, items 5, 7, 8, 9 and 14: what one key can see of another's, which routes and headers
reach the engine, redirects, and the keys file watched before it exists. Over real sockets, on the
simulated engine or the fake upstream."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from infer_cli.config.keys import add_key, remove_key
from infer_cli.proxy.guards.middleware import GuardConfig
from infer_cli.proxy.upstream.client import response_headers
from tests.fake_upstream import FakeUpstream
from tests.guard_harness import CHAT, assert_error, client, serve
from tests.sim_harness import MODEL, sim_proxy

KEY_A = "sk-test-alice-0000000000"
KEY_B = "sk-test-bob-11111111111"


# --- item 5: a generation's stats belong to its key ----------------------------------------------


async def test_a_key_reads_only_its_own_generations(fake: FakeUpstream) -> None:
    guards = GuardConfig(api_keys=(KEY_A, KEY_B), engine_metrics=False)
    async with (
        serve(fake, guards) as served,
        client(served.url, KEY_A) as alice,
        client(served.url, KEY_B) as bob,
    ):
        made = await alice.post("/api/v1/chat/completions", json=CHAT)
        generation_id = made.json()["id"]
        own = await alice.get("/api/v1/generation", params={"id": generation_id})
        other = await bob.get("/api/v1/generation", params={"id": generation_id})
        unknown = await bob.get("/api/v1/generation", params={"id": "chatcmpl-none"})
    assert own.status_code == 200 and own.json()["data"]["id"] == generation_id
    error = assert_error(other, 404, "not_found")
    # The same answer as for an id that does not exist: ids cannot be probed.
    assert error["message"].replace(generation_id, "X") == unknown.json()["error"][
        "message"
    ].replace("chatcmpl-none", "X")


async def test_an_open_proxy_shows_every_generation(fake: FakeUpstream) -> None:
    async with serve(fake, GuardConfig(engine_metrics=False)) as served, client(served.url) as http:
        made = await http.post("/api/v1/chat/completions", json=CHAT)
        stats = await http.get("/api/v1/generation", params={"id": made.json()["id"]})
    assert stats.status_code == 200


# --- item 7: headers ----------------------------------------------------------------------------


async def test_a_utf8_header_value_is_never_a_500(caplog: pytest.LogCaptureFixture) -> None:
    headers = {b"X-Title": "Café crème".encode(), b"HTTP-Referer": "https://例え.jp/".encode()}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    async with sim_proxy() as proxy, proxy.client() as http:
        with caplog.at_level(logging.ERROR, logger="infer.proxy"):
            chat = await http.post("/v1/chat/completions", json=body, headers=headers)
            streamed = await http.post(
                "/api/v1/chat/completions", json={**body, "stream": True}, headers=headers
            )
            tokenized = await http.post("/tokenize", json={"prompt": "hi"}, headers=headers)
    assert chat.status_code == 200, chat.text
    assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")
    assert tokenized.status_code == 200, tokenized.text
    assert "Traceback" not in caplog.text and "failed" not in caplog.text


async def test_only_the_headers_the_engine_needs_reach_it(fake: FakeUpstream) -> None:
    headers = {
        "X-Title": "app",
        "Cookie": "session=1",
        "X-Forwarded-For": "10.1.2.3",
        "X-Request-Id": "req-42",
    }
    async with serve(fake, GuardConfig(engine_metrics=False)) as served, client(served.url) as http:
        assert (await http.post("/v1/chat/completions", json=CHAT, headers=headers)).is_success
    names = {name for name, _ in fake.requests[-1]["headers"]}
    assert not names & {"x-title", "cookie", "x-forwarded-for"}
    assert ("x-request-id", "req-42") in fake.requests[-1]["headers"]


# --- items 8 and 9: routes and redirects ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/embeddings"),
        ("POST", "/v1/responses"),
        ("POST", "/v1/load_lora_adapter"),
        ("GET", "/api/v1/anything"),
        ("DELETE", "/v1/models/x"),
        ("POST", "/v1/chat/completions/"),
        ("POST", "/api/v1/completions/"),
    ],
)
async def test_routes_outside_the_list_are_404_and_never_forwarded(
    fake: FakeUpstream, method: str, path: str
) -> None:
    async with serve(fake, GuardConfig(engine_metrics=False)) as served, client(served.url) as http:
        response = await http.request(method, path, json=CHAT)
    assert_error(response, 404, "not_found")
    assert "location" not in response.headers
    assert fake.requests == []


async def test_a_wrong_method_is_405_with_allow(fake: FakeUpstream) -> None:
    async with serve(fake, GuardConfig(engine_metrics=False)) as served, client(served.url) as http:
        chat = await http.get("/v1/chat/completions")
        tokenize = await http.put("/api/v1/tokenize", json={"prompt": "hi"})
        stats = await http.post("/api/v1/generation", params={"id": "x"})
    for response, allowed in ((chat, "POST"), (tokenize, "POST"), (stats, "GET")):
        assert_error(response, 405, "invalid_request")
        assert allowed in response.headers["allow"]
    assert fake.requests == []


def test_an_engines_redirect_never_reaches_the_client() -> None:
    headers = httpx.Headers(
        {"location": "http://127.0.0.1:41234/v1/x", "content-location": "http://127.0.0.1/"}
    )
    assert response_headers(headers) == []


# --- item 14: the keys file --------------------------------------------------------------------


async def test_keys_added_after_start_are_enforced_within_a_second(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    path = tmp_path / "api_keys"
    guards = GuardConfig(api_keys_file=path, api_keys_file_optional=True, engine_metrics=False)
    async with serve(fake, guards) as served, client(served.url) as anonymous:
        assert (await anonymous.post("/v1/chat/completions", json=CHAT)).status_code == 200
        key = add_key(path, "alice")
        added = time.monotonic()
        while (await anonymous.post("/v1/chat/completions", json=CHAT)).status_code != 401:
            assert time.monotonic() - added < 3, "a key added to a watched file must be enforced"
            await asyncio.sleep(0.05)
        async with client(served.url, key) as alice:
            assert (await alice.post("/v1/chat/completions", json=CHAT)).status_code == 200
        # The last key removed: the file is still there, so the proxy stays closed (401).
        assert remove_key(path, "alice")
        await asyncio.sleep(1.2)  # the file is checked once a second
        async with client(served.url, key) as alice:
            assert (await alice.post("/v1/chat/completions", json=CHAT)).status_code == 401
        assert (await anonymous.post("/v1/chat/completions", json=CHAT)).status_code == 401


def test_keys_list_says_what_the_proxy_does(tmp_path: Path) -> None:
    from infer_cli.cli import app

    runner = CliRunner()
    path = tmp_path / "api_keys"
    missing = runner.invoke(app, ["keys", "list", "--file", str(path)])
    assert missing.exit_code == 0 and "serves every client" in missing.output
    add_key(path, "alice")
    remove_key(path, "alice")
    empty = runner.invoke(app, ["keys", "list", "--file", str(path)])
    assert empty.exit_code == 0
    assert "401" in empty.output and "serves every client" not in empty.output
    listed = runner.invoke(app, ["keys", "list", "--file", str(path), "--json"])
    assert '"auth": "closed"' in listed.stdout


async def test_a_route_the_profile_turns_on_is_relayed_behind_the_keys(fake: FakeUpstream) -> None:
    guards = GuardConfig(api_keys=(KEY_A,), engine_metrics=False)
    async with (
        serve(fake, guards, extra_routes=("/v1/echo",)) as served,
        client(served.url, KEY_A) as alice,
        client(served.url) as anonymous,
    ):
        relayed = await alice.post("/v1/echo", params={"x": "1"}, json={"input": "hi"})
        refused = await anonymous.post("/v1/echo", json={"input": "hi"})
        other = await alice.post("/v1/embeddings", json={"input": "hi"})
    assert relayed.status_code == 200, relayed.text
    seen = relayed.json()
    assert seen["path"] == "/v1/echo" and seen["query"] == "x=1"
    assert '"input":"hi"' in seen["body"].replace(" ", "")
    headers = dict(seen["headers"])
    assert headers["authorization"] == "Bearer " + served.state.api_key  # the internal key
    assert_error(refused, 401, "authentication")
    assert_error(other, 404, "not_found")  # only what the profile names
    assert len(fake.requests) == 1


def test_extra_routes_must_be_engine_routes_under_v1() -> None:
    from pydantic import ValidationError

    from infer_cli.config.schema import ProxySection

    assert ProxySection(extra_routes=["/v1/embeddings"]).extra_routes == ["/v1/embeddings"]
    for bad in ("/admin", "/v1/../metrics", "v1/embeddings", "/v1/"):
        with pytest.raises(ValidationError, match="not an engine route under /v1"):
            ProxySection(extra_routes=[bad])
