"""``GET /api/v1/generation?id=...``: the stats of one recent generation, in OpenRouter's field
names (times in milliseconds, as OpenRouter gives them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query
from starlette.responses import JSONResponse

from infer_cli.proxy.context import ProxyContext
from infer_cli.proxy.errors import ProxyError
from infer_cli.proxy.generations import GenerationRecord
from infer_cli.proxy.pricing import number
from infer_cli.proxy.schemas import ErrorResponse, GenerationStatsResponse

PROVIDER_NAME = "infer"


def stats_router(context: ProxyContext) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/api/v1/generation",
        summary="Stats of a recent generation",
        response_model=None,
        responses={
            200: {"model": GenerationStatsResponse},
            404: {"model": ErrorResponse, "description": "Unknown or forgotten id"},
        },
    )
    async def generation(
        id: str = Query(description="The completion id the client received"),
    ) -> JSONResponse:
        record = context.generations.get(id)
        if record is None:
            raise ProxyError(
                404,
                f"no recent generation with id '{id}'",
                metadata={"kept": context.generations.capacity},
            )
        return JSONResponse({"data": generation_stats(record)})

    return router


def generation_stats(record: GenerationRecord) -> dict[str, Any]:
    latency = _ms(record.latency)
    cost = number(record.cost)
    return {
        "id": record.id,
        "model": record.model,
        "created_at": datetime.fromtimestamp(record.created, UTC).isoformat(),
        "streamed": record.streamed,
        "cancelled": record.cancelled,
        "total_cost": cost,
        "usage": cost,
        "upstream_inference_cost": cost,
        "latency": latency,
        "generation_time": latency,
        "time_to_first_token": None if record.ttft is None else _ms(record.ttft),
        "tokens_prompt": record.prompt_tokens,
        "tokens_completion": record.completion_tokens,
        "native_tokens_prompt": record.prompt_tokens,
        "native_tokens_completion": record.completion_tokens,
        "native_tokens_cached": record.cached_tokens,
        "finish_reason": record.finish_reason,
        "native_finish_reason": record.native_finish_reason,
        "status": record.status,
        "error": record.error,
        "api_type": "completions",
        "provider_name": PROVIDER_NAME,
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
