"""``/tokenize`` and ``/detokenize``: the engine routes the proxy relays without rewriting.

The proxy serves an explicit list of routes (the README's table); anything else under ``/v1`` or
``/api/v1`` is a 404 in the proxy's error shape, and a known path with the wrong method a 405 with
``Allow``: no request reaches the engine without the proxy's validation, caps and accounting.

vLLM answers ``/tokenize`` and ``/detokenize`` at its root, not under ``/v1``: the proxy serves
them at its root too and maps ``/v1/tokenize`` (and ``/api/v1/...``) there, so that clients that
fit prompt lengths (``infer bench``, ``vllm bench serve``) get the engine's own tokenizer. They get
the completions' checks: body size, a JSON object, the model, the messages' roles and parts, and
their tokens (the estimate of the text, the ids given) count against the key's tokens per minute.

The handler checks what can be checked before the engine is involved, then returns a
:class:`~infer_cli.proxy.upstream.relay.RelayResponse` that performs the exchange while it is sent.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from infer_cli.proxy import errors
from infer_cli.proxy.context import ProxyContext
from infer_cli.proxy.errors import ProxyError
from infer_cli.proxy.guards.accounting import prompt_size
from infer_cli.proxy.guards.bounds import check_messages, check_shape
from infer_cli.proxy.guards.limits import reserve_tokens
from infer_cli.proxy.routes import openapi
from infer_cli.proxy.state import UpstreamState
from infer_cli.proxy.upstream.client import UpstreamRequest, request_headers
from infer_cli.proxy.upstream.relay import RelayResponse

PREFIXES = ("/v1", "/api/v1")
ROOT_PATHS = ("tokenize", "detokenize")
"""Engine endpoints that live at the engine's root; the proxy serves them at its root and under
its prefixes."""


def forward_router(context: ProxyContext) -> APIRouter:
    from infer_cli.proxy.openrouter.schemas import (
        DetokenizeAnswer,
        DetokenizeRequest,
        TokenizeAnswer,
        TokenizeRequest,
    )

    router = APIRouter()
    for name, request, answer, summary in (
        ("tokenize", TokenizeRequest, TokenizeAnswer, "The engine's token count and ids"),
        ("detokenize", DetokenizeRequest, DetokenizeAnswer, "The engine's text of token ids"),
    ):
        handler = engine_route(context, name)
        for prefix in ("", *PREFIXES):
            router.add_api_route(
                f"{prefix}/{name}",
                handler,
                methods=["POST"],
                summary=summary,
                response_model=None,
                responses={
                    200: {"model": answer},
                    **openapi.errors(400, 404, *openapi.LIMITED, *openapi.ENGINE),
                },
                openapi_extra=openapi.request_body(request, context.info),
                operation_id=f"{name}{prefix.replace('/', '_')}",
            )
    for path in context.config.extra_routes:
        router.add_api_route(
            path,
            extra_route(context, path),
            methods=["GET", "POST"],
            summary=f"The engine's {path}, relayed as it is (proxy.extra_routes)",
            include_in_schema=False,
        )
    return router


def extra_route(context: ProxyContext, path: str) -> Callable[[Request], Awaitable[Response]]:
    """A route the profile turns on: the engine answers it, behind the proxy's keys and limits."""

    async def relay(request: Request) -> Response:
        state = context.state
        if not state.ready or state.url is None:
            raise not_ready(state)
        body = await read_body(request, context.config.max_body_bytes)
        check_shape(body, context.config.body_bounds)
        url = state.url.rstrip("/") + path
        query = request.scope.get("query_string", b"")
        if query:
            url += "?" + query.decode("latin-1")
        upstream = UpstreamRequest(
            method=request.method,
            url=url,
            headers=request_headers(request.headers.raw, state.api_key),
            content=body,
            stream=False,
            model=context.info.model,
        )
        return RelayResponse(
            context.upstream_client(),
            upstream,
            keepalive_interval=context.config.keepalive_interval,
        )

    return relay


