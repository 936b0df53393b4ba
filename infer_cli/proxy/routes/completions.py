"""``POST /v1/chat/completions``, ``/v1/completions`` and their ``/api/v1`` twins.

The handler checks what it can before the engine is involved (body size, JSON, fields and ranges,
the model, readiness), prepares the engine's copy of the request (``max_tokens`` defaulted to the
profile's maximum output), reserves its estimated tokens against the key's tokens per minute (429
when the budget is spent), and returns a :class:`~infer_cli.proxy.upstream.relay.RelayResponse` with
an :class:`~infer_cli.proxy.openrouter.exchange.Exchange` that rewrites the answer into OpenRouter's
and records the generation.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from infer_cli.proxy.context import ProxyContext
from infer_cli.proxy.errors import ProxyError
from infer_cli.proxy.guards.accounting import completion_allowance, engine_count, tokenize_body
from infer_cli.proxy.guards.limits import reserve_tokens
from infer_cli.proxy.openrouter.exchange import Exchange
from infer_cli.proxy.openrouter.payload import (
    CHAT,
    TEXT,
    CompletionKind,
    Prepared,
    default_max_tokens,
    prepare,
)
from infer_cli.proxy.openrouter.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    CompletionRequest,
    TextCompletion,
)
from infer_cli.proxy.routes.forward import PREFIXES, not_ready, read_body
from infer_cli.proxy.routes.models import context_length_of
from infer_cli.proxy.routes.openapi import completion_responses, request_body
from infer_cli.proxy.upstream.client import UpstreamRequest, request_headers
from infer_cli.proxy.upstream.relay import RelayResponse

Handler = Callable[[Request], Awaitable[Response]]


def completions_router(context: ProxyContext) -> APIRouter:
    router = APIRouter()
    handlers = completion_handlers(context)
    for endpoint, request_model, answer, summary in (
        (CHAT, ChatCompletionRequest, ChatCompletion, "Chat completion"),
        (TEXT, CompletionRequest, TextCompletion, "Text completion"),
    ):
        for prefix in PREFIXES:
            handler = handlers[f"{prefix}/{endpoint.path}"]
            router.add_api_route(
                f"{prefix}/{endpoint.path}",
                handler,
                methods=["POST"],
                summary=summary,
                description=(
                    "OpenAI's request, OpenRouter's extra fields accepted and ignored; with"
                    " `stream: true` an SSE stream of chunks with `: OPENROUTER PROCESSING`"
                    " keep-alive comments, the usage chunk last, then `data: [DONE]`."
                ),
                response_model=None,
                responses=completion_responses(answer),
                openapi_extra=request_body(request_model, context.info),
                operation_id=f"{endpoint.path.replace('/', '_')}{prefix.replace('/', '_')}",
            )
    return router


def completion_handlers(context: ProxyContext) -> dict[str, Handler]:
    """The handler of every completion path (both prefixes)."""
    handlers: dict[str, Handler] = {}
    for endpoint in (CHAT, TEXT):
        handler = _handler(context, endpoint)
        for prefix in PREFIXES:
            handlers[f"{prefix}/{endpoint.path}"] = handler
    return handlers


class CompletionsFastPath:
    """``POST`` to a completion path, straight to its handler; every other request to the app.

    The completion routes stay registered with FastAPI (for the OpenAPI document, and as the same
    handlers), but FastAPI's routing, dependency solving and exception wrappers cost a fifth of a
    millisecond per request and two more layers for every streamed chunk, and these handlers need
    none of it: they take the raw request, and a :class:`ProxyError` becomes its response here as
    the app's handler would make it. Installed inside the guards (metrics, CORS, auth, limits
    apply as before) and outside the app's exception middleware; an unexpected exception goes on to
    the server-error handler, as from a route.
    """

    def __init__(self, app: ASGIApp, *, handlers: Mapping[str, Handler]) -> None:
        self.app = app
        self.handlers = dict(handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            handler = self.handlers.get(scope["path"])
            if handler is not None:
                try:
                    response = await handler(Request(scope, receive))
                except ProxyError as error:
                    response = error.response()
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _handler(context: ProxyContext, endpoint: CompletionKind) -> Handler:
    async def complete(request: Request) -> Response:
        created, started = time.time(), time.monotonic()
        raw = await read_body(request, context.config.max_body_bytes)
        info = context.info
        limit = info.max_output_length
        context_length = await context_length_of(context) if limit else None
        prepared = prepare(endpoint, raw, info, context_length, bounds=context.config.body_bounds)
        state = context.state
        if not state.ready or state.url is None:
            raise not_ready(state)
        if prepared.count_prompt and limit and context_length:
            counted = await _count(context, prepared, endpoint)
            prepared = default_max_tokens(prepared, limit, context_length, counted)
        key_id = _key_id(request)
        reservation = reserve_tokens(
            context.limiter, key_id, _reserved(prepared, context_length), context.on_reject
        )

        async def count_prompt() -> int | None:
            return await _count(context, prepared, endpoint)

        exchange = Exchange(
            model=info.model,
            route=request.scope["path"],
            streamed=prepared.stream,
            text=endpoint.text,
            prices=info.prices,
            observers=context.observers,
            key_id=key_id,
            created=created,
            started=started,
            reservation=reservation,
            count_prompt=count_prompt,
            prompt_estimate=prepared.size.estimate,
        )
        upstream = UpstreamRequest(
            method="POST",
            url=f"{state.url.rstrip('/')}/v1/{endpoint.path}",
            headers=request_headers(_json_headers(request), state.api_key),
            content=prepared.body,
            stream=prepared.stream,
            model=info.model,
        )
        return RelayResponse(
            context.upstream_client(),
            upstream,
            keepalive_interval=context.config.keepalive_interval,
            exchange=exchange,
            max_answer_bytes=context.config.max_answer_bytes,
        )

    return complete


async def _count(context: ProxyContext, prepared: Prepared, endpoint: CompletionKind) -> int | None:
    """The engine's count of the prompt's tokens (None: it could not say)."""
    body = tokenize_body(prepared.payload or {}, text=endpoint.text)
    if body is None:
        return prepared.size.upper if prepared.size.upper == prepared.size.estimate else None
    return await engine_count(context.upstream_client(), context.state, body)


def _reserved(prepared: Prepared, context_length: int | None) -> int:
    """Tokens to reserve: the prompt's estimate and the most the completion may take (what the
    context leaves when the request does not say)."""
    prompt = prepared.size.estimate
    allowance = completion_allowance(prepared.payload or {})
    if allowance is None:
        allowance = max(0, context_length - prompt) if context_length else 0
    return prompt + allowance


def _key_id(request: Request) -> str | None:
    """The API key's id, when the auth middleware put one in the request's state."""
    state = request.scope.get("state")
    key_id = state.get("key_id") if isinstance(state, dict) else None
    return key_id if isinstance(key_id, str) else None


def _json_headers(request: Request) -> list[tuple[bytes, bytes]]:
    """The client's headers, declaring the (possibly rewritten) body as JSON."""
    raw: list[tuple[bytes, bytes]] = request.scope["headers"]  # not request.headers: no copy
    headers = [(name, value) for name, value in raw if name != b"content-type"]
    headers.append((b"content-type", b"application/json"))
    return headers
