"""The simulated engine's routes and error handlers (imported by ``create_app`` only)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from infer_cli import __version__
from infer_cli.sim import protocol
from infer_cli.sim.engine import SimEngine
from infer_cli.sim.protocol import SimError
from infer_cli.sim.responses import GenerationResponse

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

    def error(status: int, message: str) -> Response:
        return JSONResponse(protocol.error_body(status, message), status_code=status)

    async def sim_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SimError)
        return JSONResponse(exc.body(), status_code=exc.status)

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return error(exc.status_code, message)

    async def validation_error(_request: Request, exc: Exception) -> Response:
        return error(400, str(exc))

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("failed on %s %s", request.method, request.url.path, exc_info=exc)
        return error(500, "the simulated engine failed; see its log")

    app.add_exception_handler(SimError, sim_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
