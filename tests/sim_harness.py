"""A real proxy (uvicorn, real sockets) in front of infer's simulated engine, for the tests of what
the proxy counts and refuses (issue 11): the engine tokenizes, generates and counts for real."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI

from infer_cli.proxy.app import ProxyConfig, create_app
from infer_cli.proxy.guards.middleware import GuardConfig, Guards
from infer_cli.proxy.openrouter.generations import GenerationRecord
from infer_cli.proxy.openrouter.listing import ProviderInfo
from infer_cli.proxy.openrouter.pricing import Prices
from infer_cli.proxy.state import UpstreamState
from infer_cli.sim import SimSettings, running
from infer_cli.wire.server import AppServer, bind

ENGINE_KEY = "sim-internal-key"
MODEL = "sim-model"
PRICES = Prices(prompt=Decimal("0.000001"), completion=Decimal("0.000002"))


@dataclass
class SimProxy:
    url: str
    engine_url: str
    app: FastAPI
    records: list[GenerationRecord] = field(default_factory=list)

    @property
    def guards(self) -> Guards:
        guards = self.app.state.guards
        assert isinstance(guards, Guards)
        return guards

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        kwargs.setdefault("timeout", 20)
        if key is not None:
            kwargs["headers"] = {"Authorization": f"Bearer {key}", **kwargs.get("headers", {})}
        return httpx.AsyncClient(base_url=self.url, trust_env=False, **kwargs)


@asynccontextmanager
async def sim_proxy(
    guards: GuardConfig | None = None,
    *,
    max_output_length: int | None = None,
    config: ProxyConfig | None = None,
    **settings: Any,
) -> AsyncIterator[SimProxy]:
    """The simulated engine (``settings``, tokens as fast as possible unless said) behind a proxy
    with ``guards``, listing the engine's context length and ``max_output_length``."""
    settings.setdefault("ms_per_output_token", 0)
    sim = SimSettings(**settings)
    async with running(sim, api_key=ENGINE_KEY) as engine_url:
        state = UpstreamState(url=engine_url, api_key=ENGINE_KEY, model=sim.model, status="ready")
        provider = ProviderInfo(
            model=sim.model,
            context_length=sim.context_length,
            max_output_length=max_output_length,
            prices=PRICES,
        )
        records: list[GenerationRecord] = []
        app = create_app(
            config or ProxyConfig(),
            state,
            provider=provider,
            observers=[records.append],
            guards=guards or GuardConfig(engine_metrics=False),
        )
        server = AppServer(app, bind("127.0.0.1", 0))
        await server.start()
        try:
            yield SimProxy(server.url, engine_url, app, records)
        finally:
            await server.stop()
