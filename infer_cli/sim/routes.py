"""The simulated engine's routes and error handlers (imported by ``create_app`` only)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from infer_cli import __version__
from infer_cli.sim import protocol
from infer_cli.sim.engine import SimEngine
from infer_cli.sim.protocol import SimError
from infer_cli.sim.responses import GenerationResponse
from infer_cli.wire import error_handlers

log = logging.getLogger("infer.sim")

OWNED_BY = "infer-sim"
"""``owned_by`` of the served model: says that it is simulated (vLLM says ``vllm``)."""

METRICS_MEDIA_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def sim_router(engine: SimEngine) -> APIRouter:
    settings = engine.settings
    router = APIRouter()

    @router.get("/health", include_in_schema=False)
    async def health() -> Response:
        return Response(status_code=200)

    @router.get("/version", include_in_schema=False)
    async def version() -> dict[str, Any]:
        return {"version": __version__, "simulated": True}

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return PlainTextResponse(engine.render_metrics(), media_type=METRICS_MEDIA_TYPE)

    @router.get("/v1/models", include_in_schema=False)
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": settings.model,
                    "object": "model",
                    "created": engine.created,
                    "owned_by": OWNED_BY,
                    "root": settings.model,
                    "parent": None,
                    "max_model_len": settings.context_length,
                    "simulated": True,
                }
            ],
        }

    async def generate(request: Request, kind: protocol.Kind) -> Response:
        parsed = protocol.parse_generation(kind, await request.body(), settings)
        if engine.draw_error():
            raise SimError(500, "simulated engine error (error_rate)")
        return GenerationResponse(engine, parsed)

    @router.post("/v1/chat/completions", include_in_schema=False, response_model=None)
    async def chat_completions(request: Request) -> Response:
        return await generate(request, "chat")

    @router.post("/v1/completions", include_in_schema=False, response_model=None)
    async def completions(request: Request) -> Response:
        return await generate(request, "completion")

    @router.post("/tokenize", include_in_schema=False)
    async def tokenize(request: Request) -> dict[str, Any]:
        return protocol.parse_tokenize(await request.body(), settings)

    @router.post("/detokenize", include_in_schema=False)
    async def detokenize(request: Request) -> dict[str, Any]:
        return protocol.parse_detokenize(await request.body(), settings)

    return router


def install_error_handlers(app: FastAPI) -> None:
    """Every error in vLLM's shape, Starlette's own 404 and 405 included."""
    error_handlers.install_error_handlers(
        app,
        error_class=SimError,
        error_body=_vllm_error,
        log=log,
        failure="the simulated engine failed; see its log",
    )


def _vllm_error(status: int, message: str, _metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    return protocol.error_body(status, message)
