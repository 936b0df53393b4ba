"""The proxy's ASGI app: ``create_app(config, state)``.

Routes live in one module each and are included here in order: the proxy's own routes first
(health, model listing, completions, generation stats), the forwarding catch-all last. Auth, rate
limits and metrics are pure-ASGI middleware and routers installed by ``guards``; generation records
reach them through ``ProxyContext.observers``. FastAPI's OpenAPI document is at ``/openapi.json``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from infer_cli.proxy.context import GenerationObserver, ProxyConfig, ProxyContext
from infer_cli.proxy.openrouter.generations import GenerationStore
from infer_cli.proxy.openrouter.listing import ProviderInfo, provider_info
from infer_cli.proxy.state import UpstreamState

if TYPE_CHECKING:
    import fastapi

    from infer_cli.proxy.guards.middleware import GuardConfig

__all__ = ["ProviderInfo", "ProxyConfig", "create_app", "provider_info"]

log = logging.getLogger("infer.proxy")


def create_app(
    config: ProxyConfig,
    state: UpstreamState,
    *,
    provider: ProviderInfo | None = None,
    observers: Sequence[GenerationObserver] = (),
    guards: GuardConfig | None = None,
) -> fastapi.FastAPI:
    """The proxy in front of the engine described by ``state`` (read per request, never written).

    ``provider`` is the served model's listing and prices (:func:`provider_info` of the profile);
    without it the listing names ``state.model`` only and every price is 0. ``observers`` get the
    record of every finished generation, after the generation store.
    """
    from fastapi import FastAPI

    from infer_cli import __version__
    from infer_cli.proxy.guards.middleware import GuardConfig, install_guards
    from infer_cli.proxy.routes.completions import (
        CompletionsFastPath,
        completion_handlers,
        completions_router,
    )
    from infer_cli.proxy.routes.forward import forward_router
    from infer_cli.proxy.routes.handlers import install_error_handlers
    from infer_cli.proxy.routes.health import health_router
    from infer_cli.proxy.routes.models import models_router
    from infer_cli.proxy.routes.openapi import install as install_openapi
    from infer_cli.proxy.routes.stats import stats_router
    from infer_cli.proxy.upstream import client as upstream

    store = GenerationStore(config.generations_kept)
    context = ProxyContext(
        config=config,
        state=state,
        provider=provider,
        observers=[store, *observers],
        generations=store,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        context.client = upstream.create_client(config)
        try:
            yield
        finally:
            client, context.client = context.client, None
            await client.aclose()

    app = FastAPI(
        title="infer proxy",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        redirect_slashes=False,  # a redirect would be a second route to the same handler; 404
    )
    app.state.proxy = context
    install_error_handlers(app)
    install_openapi(app)  # errors documented in the proxy's shape, no FastAPI 422
    # Before the guards, so that it runs inside them (each middleware added wraps the ones before).
    app.add_middleware(CompletionsFastPath, handlers=completion_handlers(context))
    install_guards(app, context, guards or GuardConfig())
    app.include_router(health_router(context))
    app.include_router(models_router(context))
    app.include_router(completions_router(context))
    app.include_router(stats_router(context))
    app.include_router(forward_router(context))  # /tokenize, /detokenize; nothing else is served
    return app
