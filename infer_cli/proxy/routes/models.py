"""``GET /api/v1/models`` (OpenRouter's provider listing) and ``GET /v1/models`` (OpenAI's form).

Served by the proxy itself from the profile, also while the engine starts. When the profile does
not give the context length, the engine's ``max_model_len`` is read once it is ready.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import httpx
from fastapi import APIRouter, Query
from starlette.responses import JSONResponse

from infer_cli.proxy.context import ProxyContext
from infer_cli.proxy.openrouter import listing
from infer_cli.proxy.openrouter.schemas import OpenAIModelList, ProviderListing
from infer_cli.proxy.routes.openapi import KEYED, errors

log = logging.getLogger("infer.proxy")


def models_router(context: ProxyContext) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/api/v1/models",
        summary="OpenRouter provider listing",
        response_model=None,
        responses={200: {"model": ProviderListing}, **errors(400, *KEYED)},
    )
    async def provider_models(
        schema_version: Literal["2.4"] | None = Query(
            default=None, description="'2.4' for OpenRouter's newer model document format"
        ),
    ) -> JSONResponse:
        context_length = await context_length_of(context)
        if schema_version == listing.SCHEMA_VERSION:
            return JSONResponse(listing.schema_v24_listing(context.info, context_length))
        return JSONResponse(listing.flat_listing(context.info, context_length))

    @router.get(
        "/v1/models",
        summary="OpenAI model list",
        response_model=None,
        responses={200: {"model": OpenAIModelList}, **errors(*KEYED)},
    )
    async def openai_models() -> JSONResponse:
        context_length = await context_length_of(context)
        return JSONResponse(listing.openai_listing(context.info, context_length))

    return router


async def context_length_of(context: ProxyContext) -> int | None:
    """The profile's context length, else the engine's (read once, when it is ready)."""
    known = context.info.context_length or context.engine_context_length
    if known is not None:
        return known
    state = context.state
    if not state.ready or state.url is None or context.client is None:
        return None
    headers = {"authorization": f"Bearer {state.api_key}"} if state.api_key else {}
    try:
        response = await context.client.get(
            state.url.rstrip("/") + "/v1/models", headers=headers, timeout=5.0
        )
        length = _max_model_len(response.json(), state.model)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        log.debug("cannot read the engine's context length: %s", exc)
        return None
    context.engine_context_length = length
    return length


def _max_model_len(body: Any, model: str) -> int | None:
    data = body.get("data") if isinstance(body, dict) else None
    for entry in data if isinstance(data, list) else []:
        if isinstance(entry, dict) and entry.get("id") == model:
            value = entry.get("max_model_len")
            if isinstance(value, int) and value > 0:
                return value
    return None
