"""``GET /health``: is the proxy serving, and is the engine behind it ready."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import JSONResponse

from infer_cli import __version__
from infer_cli.proxy.context import ProxyContext
from infer_cli.proxy.errors import RETRY_AFTER_SECONDS


def health_router(context: ProxyContext) -> APIRouter:
    router = APIRouter()

    @router.head("/health", include_in_schema=False)
    @router.get("/health", summary="Proxy and engine health")
    async def health() -> JSONResponse:
        state = context.state
        body: dict[str, Any] = {
            "status": "ok" if state.ready else "unavailable",
            "model": state.model,
            "profile": context.config.profile,
            "engine": state.status,
            "uptime": round(state.uptime(), 3),
            "version": __version__,
        }
        if state.ready:
            return JSONResponse(body)
        body["detail"] = state.detail
        return JSONResponse(
            body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        )

    return router
