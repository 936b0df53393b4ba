"""The proxy over real sockets: a real uvicorn proxy in front of a real (fake) upstream."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest

from infer_cli import __version__
from infer_cli.errors import PortInUseError
from infer_cli.proxy.app import ProxyConfig, create_app
from infer_cli.proxy.sse import KEEPALIVE_COMMENT
from infer_cli.proxy.state import EngineStatus, UpstreamState
from infer_cli.wire.server import AppServer, bind
from tests.fake_upstream import FakeUpstream
from tests.helpers import free_port

KEY = "internal-key"
CHAT = {"model": "fake/model", "messages": [{"role": "user", "content": "hi"}]}
STREAM = {**CHAT, "stream": True}

ProxyFactory = Callable[..., AbstractAsyncContextManager[tuple[str, UpstreamState]]]


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream(api_key=KEY)
    await upstream.start()
    try:
        yield upstream
    finally:
        await upstream.stop()


@pytest.fixture
def proxy(fake: FakeUpstream) -> ProxyFactory:
    """``async with proxy(**config) as (url, state)``: a ready proxy in front of ``fake``."""

    @asynccontextmanager
    async def run(
        *, status: EngineStatus = "ready", upstream_url: str | None = None, **config: Any
    ) -> AsyncIterator[tuple[str, UpstreamState]]:
        state = UpstreamState(
            url=upstream_url or fake.url, api_key=KEY, model="fake/model", status=status
        )
        server = AppServer(create_app(ProxyConfig(**config), state), bind("127.0.0.1", 0))
        await server.start()
        try:
            yield server.url, state
        finally:
            await server.stop()

    return run


def client(base: str, **kwargs: Any) -> httpx.AsyncClient:
    kwargs.setdefault("timeout", 10)
    return httpx.AsyncClient(base_url=base, trust_env=False, **kwargs)


def assert_error(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str)
    assert error["code"] == status
    assert error["metadata"]["error_type"] == error_type
    return dict(error)


async def wait_for(event: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


# --- health -----------------------------------------------------------------------------------


async def test_health_is_503_while_starting_then_200_when_ready(proxy: ProxyFactory) -> None:
    async with proxy(status="starting") as (url, state), client(url) as http:
        state.detail = "vllm: loading weights"
        starting = await http.get("/health")
        assert starting.status_code == 503
        assert starting.headers["retry-after"] == "10"
        body = starting.json()
        assert body["status"] == "unavailable"
        assert body["engine"] == "starting"
        assert body["detail"] == "vllm: loading weights"
        assert body["model"] == "fake/model"
        assert body["version"] == __version__
        assert isinstance(body["uptime"], float | int) and body["uptime"] >= 0

        state.status, state.detail = "ready", ""
        ready = await http.get("/health")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ok",
            "model": "fake/model",
            "profile": None,
            "engine": "ready",
            "uptime": ready.json()["uptime"],
            "version": __version__,
            "restarts": 0,
        }


async def test_health_says_why_the_engine_restarts_without_internal_addresses(
    proxy: ProxyFactory,
) -> None:
    async with proxy(status="ready") as (url, state), client(url) as http:
        state.count_restart(
            "vllm",
            "exited",
            "vllm exited with code 1: ConnectionRefusedError: Connect call failed "
            "('127.0.0.1', 5555) while calling http://127.0.0.1:41234/v1",
            1700000000.0,
        )
        state.status, state.detail = "restarting", "restarting vllm"
        state.retry_after = 42.2
        down = await http.get("/health")
        assert down.status_code == 503 and down.headers["retry-after"] == "43"
        body = down.json()
        assert body["engine"] == "restarting" and body["detail"] == "restarting vllm"
        assert body["restarts"] == 1
        assert body["last_restart"]["at"] == 1700000000.0
        assert body["last_restart"]["reason"].startswith("vllm exited with code 1")
        assert "127.0.0.1" not in down.text and "41234" not in down.text
        assert "5555" not in down.text
        refused = await http.post(
            "/v1/chat/completions",
            json={"model": "fake/model", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert refused.status_code == 503 and refused.headers["retry-after"] == "43"
        assert refused.json()["error"]["metadata"]["engine"] == "restarting"
        assert "is restarting" in refused.json()["error"]["message"]
        metrics = (await http.get("/metrics")).text
        assert 'infer_proxy_engine_restarts_total{process="vllm",reason="exited"} 1' in metrics
        assert "infer_proxy_engine_ready 0" in metrics

        state.status, state.detail = "failed", "vllm exited with code 1"
        failed = await http.get("/health")
        assert failed.status_code == 503
        assert failed.json()["engine"] == "failed"
        assert failed.json()["detail"] == "vllm exited with code 1"


# --- passthrough ------------------------------------------------------------------------------


async def test_models_are_served_by_the_proxy_on_both_prefixes(
    proxy: ProxyFactory, fake: FakeUpstream
) -> None:
    async with proxy() as (url, _), client(url) as http:
        openai = await http.get("/v1/models")
        openrouter = await http.get("/api/v1/models")
        again = await http.get("/v1/models")
    for response in (openai, openrouter, again):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json()["data"][0]["id"] == "fake/model"
    # Without a profile context length, the engine's max_model_len, read once.
    assert openai.json()["data"][0]["max_model_len"] == 8192
    assert openrouter.json()["data"][0]["context_length"] == 8192
    assert [seen["path"] for seen in fake.requests] == ["/v1/models"]


async def test_chat_completion_passes_through(proxy: ProxyFactory, fake: FakeUpstream) -> None:
    async with proxy() as (url, _), client(url) as http:
        response = await http.post("/api/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "Hello, world!"
    assert json.loads(fake.requests[0]["body"]) == CHAT


async def test_stream_arrives_chunk_by_chunk(proxy: ProxyFactory, fake: FakeUpstream) -> None:
    fake.chunk_delay, fake.chunks = 0.25, 4
    lines: list[str] = []
    async with (
        proxy() as (url, _),
        client(url) as http,
        http.stream("POST", "/v1/chat/completions", json=STREAM) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data:") and not lines:
                # The first event is here while the upstream still has a second of chunks to go.
                assert not fake.finished.is_set()
                first_at = time.monotonic()
            if line:
                lines.append(line)
    assert fake.finished_at is not None and fake.finished_at - first_at > 0.5
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    text = "".join(
        chunk["choices"][0]["delta"].get("content", "") for chunk in chunks if chunk["choices"]
    )
    assert text == "Hello, world!"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


async def test_internal_key_replaces_the_clients_and_headers_are_filtered(
    proxy: ProxyFactory, fake: FakeUpstream
) -> None:
    headers = {
        "Authorization": "Bearer client-secret",
        "X-Title": "my app",
        "HTTP-Referer": "https://example.org",
        "Connection": "keep-alive, x-hop",
        "X-Hop": "hop-only",
        "Accept-Encoding": "gzip",
    }
    body = {"model": "fake/model", "prompt": "raw body"}
    async with proxy() as (url, _), client(url) as http:
        response = await http.post("/api/v1/tokenize", json=body, headers=headers)
    assert response.status_code == 200
    assert response.headers["x-upstream"] == "fake"
    assert response.headers["x-request-id"] == "req-1"
    seen = response.json()
    assert seen["path"] == "/tokenize"
    assert json.loads(seen["body"]) == body
    upstream_headers = dict(seen["headers"])
    assert [v for k, v in seen["headers"] if k == "authorization"] == [f"Bearer {KEY}"]
    assert "client-secret" not in json.dumps(seen["headers"])
    # Only what the engine needs crosses the proxy: OpenRouter's attribution headers stay here.
    assert "x-title" not in upstream_headers and "http-referer" not in upstream_headers
    assert upstream_headers["accept-encoding"] == "identity"
    assert "x-hop" not in upstream_headers
    assert upstream_headers["host"] != urlparse_host(response.request.url)


@pytest.mark.parametrize(
    ("path", "engine_path"),
    [
        ("/tokenize", "/tokenize"),
        ("/v1/tokenize", "/tokenize"),
        ("/api/v1/tokenize", "/tokenize"),
        ("/detokenize", "/detokenize"),
        ("/api/v1/detokenize", "/detokenize"),
    ],
)
async def test_tokenize_reaches_the_engines_root_with_the_internal_key(
    proxy: ProxyFactory, fake: FakeUpstream, path: str, engine_path: str
) -> None:
    body: dict[str, Any] = {"model": "fake/model", "prompt": "hello"}
    if engine_path == "/detokenize":
        body = {"model": "fake/model", "tokens": [1, 2]}
    async with proxy() as (url, _), client(url) as http:
        response = await http.post(path, json=body, headers={"Authorization": "Bearer mine"})
    assert response.status_code == 200
    seen = response.json()
    assert seen["path"] == engine_path
    assert json.loads(seen["body"]) == body
    assert [v for k, v in seen["headers"] if k == "authorization"] == [f"Bearer {KEY}"]


async def test_tokenize_at_the_root_is_503_while_the_engine_starts(
    proxy: ProxyFactory, fake: FakeUpstream
) -> None:
    async with proxy(status="starting") as (url, _), client(url) as http:
        response = await http.post("/tokenize", json={"prompt": "hi"})
    assert_error(response, 503, "provider_unavailable")
    assert fake.requests == []


def urlparse_host(url: httpx.URL) -> str:
    return f"{url.host}:{url.port}"


async def test_upstream_error_status_and_body_pass_through(
    proxy: ProxyFactory, fake: FakeUpstream
) -> None:
    fake.fail_status = 400
    async with proxy() as (url, _), client(url) as http:
        response = await http.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "fake failure"


# --- errors before the engine answers ---------------------------------------------------------


@pytest.mark.parametrize("status", ["starting", "failed", "stopped"])
async def test_503_with_retry_after_while_not_ready(
    proxy: ProxyFactory, fake: FakeUpstream, status: EngineStatus
) -> None:
    async with proxy(status=status) as (url, _), client(url) as http:
        response = await http.post("/api/v1/chat/completions", json=STREAM)
    error = assert_error(response, 503, "provider_unavailable")
    assert response.headers["retry-after"] == "10"
    assert error["metadata"]["engine"] == status
    assert fake.requests == []


async def test_502_when_the_upstream_is_down(proxy: ProxyFactory) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    async with proxy(upstream_url=down, keepalive_interval=0.2) as (url, _), client(url) as http:
        plain = await http.post("/v1/chat/completions", json=CHAT)
        streamed = await http.post("/v1/chat/completions", json=STREAM)
        other = await http.post("/tokenize", json={"prompt": "hi"})
    for response in (plain, streamed, other):
        assert_error(response, 502, "provider_unavailable")


async def test_408_when_the_upstream_stays_silent(proxy: ProxyFactory, fake: FakeUpstream) -> None:
    fake.header_delay = 3.0
    async with proxy(request_timeout=0.3) as (url, _), client(url) as http:
        started = time.monotonic()
        response = await http.post("/v1/chat/completions", json=CHAT)
    assert_error(response, 408, "timeout")
    assert time.monotonic() - started < 2.5


async def test_413_for_a_body_over_the_limit(proxy: ProxyFactory, fake: FakeUpstream) -> None:
    big = json.dumps({**CHAT, "padding": "x" * 5000}).encode()

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    async with proxy(max_body_bytes=1000) as (url, _), client(url) as http:
        declared = await http.post("/v1/chat/completions", content=big)
        streamed = await http.post("/v1/chat/completions", content=chunked())
        small = await http.post("/v1/chat/completions", json=CHAT)
    for response in (declared, streamed):
        error = assert_error(response, 413, "payload_too_large")
        assert error["metadata"]["max_body_bytes"] == 1000
    assert small.status_code == 200
    assert len(fake.requests) == 1


async def test_malformed_json_is_400_and_never_reaches_the_engine(
    proxy: ProxyFactory, fake: FakeUpstream
) -> None:
    async with proxy() as (url, _), client(url) as http:
        broken = await http.post(
            "/v1/chat/completions",
            content=b'{"model": "x", "stream": tr',
            headers={"content-type": "application/json"},
        )
        deep = await http.post(
            "/v1/chat/completions",
            content=b"[" * 100_000,
            headers={"content-type": "application/json"},
        )
        binary = await http.post(
            "/v1/chat/completions",
            content=b"\xff\xfe\x00garbage",
            headers={"content-type": "application/json"},
        )
        health = await http.get("/health")
    for response in (broken, deep, binary):
        assert_error(response, 400, "invalid_request")
    assert health.status_code == 200
    assert fake.requests == []


async def test_unknown_routes_and_dot_segments_get_error_json(
    proxy: ProxyFactory, fake: FakeUpstream
) -> None:
    async with proxy() as (url, _), client(url) as http:
        missing = await http.get("/nowhere")
        wrong_method = await http.post("/health")
        host, port = url.removeprefix("http://").split(":")
        traversal = await raw_get(host, int(port), "/v1/%2e%2e/metrics")
    assert_error(missing, 404, "not_found")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == 405
    assert traversal.startswith(b"HTTP/1.1 404")  # no route of the allow-list; never forwarded
    assert fake.requests == []


async def raw_get(host: str, port: int, target: str) -> bytes:
    """A request with the target exactly as written (no client-side normalisation)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


