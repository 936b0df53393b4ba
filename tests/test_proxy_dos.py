"""Denial of service (issue 11, items 1, 2, 3 and 13): what one hostile client may cost the proxy.

Every test talks to a real proxy (uvicorn on a socket, in front of the fake upstream) over raw
sockets, as an attacker would, at a size CI runs in seconds; ``benchmarks/dos_probe.py`` repeats
the probes at full size and measures memory, file descriptors and a bystander's stall.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from infer_cli.config.schema import Profile, ProxySection
from infer_cli.proxy.app import ProxyConfig, create_app
from infer_cli.proxy.errors import ProxyError
from infer_cli.proxy.guards.bounds import BodyBounds, check_shape
from infer_cli.proxy.guards.middleware import GuardConfig
from infer_cli.proxy.state import UpstreamState
from infer_cli.serve.app import connection_limits
from infer_cli.wire.guarded_http import ConnectionLimits
from infer_cli.wire.server import AppServer, bind
from tests.fake_upstream import FakeUpstream
from tests.helpers import wait_until

KEY = "internal-key"
CLOSE = b"Connection: close\r\n\r\n"
CHAT: dict[str, Any] = {"model": "fake/model", "messages": [{"role": "user", "content": "hi"}]}


@asynccontextmanager
async def proxy(
    fake: FakeUpstream,
    limits: ConnectionLimits | None = None,
    guards: GuardConfig | None = None,
    **config: Any,
) -> AsyncIterator[tuple[str, int]]:
    """A proxy in front of ``fake``; yields its host and port."""
    state = UpstreamState(url=fake.url, api_key=KEY, model="fake/model", status="ready")
    app = create_app(ProxyConfig(**config), state, guards=guards)
    server = AppServer(app, bind("127.0.0.1", 0), limits=limits)
    await server.start()
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    try:
        yield host, int(port)
    finally:
        await server.stop()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        assert self.headers["content-type"] == "application/json", self.headers
        error = json.loads(self.body)["error"]
        assert error["code"] == self.status
        assert isinstance(error["message"], str) and error["message"]
        return dict(error)


def parse(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body)


async def exchange(address: tuple[str, int], data: bytes, timeout: float = 5.0) -> Answer:
    """Send ``data`` on a new connection and read until the proxy closes it."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(data)
        await writer.drain()
        return parse(await asyncio.wait_for(reader.read(), timeout))
    finally:
        writer.close()


async def read_until_closed(reader: asyncio.StreamReader, timeout: float) -> bytes:
    return await asyncio.wait_for(reader.read(), timeout)


def post(path: str, body: bytes, *, key: str | None = None, extra: str = "") -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n{auth}"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    )
    return head.encode() + body


# --- 1. the request head is bounded -------------------------------------------------------------


async def test_a_head_of_endless_short_lines_is_431_and_closed(fake: FakeUpstream) -> None:
    # The probe: 200 MB of short header lines to /health took the proxy from 72 MB to 3 GB. Here
    # up to 4 MB are offered; the proxy must answer 431 and close long before they are sent.
    limits = ConnectionLimits(max_header_lines=1_000_000)  # the byte cap alone
    async with proxy(fake, limits) as address:
        reader, writer = await asyncio.open_connection(*address)
        answered = asyncio.create_task(read_until_closed(reader, 10))
        writer.write(b"GET /health HTTP/1.1\r\nHost: proxy\r\n")
        lines = (b"X-Pad: " + b"a" * 25 + b"\r\n") * 512
        sent = 0
        with contextlib.suppress(ConnectionError):
            while sent < 4 * 2**20 and not answered.done():
                writer.write(lines)
                await writer.drain()
                sent += len(lines)
                await asyncio.sleep(0.002)
        answer = parse(await answered)
        writer.close()
    assert answer.status == 431
    assert answer.headers["connection"] == "close"
    error = answer.error()
    assert error["metadata"] == {"error_type": "invalid_request", "max_head_bytes": 65536}
    assert "larger than 65536 bytes" in error["message"]
    assert sent < 2**20


async def test_one_huge_header_value_is_431(fake: FakeUpstream) -> None:
    async with proxy(fake) as address:
        value = b"v" * (200 * 1024)
        answer = await exchange(address, b"GET /health HTTP/1.1\r\nX-Big: " + value + b"\r\n\r\n")
    assert answer.status == 431
    assert "max_head_bytes" in answer.error()["metadata"]


async def test_too_many_header_lines_is_431(fake: FakeUpstream) -> None:
    async with proxy(fake, ConnectionLimits(max_header_lines=20)) as address:
        lines = [b"X-%d: 1\r\n" % number for number in range(21)]
        many = await exchange(address, b"GET /health HTTP/1.1\r\n" + b"".join(lines) + b"\r\n")
        few = await exchange(address, b"GET /health HTTP/1.1\r\n" + b"".join(lines[2:]) + CLOSE)
    assert many.status == 431
    assert many.error()["metadata"]["max_header_lines"] == 20
    assert "more than 20 header lines" in many.error()["message"]
    assert few.status == 200


