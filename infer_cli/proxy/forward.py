"""``/v1/{path}`` and ``/api/v1/{path}``: what the proxy does not serve itself goes to the engine.

vLLM answers ``/tokenize`` and ``/detokenize`` at its root, not under ``/v1``: the proxy serves
them at its root too and maps ``/v1/tokenize`` (and ``/api/v1/...``) there, so that clients that
fit prompt lengths (``infer bench``, ``vllm bench serve``) get the engine's own tokenizer.

The handler checks what can be checked before the engine is involved (readiness, path, body size,
JSON), then returns a :class:`~infer_cli.proxy.relay.RelayResponse` that performs the exchange while
it is sent. Routes that the proxy answers itself (model listing, generation stats, ...) are
registered before this router, so they win; this router goes last.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from infer_cli.proxy import errors
from infer_cli.proxy.context import ProxyContext
from infer_cli.proxy.errors import ProxyError
from infer_cli.proxy.relay import RelayResponse
from infer_cli.proxy.state import UpstreamState
from infer_cli.proxy.upstream import UpstreamRequest, request_headers

PREFIXES = ("/v1", "/api/v1")
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
STREAMING_PATHS = frozenset({"chat/completions", "completions"})
"""Endpoints whose ``"stream": true`` answers are event streams that get keep-alive comments."""

ROOT_PATHS = frozenset({"tokenize", "detokenize"})
"""Engine endpoints that live at the engine's root; the proxy serves them at its root and under
its prefixes."""

_PATH_SAFE = "/:@!$&'()*+,;=~"


def forward_router(context: ProxyContext) -> APIRouter:
    router = APIRouter()

    async def forward(request: Request, path: str) -> Response:
        upstream = await build_upstream_request(context, request, path)
        return RelayResponse(
            context.upstream_client(),
            upstream,
            keepalive_interval=context.config.keepalive_interval,
        )

    def at_root(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def forward_root(request: Request) -> Response:
            return await forward(request, name)

        return forward_root

    for name in sorted(ROOT_PATHS):
        router.add_api_route(
            "/" + name,
            at_root(name),
            methods=["POST"],
            include_in_schema=False,
            response_model=None,
        )
    for prefix in PREFIXES:
        router.add_api_route(
            prefix + "/{path:path}",
            forward,
            methods=METHODS,
            include_in_schema=False,
            response_model=None,
        )
    return router


async def build_upstream_request(
    context: ProxyContext, request: Request, path: str
) -> UpstreamRequest:
    """What to send to the engine for this request, or a :class:`ProxyError` to answer instead."""
    state = context.state
    if not state.ready or state.url is None:
        raise not_ready(state)
    if any(segment in (".", "..") for segment in path.split("/")):
        raise ProxyError(400, "the path must not contain '.' or '..' segments")
    body = await read_body(request, context.config.max_body_bytes)
    declared_json = "json" in request.headers.get("content-type", "").lower()
    payload = (
        parse_json(body, strict=declared_json) if declared_json or path in STREAMING_PATHS else None
    )
    stream = (
        request.method == "POST"
        and path in STREAMING_PATHS
        and isinstance(payload, dict)
        and payload.get("stream") is True
    )
    model = payload.get("model") if isinstance(payload, dict) else None
    base = "/" if path in ROOT_PATHS else "/v1/"
    url = state.url.rstrip("/") + base + quote(path, safe=_PATH_SAFE)
    query = request.scope.get("query_string", b"")
    if query:
        url += "?" + query.decode("latin-1")
    return UpstreamRequest(
        method=request.method,
        url=url,
        headers=request_headers(request.headers.raw, state.api_key),
        content=body,
        stream=stream,
        model=model if isinstance(model, str) and model else state.model,
    )


def not_ready(state: UpstreamState) -> ProxyError:
    from infer_cli.proxy.health import retry_after
    from infer_cli.proxy.state import scrub

    what = {
        "starting": "is starting",
        "restarting": "is restarting",
        "failed": "has failed",
        "stopped": "is stopped",
    }.get(state.status, "is not ready")
    message = f"the engine {what}" + (f" ({scrub(state.detail)})" if state.detail else "")
    return ProxyError(
        503,
        message,
        error_type=errors.PROVIDER_UNAVAILABLE,
        metadata={"engine": state.status},
        headers={"Retry-After": retry_after(state)},
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The whole request body, or 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise too_large(limit)
    return bytes(data)


def too_large(limit: int) -> ProxyError:
    return ProxyError(
        413,
        f"the request body is larger than {limit} bytes",
        error_type=errors.PAYLOAD_TOO_LARGE,
        metadata={"max_body_bytes": limit},
    )


def parse_json(body: bytes, *, strict: bool) -> Any:
    """The JSON body, or None when there is none.

    With ``strict`` (the body is declared as JSON), one that does not parse is rejected with 400
    here: a round trip saved, and the error in the proxy's shape. Otherwise the body is only
    inspected, never rejected.
    """
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        if strict:
            raise ProxyError(400, f"the request body is not valid JSON: {_short(exc)}") from exc
        return None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."