# --- keep-alive comments ----------------------------------------------------------------------


async def read_stream(http: httpx.AsyncClient, body: dict[str, Any]) -> tuple[int, bytes]:
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        return response.status_code, b"".join([chunk async for chunk in response.aiter_raw()])


async def test_keepalive_comments_while_the_first_token_is_slow(
    proxy: ProxyFactory, fake: FakeUpstream
) -> None:
    fake.first_token_delay = 0.9
    async with proxy(keepalive_interval=0.2) as (url, _), client(url) as http:
        status, raw = await read_stream(http, STREAM)
        plain = await http.post("/v1/chat/completions", json=CHAT)
    assert status == 200
    before_data = raw.split(b"data:", 1)[0]
    assert before_data.count(KEEPALIVE_COMMENT) >= 2
    assert before_data.replace(KEEPALIVE_COMMENT, b"") == b""
    assert raw.rstrip().endswith(b"data: [DONE]")
    assert b"OPENROUTER" not in raw.split(b"data:", 1)[1]
    assert plain.json()["object"] == "chat.completion"  # no comments in a plain answer


async def test_keepalive_comments_while_the_headers_are_slow(
    proxy: ProxyFactory, fake: FakeUpstream
) -> None:
    fake.header_delay = 0.8
    async with proxy(keepalive_interval=0.2) as (url, _), client(url) as http:
        status, raw = await read_stream(http, STREAM)
    assert status == 200
    assert raw.split(b"data:", 1)[0].count(KEEPALIVE_COMMENT) >= 2
    assert raw.rstrip().endswith(b"data: [DONE]")
    assert b"Hello" in raw


