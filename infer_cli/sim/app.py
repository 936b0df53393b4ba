"""The simulated engine's ASGI app: ``create_app(settings)``, with vLLM's routes.

``/health``, ``/version``, ``/metrics``, ``/tokenize``, ``/v1/models``, ``/v1/chat/completions`` and
``/v1/completions``. With an API key, ``/v1/*`` wants ``Authorization: Bearer KEY`` and answers
vLLM's ``{"error": "Unauthorized"}`` otherwise; ``/health`` and ``/metrics`` stay open, as in vLLM.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING

from infer_cli.config.sim import SimSettings
from infer_cli.sim.engine import SimEngine

if TYPE_CHECKING:
    import fastapi
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["SimSettings", "create_app"]

log = logging.getLogger("infer.sim")


def create_app(
    settings: SimSettings | None = None, *, api_key: str | None = None
) -> fastapi.FastAPI:
    """A simulated vLLM serving ``settings.model``; ``app.state.engine`` is its :class:`SimEngine`.

    ``api_key`` (``vllm serve --api-key``) protects ``/v1``; None leaves it open. The app reads no
    environment: ``python -m infer_cli.sim`` passes ``VLLM_API_KEY`` here.
    """
    from fastapi import FastAPI

    from infer_cli import __version__
    from infer_cli.sim.routes import install_error_handlers, sim_router

    engine = SimEngine(settings)
    app = FastAPI(
        title="infer simulated engine",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.engine = engine
    install_error_handlers(app)
    app.include_router(sim_router(engine))
    if api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)
    return app


class ApiKeyMiddleware:
    """vLLM's ``--api-key`` check: ``/v1`` paths need ``Authorization: Bearer KEY``."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] != "OPTIONS"
            and (scope["path"] == "/v1" or scope["path"].startswith("/v1/"))
            and not self._authorized(scope)
        ):
            from starlette.responses import JSONResponse

            await JSONResponse({"error": "Unauthorized"}, status_code=401)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                return hmac.compare_digest(value, self._expected)
        return False
