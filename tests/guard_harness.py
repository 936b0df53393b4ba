"""Shared by the tests of the proxy's guards: a real proxy with guards in front of the fake
upstream, and a reader for the Prometheus text it serves."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse

from infer_cli.proxy.app import ProxyConfig, create_app
from infer_cli.proxy.guards.middleware import GuardConfig, Guards
from infer_cli.proxy.state import EngineStatus, UpstreamState
from infer_cli.wire.server import AppServer, bind
from tests.fake_upstream import FakeUpstream

KEY = "internal-key"
CHAT = {"model": "fake/model", "messages": [{"role": "user", "content": "hi"}]}
STREAM = {**CHAT, "stream": True}


@dataclass
class Served:
    url: str
    app: FastAPI
    state: UpstreamState

    @property
    def guards(self) -> Guards:
        guards = self.app.state.guards
        assert isinstance(guards, Guards)
        return guards


@asynccontextmanager
async def serve(
    fake: FakeUpstream | None,
    guards: GuardConfig | None = None,
    *,
    status: EngineStatus = "ready",
    upstream_url: str | None = None,
    setup: Callable[[FastAPI], None] | None = None,
    **config: Any,
) -> AsyncIterator[Served]:
    url = upstream_url or (fake.url if fake is not None else None)
    state = UpstreamState(url=url, api_key=KEY, model="fake/model", status=status)
    app = create_app(ProxyConfig(**config), state, guards=guards)
    if setup is not None:
        setup(app)
    server = AppServer(app, bind("127.0.0.1", 0))
    await server.start()
    try:
        yield Served(server.url, app, state)
    finally:
        await server.stop()


def client(base: str, key: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
    kwargs.setdefault("timeout", 10)
    if key is not None:
        kwargs["headers"] = {"Authorization": f"Bearer {key}", **kwargs.get("headers", {})}
    return httpx.AsyncClient(base_url=base, trust_env=False, **kwargs)


def assert_error(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str)
    assert error["code"] == status
    assert error["metadata"]["error_type"] == error_type
    return dict(error)


def record_kwargs(**overrides: Any) -> dict[str, Any]:
    """Fields of a :class:`GenerationRecord`, with test defaults."""
    fields: dict[str, Any] = {
        "id": "chatcmpl-test",
        "model": "fake/model",
        "route": "/api/v1/chat/completions",
        "key_id": None,
        "streamed": False,
        "cancelled": False,
        "status": 200,
        "finish_reason": "stop",
        "native_finish_reason": "stop",
        "prompt_tokens": 5,
        "completion_tokens": 4,
        "cached_tokens": 0,
        "cost": Decimal("0"),
        "created": time.time(),
        "ttft": 0.05,
        "latency": 0.2,
        "error": None,
    }
    fields.update(overrides)
    return fields


def add_generate_route(app: FastAPI, **record: Any) -> None:
    """``POST /test/generate``: a stand-in for a completion route that ends by handing a
    :class:`GenerationRecord` to the observers, with the key id the auth middleware set."""
    from infer_cli.proxy.openrouter.generations import GenerationRecord

    async def generate(request: Request) -> JSONResponse:
        body = await request.json() if await request.body() else {}
        fields = record_kwargs(key_id=request.state.key_id, **record)
        fields.update(body)
        generation = GenerationRecord(**fields)
        for observer in app.state.proxy.observers:
            observer(generation)
        return JSONResponse({"id": generation.id})

    app.add_api_route("/test/generate", generate, methods=["POST"])


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Samples of a Prometheus text exposition: (name, labels) -> value. Strict about syntax."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if not line or line.startswith("#"):
            assert not line or re.match(r"# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* ", line), line
            continue
        match = _SAMPLE.match(line)
        assert match is not None, line
        name, labels, value = match.groups()
        pairs = frozenset(_LABEL.findall(labels or ""))
        key = (name, pairs)
        assert key not in samples, f"duplicate sample {line}"
        samples[key] = float(value)
    return samples


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def total(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(
        value for (found, pairs), value in samples.items() if found == name and wanted <= pairs
    )


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_post(base: str, path: str, payload: dict[str, Any]) -> RawResponse:
    """One HTTP/1.1 POST on its own connection, without a client library: for hammering the
    proxy with hundreds of concurrent requests cheaply (httpx is ten times slower at this)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    data = json.dumps(payload).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + data)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head_bytes, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(int(status_line.split()[1]), headers, body)