async def test_an_error_after_keepalives_began_is_an_error_event(
    proxy: ProxyFactory, fake: FakeUpstream
) -> None:
    fake.header_delay, fake.fail_status = 0.6, 400
    async with proxy(keepalive_interval=0.2) as (url, _), client(url) as http:
        status, raw = await read_stream(http, STREAM)
    assert status == 200
    events = [block for block in raw.split(b"\n\n") if block.startswith(b"data:")]
    assert len(events) == 2
    assert events[1] == b"data: [DONE]"
    chunk = json.loads(events[0][6:])
    assert chunk["object"] == "chat.completion.chunk"
    assert chunk["error"]["code"] == 400
    assert chunk["error"]["message"] == "fake failure"
    assert chunk["choices"][0]["finish_reason"] == "error"
    assert chunk["model"] == "fake/model"


# --- the client goes away ---------------------------------------------------------------------


async def test_client_disconnect_mid_stream_cancels_the_upstream(
    proxy: ProxyFactory, fake: FakeUpstream
) -> None:
    fake.chunk_delay, fake.chunks = 0.2, 100
    async with proxy() as (url, _), client(url) as http:
        async with http.stream("POST", "/v1/chat/completions", json=STREAM) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    break
            left = time.monotonic()
        assert await wait_for(fake.cancelled, 3.0)
    assert fake.cancelled_at is not None and fake.cancelled_at - left < 1.0
    assert not fake.finished.is_set()


