"""API keys: the keys file, the key ring, the settings, and the middleware over real sockets."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse

from infer_cli.config.keys import (
    KEY_PREFIX,
    KeysFileError,
    add_key,
    default_keys_file,
    hash_key,
    parse_keys_file,
    plain_key,
    read_keys_file,
    remove_key,
)
from infer_cli.config.schema import ProxySection
from infer_cli.errors import UsageError
from infer_cli.proxy.guards.auth import KeyRing, bearer_token
from infer_cli.proxy.guards.middleware import GuardConfig, guard_config
from tests.fake_upstream import FakeUpstream
from tests.guard_harness import CHAT, assert_error, client, serve

KEY_A = "sk-test-alpha-0123456789"
KEY_B = "sk-test-bravo-9876543210"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --- the keys file ----------------------------------------------------------------------------


def test_add_key_stores_only_a_hash_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "api_keys"
    first = add_key(path, "openrouter")
    second = add_key(path, "me.laptop")
    assert first.startswith(KEY_PREFIX) and len(first) > 40 and first != second
    text = path.read_text()
    assert first not in text and second not in text
    assert text == f"openrouter:{hash_key(first)}\nme.laptop:{hash_key(second)}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ring = KeyRing(file=path)
    assert ring.match(first) == "openrouter"
    assert ring.match(second) == "me.laptop"
    assert ring.match(first + "x") is None


def test_add_key_refuses_bad_and_duplicate_names(tmp_path: Path) -> None:
    path = tmp_path / "api_keys"
    add_key(path, "one")
    for name in ("one", "", "has space", "a:b", "-leading", "x" * 65):
        with pytest.raises(KeysFileError):
            add_key(path, name)
    assert len(read_keys_file(path)) == 1


def test_add_key_after_a_hand_written_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "api_keys"
    path.write_text(f"# mine\nhand:{hash_key('k1')}")
    add_key(path, "made")
    assert [key.id for key in read_keys_file(path)] == ["hand", "made"]


def test_remove_key(tmp_path: Path) -> None:
    path = tmp_path / "api_keys"
    add_key(path, "one")
    kept = add_key(path, "two")
    assert remove_key(path, "one") is True
    assert remove_key(path, "one") is False
    assert remove_key(tmp_path / "missing", "one") is False
    assert [key.id for key in read_keys_file(path)] == ["two"]
    assert KeyRing(file=path).match(kept) == "two"


def test_a_malformed_line_is_named_but_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "api_keys"
    path.write_text(f"ok:{hash_key('k')}\n\n# comment\nsk-pasted-plaintext-key\n")
    with pytest.raises(KeysFileError) as caught:
        read_keys_file(path)
    assert f"{path}, line 4" in caught.value.message
    assert "sk-pasted" not in caught.value.one_line()
    with pytest.raises(KeysFileError, match="used twice"):
        parse_keys_file(f"a:{hash_key('1')}\na:{hash_key('2')}\n", path)
    with pytest.raises(KeysFileError, match="does not exist"):
        read_keys_file(tmp_path / "nowhere")


# --- the key ring -----------------------------------------------------------------------------


def test_plain_keys_are_known_by_a_hash_prefix() -> None:
    ring = KeyRing([plain_key(KEY_A), plain_key(KEY_B), plain_key(KEY_A)])
    assert ring.enabled
    assert len(ring.keys()) == 2
    assert ring.match(KEY_A) == "key-" + hash_key(KEY_A)[:8]
    assert ring.match(KEY_B) == "key-" + hash_key(KEY_B)[:8]
    assert ring.match("") is None
    assert ring.match(KEY_A[:-1]) is None
    assert KEY_A not in repr(ring.keys())
    assert not KeyRing().enabled


def test_the_keys_file_is_reloaded_when_it_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "api_keys"
    path.write_text("")
    clock = Clock()
    ring = KeyRing(file=path, check_every=1.0, clock=clock)
    assert ring.enabled and ring.keys() == ()  # an empty file: closed, not open
    key = add_key(path, "new")
    assert ring.match(key) is None  # not checked again yet
    clock.now += 1.0
    assert ring.match(key) == "new"
    path.write_text("garbage\n")
    os.utime(path, ns=(1, 1))
    clock.now += 1.0
    with caplog.at_level(logging.WARNING, logger="infer.proxy"):
        assert ring.match(key) == "new"  # a broken file keeps the keys read before
    assert "line 1" in caplog.text
    path.unlink()
    clock.now += 1.0
    assert ring.match(key) == "new"


def test_bearer_token_parsing() -> None:
    def scope(*headers: tuple[bytes, bytes]) -> dict[str, object]:
        return {"headers": list(headers)}

    assert bearer_token(scope((b"authorization", b"Bearer abc"))) == "abc"
    assert bearer_token(scope((b"authorization", b"bearer   abc  "))) == "abc"
    assert bearer_token(scope((b"authorization", b"Basic abc"))) is None
    assert bearer_token(scope((b"authorization", b"Bearer "))) is None
    assert bearer_token(scope()) is None


# --- settings ---------------------------------------------------------------------------------


def test_guard_config_reads_the_proxy_section_and_the_environment(tmp_path: Path) -> None:
    section = ProxySection(
        api_keys=[KEY_A],
        api_keys_file=str(tmp_path / "keys"),
        protect_health=True,
        rate_limit_rpm=0,
        max_concurrent=8,
        cors_origins=["https://a.example"],
    )
    env = {"INFER_API_KEYS": f" {KEY_B}, ,{KEY_A}"}
    config = guard_config(section, env)
    assert config.api_keys == (KEY_A, KEY_B)
    assert config.api_keys_file == tmp_path / "keys"
    assert config.protect_health and not config.protect_metrics
    assert config.rate_limit_rpm is None  # 0: no limit
    assert config.rate_limit_tpm is None
    assert config.max_concurrent == 8 and config.max_concurrent_per_key is None
    assert config.cors_origins == ("https://a.example",)
    assert KEY_A not in repr(config) and KEY_B not in repr(config)


def test_guard_config_reveals_secret_strings() -> None:
    from pydantic import SecretStr

    section = ProxySection(api_keys=[SecretStr(KEY_A)])
    assert guard_config(section, {}).api_keys == (KEY_A,)


def test_guard_config_of_a_default_section_is_all_defaults() -> None:
    watched = GuardConfig(api_keys_file=default_keys_file(), api_keys_file_optional=True)
    assert guard_config(ProxySection(), {}) == watched


def test_the_prototypes_rate_limit_variables_reach_the_guards() -> None:
    from infer_cli.config import loader

    environ = {"RATE_LIMIT_REQUESTS_PER_MINUTE": "9", "RATE_LIMIT_TOKENS_PER_MINUTE": "0"}
    profile = loader.load("sim", environ=environ).profile
    config = guard_config(profile.proxy, {})
    assert config.rate_limit_rpm == 9
    assert config.rate_limit_tpm is None


def test_guard_config_watches_the_default_keys_file_before_it_exists(infer_home: Path) -> None:
    config = guard_config(ProxySection(), {})
    assert config.api_keys_file == default_keys_file() and config.api_keys_file_optional
    assert default_keys_file().parent == infer_home and not default_keys_file().exists()
    configured = guard_config(ProxySection(api_keys_file=str(infer_home / "mine")), {})
    assert not configured.api_keys_file_optional  # a configured file must exist


def test_guard_config_rejects_bad_values() -> None:
    with pytest.raises(UsageError):
        GuardConfig(rate_limit_rpm=0)
    with pytest.raises(UsageError):
        GuardConfig(api_keys=("has space",))


# --- over real sockets ------------------------------------------------------------------------


def add_whoami(app: FastAPI) -> None:
    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"key_id": request.state.key_id})

    app.add_api_route("/test/whoami", whoami, methods=["GET"])


async def test_no_keys_means_open_and_says_so(
    fake: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="infer.proxy"):
        async with serve(fake, setup=add_whoami) as served, client(served.url) as http:
            assert (await http.post("/v1/chat/completions", json=CHAT)).status_code == 200
            assert (await http.get("/test/whoami")).json() == {"key_id": None}
    assert "no API keys configured" in caplog.text


async def test_requests_need_a_known_key(fake: FakeUpstream, tmp_path: Path) -> None:
    path = tmp_path / "api_keys"
    from_file = add_key(path, "openrouter")
    guards = GuardConfig(api_keys=(KEY_A,), api_keys_file=path)
    async with serve(fake, guards, setup=add_whoami) as served:
        async with client(served.url) as anonymous:
            missing = await anonymous.post("/v1/chat/completions", json=CHAT)
            models = await anonymous.get("/api/v1/models")
            tokenize = await anonymous.post("/tokenize", json={"prompt": "hi"})
            health = await anonymous.get("/health")
            metrics = await anonymous.get("/metrics")
        async with client(served.url, "sk-wrong") as wrong:
            invalid = await wrong.post("/api/v1/chat/completions", json=CHAT)
        async with client(served.url, headers={"Authorization": f"Basic {KEY_A}"}) as basic:
            wrong_scheme = await basic.get("/v1/models")
        async with client(served.url, KEY_A) as plain, client(served.url, from_file) as filed:
            ok_plain = await plain.post("/v1/chat/completions", json=CHAT)
            ok_file = await filed.post("/v1/chat/completions", json=CHAT)
            who_plain = (await plain.get("/test/whoami")).json()
            who_file = (await filed.get("/test/whoami")).json()
    for response in (missing, models, tokenize, invalid, wrong_scheme):
        error = assert_error(response, 401, "authentication")
        assert error["type"] == "authentication_error"
        assert response.headers["www-authenticate"] == "Bearer"
    assert "missing API key" in missing.json()["error"]["message"]
    assert invalid.json()["error"]["message"] == "invalid API key"
    assert health.status_code == 200 and metrics.status_code == 200
    assert ok_plain.status_code == 200 and ok_file.status_code == 200
    assert who_plain == {"key_id": "key-" + hash_key(KEY_A)[:8]}
    assert who_file == {"key_id": "openrouter"}
    # Only the two accepted requests reached the engine, with the internal key, never the client's.
    chats = [seen for seen in fake.requests if seen["path"] == "/v1/chat/completions"]
    assert len(chats) == 2
    for seen in chats:
        assert [v for k, v in seen["headers"] if k == "authorization"] == ["Bearer internal-key"]


async def test_health_and_metrics_can_be_protected(fake: FakeUpstream) -> None:
    guards = GuardConfig(api_keys=(KEY_A,), protect_health=True, protect_metrics=True)
    async with serve(fake, guards) as served:
        async with client(served.url) as anonymous:
            assert_error(await anonymous.get("/health"), 401, "authentication")
            assert_error(await anonymous.get("/metrics"), 401, "authentication")
        async with client(served.url, KEY_A) as http:
            assert (await http.get("/health")).status_code == 200
            assert (await http.get("/metrics")).status_code == 200


async def test_an_empty_keys_file_closes_the_proxy(fake: FakeUpstream, tmp_path: Path) -> None:
    path = tmp_path / "api_keys"
    path.write_text("")
    async with serve(fake, GuardConfig(api_keys_file=path)) as served, client(served.url) as http:
        assert_error(await http.post("/v1/chat/completions", json=CHAT), 401, "authentication")
    assert fake.requests == []


def test_a_missing_keys_file_stops_the_start(tmp_path: Path) -> None:
    from infer_cli.proxy.app import ProxyConfig, create_app
    from infer_cli.proxy.state import UpstreamState

    guards = GuardConfig(api_keys_file=tmp_path / "missing")
    with pytest.raises(KeysFileError, match="does not exist"):
        create_app(ProxyConfig(), UpstreamState(None, None, "m"), guards=guards)


async def test_keys_never_reach_the_logs(
    fake: FakeUpstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "api_keys"
    with caplog.at_level(logging.DEBUG):
        from_file = add_key(path, "openrouter")
        guards = GuardConfig(api_keys=(KEY_A,), api_keys_file=path)
        async with serve(fake, guards) as served:
            for key in (KEY_A, from_file, KEY_B, "sk-infer-guess"):
                async with client(served.url, key) as http:
                    await http.post("/v1/chat/completions", json=CHAT)
                    await http.get("/v1/models")
                    await http.get("/nowhere")
    logged = "\n".join(
        f"{record.name} {record.getMessage()} {record.exc_text or ''}" for record in caplog.records
    )
    assert caplog.records  # the capture did see the proxy's logs
    for secret in (KEY_A, KEY_B, from_file, "sk-infer-guess"):
        assert secret not in logged
        assert hash_key(secret) not in logged
