"""CORS: no headers unless origins are listed; preflights answered before any key is asked for."""

from __future__ import annotations

import pytest

from infer_cli.errors import UsageError
from infer_cli.proxy.guards.cors import normalize_origins
from infer_cli.proxy.guards.middleware import GuardConfig
from tests.fake_upstream import FakeUpstream
from tests.guard_harness import CHAT, assert_error, client, serve

APP = "https://app.example.com"
KEY = "sk-cors-test-key"
PREFLIGHT = {
    "Origin": APP,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
}


def test_origins_are_normalised_as_browsers_send_them() -> None:
    assert normalize_origins(["https://App.Example.com/", APP, " http://localhost:3000 "]) == (
        APP,
        "http://localhost:3000",
    )
    assert normalize_origins(["*"]) == ("*",)
    assert normalize_origins([]) == ()
    for bad in ("app.example.com", "https://app.example.com/path", "ftp://x", ""):
        with pytest.raises(UsageError):
            normalize_origins([bad])


async def test_no_cors_headers_unless_origins_are_listed(fake: FakeUpstream) -> None:
    async with serve(fake) as served, client(served.url) as http:
        response = await http.post("/v1/chat/completions", json=CHAT, headers={"Origin": APP})
        preflight = await http.options("/v1/chat/completions", headers=PREFLIGHT)
    assert response.status_code == 200
    for answer in (response, preflight):
        assert not any(name.startswith("access-control-") for name in answer.headers)


async def test_preflight_from_a_listed_origin(fake: FakeUpstream) -> None:
    guards = GuardConfig(api_keys=(KEY,), cors_origins=(APP, "http://localhost:3000"))
    async with serve(fake, guards) as served, client(served.url) as http:
        preflight = await http.options("/api/v1/chat/completions", headers=PREFLIGHT)
        stranger = await http.options(
            "/api/v1/chat/completions", headers={**PREFLIGHT, "Origin": "https://evil.example"}
        )
    assert preflight.status_code == 200  # no key needed for a preflight
    headers = preflight.headers
    assert headers["access-control-allow-origin"] == APP
    assert "POST" in headers["access-control-allow-methods"]
    assert headers["access-control-allow-headers"] == PREFLIGHT["Access-Control-Request-Headers"]
    assert headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in headers
    assert stranger.status_code == 400
    assert "access-control-allow-origin" not in stranger.headers
    assert fake.requests == []  # preflights never reach the engine


async def test_answers_to_a_listed_origin_carry_cors_headers_errors_too(
    fake: FakeUpstream,
) -> None:
    guards = GuardConfig(api_keys=(KEY,), cors_origins=(APP,), rate_limit_rpm=1)
    async with serve(fake, guards) as served:
        async with client(served.url, KEY, headers={"Origin": APP}) as http:
            ok = await http.post("/v1/chat/completions", json=CHAT)
            limited = await http.post("/v1/chat/completions", json=CHAT)
        async with client(served.url, headers={"Origin": APP}) as anonymous:
            unauthorized = await anonymous.post("/v1/chat/completions", json=CHAT)
        async with client(served.url, KEY, headers={"Origin": "https://evil.example"}) as other:
            stranger = await other.get("/v1/models")
    assert ok.status_code == 200
    assert_error(limited, 429, "rate_limit_exceeded")
    assert_error(unauthorized, 401, "authentication")
    for response in (ok, limited, unauthorized):
        assert response.headers["access-control-allow-origin"] == APP
        exposed = response.headers["access-control-expose-headers"].lower()
        assert "retry-after" in exposed
    assert stranger.status_code == 200
    assert "access-control-allow-origin" not in stranger.headers


async def test_a_wildcard_must_be_written_out(fake: FakeUpstream) -> None:
    async with serve(fake, GuardConfig(cors_origins=("*",))) as served, client(served.url) as http:
        preflight = await http.options("/v1/chat/completions", headers=PREFLIGHT)
        response = await http.get("/v1/models", headers={"Origin": "https://any.example"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-origin"] == "*"