async def test_client_disconnect_while_waiting_for_the_first_token(
    proxy: ProxyFactory, fake: FakeUpstream
) -> None:
    fake.first_token_delay = 10.0
    async with proxy(keepalive_interval=0.2) as (url, _), client(url) as http:
        async with http.stream("POST", "/v1/chat/completions", json=STREAM) as response:
            async for chunk in response.aiter_raw():
                assert chunk.startswith(b":")
                break
            left = time.monotonic()
        assert await wait_for(fake.cancelled, 3.0)
    assert fake.cancelled_at is not None and fake.cancelled_at - left < 1.0


async def test_client_disconnect_while_a_plain_answer_is_pending(
    proxy: ProxyFactory, fake: FakeUpstream
) -> None:
    fake.header_delay = 10.0
    async with proxy() as (url, _):
        async with client(url, timeout=httpx.Timeout(10, read=0.5)) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.post("/v1/chat/completions", json=CHAT)
        left = time.monotonic()
        assert await wait_for(fake.cancelled, 3.0)
    assert fake.cancelled_at is not None and fake.cancelled_at - left < 1.0


async def test_upstream_breaking_off_mid_stream_ends_with_an_error_chunk(
    proxy: ProxyFactory, fake: FakeUpstream
) -> None:
    fake.break_after, fake.chunks = 2, 4
    async with proxy() as (url, _), client(url) as http:
        status, raw = await read_stream(http, STREAM)
        assert (await http.get("/health")).status_code == 200
    assert status == 200
    events = [block for block in raw.split(b"\n\n") if block.startswith(b"data:")]
    assert events[-1] == b"data: [DONE]"
    last = json.loads(events[-2][6:])
    assert last["error"]["code"] == 502
    assert last["choices"][0]["finish_reason"] == "error"