async def test_a_long_url_is_414(fake: FakeUpstream) -> None:
    async with proxy(fake) as address:
        url = b"/health?" + b"q" * 9000
        answer = await exchange(address, b"GET " + url + b" HTTP/1.1\r\nHost: p\r\n\r\n")
        fits = await exchange(address, b"GET /health?" + b"q" * 7000 + b" HTTP/1.1\r\n" + CLOSE)
    assert answer.status == 414
    assert answer.error()["metadata"]["max_url_bytes"] == 8192
    assert fits.status == 200


# --- 2. read timeouts, a cap on connections, slots taken once the body is in --------------------


async def test_a_trickled_head_is_408_after_header_timeout(fake: FakeUpstream) -> None:
    async with proxy(fake, ConnectionLimits(header_timeout=0.5)) as address:
        reader, writer = await asyncio.open_connection(*address)
        started = time.monotonic()
        writer.write(b"GET /health HTTP/1.1\r\n")
        for _ in range(40):  # one header line every 0.1 s, up to 4 s
            if reader.at_eof() or reader._buffer:  # type: ignore[attr-defined]
                break
            writer.write(b"X-Slow: 1\r\n")
            await asyncio.sleep(0.1)
        answer = parse(await read_until_closed(reader, 5))
        waited = time.monotonic() - started
        writer.close()
        # A connection that sends nothing at all is closed as well.
        silent_reader, silent = await asyncio.open_connection(*address)
        silent_answer = parse(await read_until_closed(silent_reader, 5))
        silent.close()
    assert answer.status == 408
    assert answer.error()["metadata"]["header_timeout"] == 0.5
    assert waited < 3.0
    assert silent_answer.status == 408


async def test_a_trickled_body_is_408_after_body_timeout(fake: FakeUpstream) -> None:
    async with proxy(fake, ConnectionLimits(body_timeout=0.5)) as address:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(post("/v1/chat/completions", b"{")[:-1].replace(b"Length: 1", b"Length: 1000"))
        for _ in range(40):
            if reader.at_eof() or reader._buffer:  # type: ignore[attr-defined]
                break
            writer.write(b" ")
            await asyncio.sleep(0.1)
        answer = parse(await read_until_closed(reader, 5))
        writer.close()
        # The proxy still serves the next client.
        after = await exchange(address, post("/v1/chat/completions", json.dumps(CHAT).encode()))
    assert answer.status == 408
    assert answer.error()["metadata"] == {"error_type": "timeout", "body_timeout": 0.5}
    assert after.status == 200


async def test_connections_beyond_max_connections_get_503_at_once(fake: FakeUpstream) -> None:
    async with proxy(fake, ConnectionLimits(max_connections=5)) as address:
        held = [await asyncio.open_connection(*address) for _ in range(5)]
        await asyncio.sleep(0.1)
        refused = await exchange(address, b"GET /health HTTP/1.1\r\n\r\n")
        for _, writer in held:
            writer.close()
        await asyncio.sleep(0.2)
        served = await exchange(address, b"GET /health HTTP/1.1\r\n" + CLOSE)
    assert refused.status == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.error()["metadata"]["max_connections"] == 5
    assert served.status == 200


async def test_trickling_bodies_hold_no_concurrency_slot(fake: FakeUpstream) -> None:
    # The probe: with max_concurrent=4, one key's 4 POSTs of Content-Length 1000 sending a byte
    # every 10 s got every other key 429 for as long as it liked.
    keys = ("key-mallory-1", "key-alice-22")
    guards = GuardConfig(api_keys=keys, max_concurrent=4, max_concurrent_per_key=4)
    async with proxy(fake, guards=guards) as address:
        trickling = []
        for _ in range(4):
            reader, writer = await asyncio.open_connection(*address)
            head = post("/v1/chat/completions", b"", key=keys[0])
            writer.write(head.replace(b"Content-Length: 0", b"Content-Length: 1000") + b"{")
            trickling.append((reader, writer))
        await asyncio.sleep(0.3)
        others = [
            await exchange(address, post("/v1/chat/completions", json.dumps(CHAT).encode(), key=k))
            for k in keys
        ]
        for _, writer in trickling:
            writer.close()
    assert [answer.status for answer in others] == [200, 200]


async def test_the_slot_is_taken_once_the_body_is_in(fake: FakeUpstream) -> None:
    fake.gate = asyncio.Event()
    guards = GuardConfig(max_concurrent=1)
    async with proxy(fake, guards=guards) as address:
        body = json.dumps(CHAT).encode()
        first = asyncio.create_task(exchange(address, post("/v1/chat/completions", body)))
        await wait_until(lambda: bool(fake.requests))
        second = await exchange(address, post("/v1/chat/completions", body))
        fake.gate.set()
        assert (await first).status == 200
    assert second.status == 429
    assert second.error()["metadata"]["reason"] == "concurrency"


