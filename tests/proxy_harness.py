"""A real proxy (uvicorn, real sockets) in front of the fake upstream, for the contract tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import openai
from starlette.types import ASGIApp, Receive, Scope, Send

from infer_cli.proxy.app import ProxyConfig, create_app
from infer_cli.proxy.guards.middleware import GuardConfig
from infer_cli.proxy.openrouter.generations import GenerationRecord
from infer_cli.proxy.openrouter.listing import ProviderInfo
from infer_cli.proxy.openrouter.pricing import Prices
from infer_cli.proxy.state import EngineStatus, UpstreamState
from infer_cli.wire.server import AppServer, bind
from tests.fake_upstream import FakeUpstream

KEY = "internal-key"
MODEL = "fake/model"
HF_ID = "Fake/Model-1B-Instruct"
PRICES = Prices(
    prompt=Decimal("0.000001"),
    completion=Decimal("0.000002"),
    input_cache_read=Decimal("0.00000025"),
    request=Decimal("0.0001"),
)
PROVIDER = ProviderInfo(
    model=MODEL,
    aliases=frozenset({HF_ID}),
    name="Fake: Model 1B Instruct",
    description="A fake model for tests",
    hugging_face_id=HF_ID,
    created=1721692800,
    quantization="bf16",
    context_length=8192,
    max_output_length=2048,
    supported_features=("tools", "json_mode"),
    prices=PRICES,
)
CHAT: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
STREAM: dict[str, Any] = {**CHAT, "stream": True}


@dataclass
class Running:
    url: str
    state: UpstreamState
    records: list[GenerationRecord] = field(default_factory=list)
    _clients: dict[str, Any] = field(default_factory=dict)

    def http(self, **kwargs: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        """A client of the proxy: one shared by the proxy's tests (creating one takes ~40 ms),
        or a new one when ``kwargs`` configure it.
        """
        if kwargs:
            kwargs.setdefault("timeout", 10)
            return httpx.AsyncClient(base_url=self.url, trust_env=False, **kwargs)
        if "http" not in self._clients:
            self._clients["http"] = httpx.AsyncClient(
                base_url=self.url, trust_env=False, timeout=10
            )
        return _borrowed(self._clients["http"])

    def sdk(self, prefix: str = "/v1") -> openai.AsyncOpenAI:
        """The ``openai`` SDK pointed at ``prefix`` (shared, like :meth:`http`)."""
        if prefix not in self._clients:
            self._clients[prefix] = openai.AsyncOpenAI(
                base_url=self.url + prefix, api_key="client-key", max_retries=0, timeout=10
            )
        client: openai.AsyncOpenAI = self._clients[prefix]
        return client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close() if isinstance(
                client, openai.AsyncOpenAI
            ) else await client.aclose()


@asynccontextmanager
async def _borrowed(client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    yield client


@asynccontextmanager
async def running_proxy(
    fake: FakeUpstream,
    *,
    status: EngineStatus = "ready",
    upstream_url: str | None = None,
    provider: ProviderInfo | None = PROVIDER,
    api_keys: tuple[str, ...] = (),
    chunk_writer: bool = True,
    **config: Any,
) -> AsyncIterator[Running]:
    """The proxy on a real server. Without ``chunk_writer`` the server's
    :class:`~infer_cli.wire.chunk_writer.ChunkWriter` is hidden from the app, so that streamed
    completions take the relay's loop instead of a splice (what another server, or an ``https://``
    engine, gets)."""
    state = UpstreamState(url=upstream_url or fake.url, api_key=KEY, model=MODEL, status=status)
    running = Running(url="", state=state)
    app = create_app(
        ProxyConfig(**config),
        state,
        provider=provider,
        observers=[running.records.append],
        guards=GuardConfig(api_keys=api_keys, engine_metrics=False),
    )
    server = AppServer(app if chunk_writer else _without_writer(app), bind("127.0.0.1", 0))
    await server.start()
    running.url = server.url
    try:
        yield running
    finally:
        await running.close()
        await server.stop()


def _without_writer(app: ASGIApp) -> ASGIApp:
    async def hidden(scope: Scope, receive: Receive, send: Send) -> None:
        if "extensions" in scope:
            scope = {**scope, "extensions": {}}
        await app(scope, receive, send)

    return hidden


@asynccontextmanager
async def shared_proxy(**config: Any) -> AsyncIterator[tuple[FakeUpstream, Running]]:
    """One fake upstream and one proxy for a whole test module (starting them takes ~0.3 s)."""
    fake = FakeUpstream(api_key=KEY, model=MODEL)
    await fake.start()
    try:
        async with running_proxy(fake, **config) as proxy:
            yield fake, proxy
    finally:
        await fake.stop()


def reset(fake: FakeUpstream, proxy: Running) -> None:
    """Fresh settings for the next test on a shared pair."""
    fake.reset()
    proxy.records.clear()
    proxy.state.status, proxy.state.url, proxy.state.detail = "ready", fake.url, ""


def events_of(raw: bytes) -> list[bytes]:
    """The ``data:`` payloads of an SSE body, in order (comments left out)."""
    blocks = raw.replace(b"\r\n", b"\n").split(b"\n\n")
    return [block[6:] for block in blocks if block.startswith(b"data: ")]