# --- the server -------------------------------------------------------------------------------


def test_bind_reports_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError) as caught:
            bind("127.0.0.1", port)
    assert caught.value.message == f"port {port} on 127.0.0.1 is already in use"
    assert caught.value.hint == "stop what uses it or pass --port"


def test_bind_claims_the_port_at_once() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP  # so that asyncio sets TCP_NODELAY on connections
        port = sock.getsockname()[1]
        with pytest.raises(PortInUseError):
            bind("127.0.0.1", port)
    finally:
        sock.close()


async def test_proxy_server_starts_serves_and_stops_on_a_real_socket() -> None:
    state = UpstreamState(url=None, api_key=KEY, model="m")
    sock = bind("127.0.0.1", 0)
    server = AppServer(create_app(ProxyConfig(), state), sock)
    assert server.url == f"http://127.0.0.1:{sock.getsockname()[1]}"
    await server.start()
    async with client(server.url) as http:
        assert (await http.get("/health")).status_code == 503
        state.url, state.status = "http://127.0.0.1:1", "ready"
        assert (await http.get("/health")).status_code == 200
    started = time.monotonic()
    await server.stop()
    await server.stop()  # idempotent
    assert time.monotonic() - started < 3
    async with client(server.url) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("/health")
    # The port is free again.
    bind("127.0.0.1", int(server.url.rsplit(":", 1)[1])).close()


async def test_stop_before_start_releases_the_port() -> None:
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = AppServer(create_app(ProxyConfig(), UpstreamState(None, None, "m")), sock)
    await server.stop()
    bind("127.0.0.1", port).close()