def engine_route(context: ProxyContext, name: str) -> Callable[[Request], Awaitable[Response]]:
    """The handler of ``POST /{name}`` (``tokenize`` or ``detokenize``)."""

    async def relay(request: Request) -> Response:
        state = context.state
        if not state.ready or state.url is None:
            raise not_ready(state)
        body = await read_body(request, context.config.max_body_bytes)
        check_shape(body, context.config.body_bounds)
        payload = parse_json(body, strict=True)
        check_messages(payload, context.config.body_bounds)
        if not isinstance(payload, dict):
            raise ProxyError(400, f"the /{name} body must be a JSON object")
        tokens = _check_tokenize(payload) if name == "tokenize" else _check_detokenize(payload)
        requested = payload.get("model")
        info = context.info
        if requested is not None and not isinstance(requested, str):
            raise ProxyError(400, "'model' must be a string (the served model's name)")
        if requested is not None and not info.accepts(requested):
            raise ProxyError(
                404,
                f"model '{requested}' is not served here; this endpoint serves '{info.model}'",
                metadata={"model": requested, "available": [info.model]},
            )
        payload["model"] = info.model
        key_id = _key_id(request)
        reservation = reserve_tokens(context.limiter, key_id, tokens, context.on_reject)
        if reservation is not None:
            reservation.settle(tokens)  # the estimate is the charge: no generation follows
        upstream = UpstreamRequest(
            method="POST",
            url=f"{state.url.rstrip('/')}/{name}",
            headers=request_headers(
                [(b"content-type", b"application/json"), (b"accept", b"application/json")],
                state.api_key,
            ),
            content=json.dumps(payload, separators=(",", ":")).encode(),
            stream=False,
            model=info.model,
        )
        return RelayResponse(
            context.upstream_client(),
            upstream,
            keepalive_interval=context.config.keepalive_interval,
        )

    return relay


def _check_tokenize(payload: dict[str, Any]) -> int:
    """A ``/tokenize`` request's estimated tokens, or 400: ``prompt`` (a string) or ``messages``."""
    from infer_cli.proxy.openrouter.schemas import check_messages

    if not isinstance(payload.get("prompt"), str | None):
        raise ProxyError(400, "'prompt' must be a string (or send 'messages' alone)")
    messages = payload.get("messages")
    if messages is None:
        payload.pop("messages", None)  # null is no messages (the engine would take it for some)
    else:
        if not isinstance(messages, list) or not messages:
            raise ProxyError(400, "messages must be a non-empty list of message objects")
        if not all(isinstance(message, dict) for message in messages):
            raise ProxyError(400, "messages must be a non-empty list of message objects")
        try:
            check_messages(messages)
        except ValueError as exc:
            raise ProxyError(400, f"invalid request: messages: {exc}") from None
        return prompt_size(payload, text=False).estimate
    if not isinstance(payload.get("prompt"), str):
        raise ProxyError(400, "send 'prompt' (a string) or 'messages' (a list of messages)")
    return prompt_size(payload, text=True).estimate


def _check_detokenize(payload: dict[str, Any]) -> int:
    """A ``/detokenize`` request's token count, or 400: ``tokens``, a list of token ids."""
    tokens = payload.get("tokens")
    if not isinstance(tokens, list) or not all(
        (isinstance(token, int) or (isinstance(token, float) and token.is_integer()))
        and not isinstance(token, bool)
        and token >= 0
        for token in tokens
    ):
        raise ProxyError(400, "send 'tokens': a list of token ids (integers from 0)")
    payload["tokens"] = [int(token) for token in tokens]  # 2.0 is 2, as JSON Schema says
    return len(tokens)


def _key_id(request: Request) -> str | None:
    state = request.scope.get("state")
    key_id = state.get("key_id") if isinstance(state, dict) else None
    return key_id if isinstance(key_id, str) else None


def not_ready(state: UpstreamState) -> ProxyError:
    from infer_cli.proxy.routes.health import retry_after
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
    try:
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                raise too_large(limit)
    except ClientDisconnect:
        # Gone, or cut off by the server's body timeout (which answered 408): nothing to log.
        raise ProxyError(400, "the client left before its request body was complete") from None
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