async def test_keep_alive_and_pipelined_requests_still_work(fake: FakeUpstream) -> None:
    async with proxy(fake, ConnectionLimits(header_timeout=1, body_timeout=1)) as address:
        reader, writer = await asyncio.open_connection(*address)
        body = json.dumps(CHAT).encode()
        one = post("/v1/chat/completions", body).replace(b"Connection: close\r\n", b"")
        writer.write(one + b"GET /health HTTP/1.1\r\nHost: p\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1.5)  # longer than both timeouts: they apply to reading, not idling
        writer.write(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
        raw = await read_until_closed(reader, 5)
        writer.close()
    assert raw.count(b"HTTP/1.1 200 OK") == 3


# --- 3. parsing is bounded before it starts -----------------------------------------------------


def tiny_messages(count: int) -> bytes:
    return json.dumps({**CHAT, "messages": [{"role": "user", "content": "hi"}] * count}).encode()


async def test_a_body_of_many_tiny_values_is_413_before_it_is_parsed(fake: FakeUpstream) -> None:
    # The probe: 10 MB of 200k tiny messages held the event loop ~0.7 s. Here 1.4 MB, 40k.
    async with proxy(fake) as address:
        answer = await exchange(address, post("/v1/chat/completions", tiny_messages(40_000)))
        tokenize = await exchange(address, post("/tokenize", tiny_messages(40_000)))
    assert answer.status == 413
    error = answer.error()
    assert error["metadata"] == {"error_type": "payload_too_large", "max_json_values": 50_000}
    assert "proxy.max_json_values" in error["message"]
    assert tokenize.status == 413
    assert not fake.requests


async def test_too_many_messages_is_400_naming_the_limit(fake: FakeUpstream) -> None:
    async with proxy(fake) as address:
        answer = await exchange(address, post("/v1/chat/completions", tiny_messages(3000)))
    assert answer.status == 400
    error = answer.error()
    assert error["metadata"]["max_messages"] == 2048
    assert "3000 messages; at most 2048" in error["message"]


async def test_deep_nesting_is_400(fake: FakeUpstream) -> None:
    nested = "[" * 100 + "]" * 100
    body = json.dumps(CHAT)[:-1] + f', "extra": {nested}}}'
    async with proxy(fake) as address:
        answer = await exchange(address, post("/v1/chat/completions", body.encode()))
        shallow = body.replace("[" * 100, "[" * 30).replace("]" * 100, "]" * 30)
        fine = await exchange(address, post("/v1/chat/completions", shallow.encode()))
    assert answer.status == 400
    assert answer.error()["metadata"]["max_json_depth"] == 64
    assert fine.status == 200


async def test_limits_are_settable(fake: FakeUpstream) -> None:
    bounds = BodyBounds(max_json_values=100_000, max_messages=50_000)
    async with proxy(fake, body_bounds=bounds) as address:
        answer = await exchange(address, post("/v1/chat/completions", tiny_messages(10_000)))
    assert answer.status == 200


def test_values_are_counted_outside_strings_only() -> None:
    bounds = BodyBounds(max_json_values=10)
    # One long string full of JSON punctuation and escapes is one value.
    text = "a, b: [c] {d} " * 10_000 + '"\\'  # two escapes
    check_shape(json.dumps({"messages": [{"role": "user", "content": text}]}).encode(), bounds)
    values = json.dumps({"a": [1, 2, 3, 4, 5, 6, 7, 8]}).encode()  # 11 values
    with pytest.raises(ProxyError) as raised:
        check_shape(values, bounds)
    assert raised.value.status == 413
    check_shape(values, BodyBounds(max_json_values=11))


# --- 13. HTTP framing errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("framing", "reason"),
    [
        (
            b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding can't be present with Content-Length",
        ),
        (b"Content-Length: 5\r\nContent-Length: 6\r\n", "Duplicate Content-Length"),
    ],
)
async def test_framing_errors_get_the_json_error(
    fake: FakeUpstream, framing: bytes, reason: str
) -> None:
    async with proxy(fake) as address:
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: p\r\n" + framing + b"\r\n"
        answer = await exchange(address, head + b"0\r\n\r\n")
    assert answer.status == 400
    assert answer.headers["connection"] == "close"
    error = answer.error()
    assert error["message"] == f"the request is not valid HTTP/1.1: {reason}"
    assert not fake.requests


# --- settings -----------------------------------------------------------------------------------


def test_the_proxy_table_sets_every_limit() -> None:
    section = ProxySection(
        max_connections=10,
        header_timeout=2,
        body_timeout=3,
        max_head_bytes="16K",
        max_header_lines=30,
        max_url_bytes=1000,
        max_json_values=7,
        max_json_depth=8,
        max_messages=9,
    )
    profile = Profile.model_validate({"model": {"source": "m"}, "proxy": section.model_dump()})
    assert connection_limits(profile) == ConnectionLimits(
        max_head_bytes=16384,
        max_header_lines=30,
        max_url_bytes=1000,
        header_timeout=2,
        body_timeout=3,
        max_connections=10,
    )
    assert connection_limits(Profile.model_validate({"model": {"source": "m"}})) == (
        ConnectionLimits()
    )
