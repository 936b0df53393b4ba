"""Relaying one request to the engine, as an ASGI response that watches its client the whole time.

The upstream exchange happens while this response is being sent, inside a cancel scope that a client
disconnect cancels: whether the proxy is waiting for the engine's headers, for the first token or
for the next chunk, a client that goes away closes the upstream connection at once, so the engine
aborts the request and frees its slot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from functools import partial

import anyio
import httpx
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from infer_cli.proxy import sse
from infer_cli.proxy.errors import ProxyError, error_response
from infer_cli.proxy.upstream import (
    UpstreamRequest,
    UpstreamStreamError,
    error_message,
    iter_body,
    open_response,
    response_headers,
)

log = logging.getLogger("infer.proxy")

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_CLOSE_TIMEOUT = 5.0


class RelayResponse(Response):
    """Forward ``request`` upstream and stream the answer back, chunk by chunk, with no buffering.

    For a streamed completion (``request.stream``) the proxy waits up to ``keepalive_interval`` for
    the engine's headers. If they come, an error status is relayed as is, and a success streams with
    keep-alive comments until the first byte. If they do not, the proxy commits to ``200``
    ``text/event-stream`` and sends keep-alive comments meanwhile; a failure that follows becomes
    OpenRouter's mid-stream error event. ``transforms`` apply to successful event streams (the place
    for usage and cost rewriting).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        request: UpstreamRequest,
        *,
        keepalive_interval: float,
        transforms: Sequence[sse.StreamTransform] = (),
    ) -> None:
        super().__init__(status_code=200)
        self._client = client
        self._request = request
        self._interval = keepalive_interval
        self._transforms = tuple(transforms)
        self._started = False
        self._complete = False
        self.client_disconnected = False
        """True when the client went away before the answer was complete."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch_client, receive, group.cancel_scope)
            try:
                await self._relay(scope, receive, send)
            finally:
                group.cancel_scope.cancel()
        if self.client_disconnected:
            log.debug(
                "client went away; upstream %s %s closed", self._request.method, self._request.url
            )

    async def _watch_client(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.client_disconnected = not self._complete
                scope.cancel()
                return

    async def _send(self, send: Send, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._started = True
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self._complete = True
        await send(message)

    async def _relay(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent_at = time.monotonic()
        pending = asyncio.ensure_future(open_response(self._client, self._request))
        pending.add_done_callback(_retrieve)
        try:
            if self._request.stream:
                done, _ = await asyncio.wait({pending}, timeout=self._interval)
                if not done:
                    await self._relay_late(send, pending)
                    return
            try:
                # Shielded, here and below: only _close_upstream cancels the request, once. A second
                # cancel would interrupt httpcore's own clean-up and leave the connection open.
                response = await asyncio.shield(pending)
            except ProxyError as error:
                await error.response()(scope, receive, partial(self._send, send))
                return
            await self._relay_response(send, response, time.monotonic() - sent_at)
        except UpstreamStreamError as error:
            # The status line is gone; ending the body cleanly would look like success. Leaving the
            # response incomplete makes the server drop the connection: the client sees it broken.
            log.warning("upstream failed mid-response (%s): %s", error.status, error.message)
        except OSError:
            self.client_disconnected = True
        except Exception:
            log.exception("proxy failed relaying %s %s", self._request.method, self._request.url)
            if not self._started:
                failure = error_response(500, "the proxy failed; see its log")
                await failure(scope, receive, partial(self._send, send))
        finally:
            with anyio.CancelScope(shield=True):
                await _close_upstream(pending)

    async def _relay_response(self, send: Send, response: httpx.Response, waited: float) -> None:
        headers = response_headers(response.headers)
        body = iter_body(response)
        event_stream = response.headers.get("content-type", "").startswith("text/event-stream")
        if event_stream:
            headers = _with_sse_headers(headers)
        if self._request.stream and response.is_success:
            body = sse.with_keepalive(body, self._interval, first_after=self._interval - waited)
        if event_stream and response.is_success:
            body = sse.compose(body, *self._transforms)
        await self._send(
            send,
            {"type": "http.response.start", "status": response.status_code, "headers": headers},
        )
        await self._send_body(send, body)

    async def _relay_late(self, send: Send, pending: asyncio.Future[httpx.Response]) -> None:
        await self._send(
            send, {"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS}
        )
        await self._send(
            send, {"type": "http.response.body", "body": sse.KEEPALIVE_COMMENT, "more_body": True}
        )
        body = sse.compose(
            sse.with_keepalive(self._late_body(pending), self._interval), *self._transforms
        )
        await self._send_body(send, body)

    async def _late_body(self, pending: asyncio.Future[httpx.Response]) -> sse.ByteStream:
        model = self._request.model
        try:
            response = await asyncio.shield(pending)
        except ProxyError as error:
            yield sse.error_event(
                error.status, error.message, model=model, error_type=error.error_type
            )
            return
        if not response.is_success:
            message = await error_message(response)
            yield sse.error_event(response.status_code, message, model=model)
            return
        async for chunk in iter_body(response):
            yield chunk

    async def _send_body(self, send: Send, body: sse.ByteStream) -> None:
        try:
            async for chunk in body:
                await self._send(
                    send, {"type": "http.response.body", "body": chunk, "more_body": True}
                )
        finally:
            with anyio.CancelScope(shield=True):
                await _aclose(body)
        await self._send(send, {"type": "http.response.body", "body": b"", "more_body": False})


def _with_sse_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    present = {name for name, _ in headers}
    extra = [(name, value) for name, value in _SSE_HEADERS[1:] if name not in present]
    return headers + extra


async def _close_upstream(pending: asyncio.Future[httpx.Response]) -> None:
    """Cancel a request still waiting for headers, or close its response: the engine sees it."""
    if not pending.done():
        pending.cancel()  # exactly once (see _relay)
        await asyncio.wait({pending}, timeout=_CLOSE_TIMEOUT)
        return
    if pending.cancelled() or pending.exception() is not None:
        return
    await pending.result().aclose()


async def _aclose(body: sse.ByteStream) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        await aclose()


def _retrieve(future: asyncio.Future[httpx.Response]) -> None:
    if not future.cancelled():
        future.exception()
