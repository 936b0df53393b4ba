"""``GET /health``: is the proxy serving, and is the engine behind it ready.

It is open to everyone by default (load balancers and OpenRouter poll it), so it says what state
the engine is in and why in words, never an internal address, port or key.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter
from starlette.responses import JSONResponse

from infer_cli import __version__
from infer_cli.proxy.context import ProxyContext
from infer_cli.proxy.errors import RETRY_AFTER_SECONDS
from infer_cli.proxy.openrouter.schemas import Health
from infer_cli.proxy.routes.openapi import errors
from infer_cli.proxy.state import UpstreamState, scrub


def retry_after(state: UpstreamState) -> str:
    """Whole seconds until the engine is expected back (the ``Retry-After`` header's value)."""
    if state.retry_after is None:
        return str(RETRY_AFTER_SECONDS)
    return str(max(1, math.ceil(state.retry_after)))


def health_body(context: ProxyContext) -> dict[str, Any]:
    state = context.state
    body: dict[str, Any] = {
        "status": "ok" if state.ready else "unavailable",
        "model": state.model,
        "profile": context.config.profile,
        "engine": state.status,
        "uptime": round(state.uptime(), 3),
        "version": __version__,
        "restarts": state.restart_count,
    }
    if state.replicas:
        ready = [name for name, value in state.replicas.items() if value == "ready"]
        body["replicas"] = {
            "ready": len(ready),
            "total": len(state.replicas),
            "each": dict(state.replicas),
        }
    if state.workers:
        body["workers"] = {
            "ready": sum(state.workers),
            "total": len(state.workers),
            # by position in replicas.workers: their addresses are the operator's to know
            "unreachable": [f"worker-{i}" for i, up in enumerate(state.workers) if not up],
        }
    if state.last_failure_at is not None:
        body["last_restart"] = {"reason": scrub(state.last_failure), "at": state.last_failure_at}
    if not state.ready:
        body["detail"] = scrub(state.detail)
    return body


def health_router(context: ProxyContext) -> APIRouter:
    router = APIRouter()

    @router.head("/health", include_in_schema=False)
    @router.get(
        "/health",
        summary="Proxy and engine health",
        response_model=None,
        responses={
            200: {"model": Health, "description": "The engine is ready"},
            503: {
                "model": Health,
                "description": "The engine starts, restarts, has failed or is stopped: `detail`"
                " says why; `Retry-After` when to ask again",
                "headers": {"Retry-After": {"schema": {"type": "string"}}},
            },
            **errors(401, described={401: "No or an unknown API key, with proxy.protect_health"}),
        },
    )
    async def health() -> JSONResponse:
        body = health_body(context)
        if context.state.ready:
            return JSONResponse(body)
        return JSONResponse(
            body, status_code=503, headers={"Retry-After": retry_after(context.state)}
        )

    return router
