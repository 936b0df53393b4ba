"""``GET /api/v1/generation?id=...``: the stats of one recent generation, in OpenRouter's field
names (times in milliseconds, as OpenRouter gives them).

A caller sees only the generations of its own key: another key's id answers the same 404 as an
unknown one (so ids cannot be probed). Without keys (an open proxy) every generation is visible.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import JSONResponse

from infer_cli.proxy.context import ProxyContext
from infer_cli.proxy.errors import ProxyError
from infer_cli.proxy.openrouter.generations import GenerationRecord
from infer_cli.proxy.openrouter.pricing import number
from infer_cli.proxy.openrouter.schemas import GenerationStatsResponse
from infer_cli.proxy.routes.openapi import KEYED, errors

PROVIDER_NAME = "infer"


def stats_router(context: ProxyContext) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/api/v1/generation",
        summary="Stats of a recent generation",
        response_model=None,
        responses={
            200: {"model": GenerationStatsResponse},
            **errors(400, 404, *KEYED, described={404: "Unknown or forgotten id"}),
        },
    )
    async def generation(
        request: Request,
        id: str = Query(description="The completion id the client received"),
    ) -> JSONResponse:
        record = context.generations.get(id)
        if record is None or not visible_to(record, caller_key_id(request)):
            raise ProxyError(
                404,
                f"no recent generation with id '{id}'",
                metadata={"kept": context.generations.capacity},
            )
        return JSONResponse({"data": generation_stats(record)})

    return router


def caller_key_id(request: Request) -> str | None:
    """The key id the auth middleware set for this request (None: the proxy is open)."""
    state = request.scope.get("state")
    key_id = state.get("key_id") if isinstance(state, dict) else None
    return key_id if isinstance(key_id, str) else None


def visible_to(record: GenerationRecord, key_id: str | None) -> bool:
    """Whether the caller with ``key_id`` may read ``record``: its own, or any on an open proxy."""
    return key_id is None or record.key_id == key_id


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
        **_NOT_TRACKED,
        "is_byok": False,
        "origin": "",
        "data_region": DATA_REGION,
    }


DATA_REGION = "local"
"""OpenRouter's ``data_region`` ("global", "europe", "us") names where its routing kept a
request; a self-hosted endpoint keeps every request on its own machine."""

# Fields of OpenRouter's public generation record that a self-hosted proxy has no source for
# (apps, BYOK, presets, workspaces, moderation, web search, media, routers, upstream retries):
# null, as OpenRouter itself gives them when they do not apply, never made up.
_NOT_TRACKED: dict[str, None] = dict.fromkeys(
    (
        "app_id",
        "cache_discount",
        "external_user",
        "http_referer",
        "user_agent",
        "moderation_latency",
        "native_tokens_reasoning",
        "native_tokens_completion_images",
        "num_fetches",
        "num_media_prompt",
        "num_media_completion",
        "num_input_audio_prompt",
        "num_search_results",
        "preset_id",
        "provider_responses",
        "router",
        "service_tier",
        "upstream_id",
        "web_search_engine",
        "workspace_id",
    )
)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
