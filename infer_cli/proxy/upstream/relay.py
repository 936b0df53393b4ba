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
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from infer_cli.proxy import sse
from infer_cli.proxy.errors import ProxyError, error_response
from infer_cli.proxy.upstream.client import (
    UpstreamRequest,
    UpstreamStreamError,
    drain,
    error_message,
    iter_body,
    response_headers,
    start_response,
)
from infer_cli.proxy.upstream.splice import Splice
from infer_cli.proxy.upstream.transport import ResponseBody
from infer_cli.wire.chunk_writer import chunk_writer

if TYPE_CHECKING:
    from infer_cli.proxy.openrouter.exchange import Exchange

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
    OpenRouter's mid-stream error event. ``transforms`` apply to successful event streams.

    With an ``exchange`` the request is a completion: its answer is rewritten into OpenRouter's
    (a plain one read whole, up to ``max_answer_bytes``; a stream event by event, with keep-alive
    comments in every gap), engine errors take the client's status and shape, and the exchange
    records the generation once the response is over.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        request: UpstreamRequest,
        *,
        keepalive_interval: float,
        transforms: Sequence[sse.StreamTransform] = (),
        exchange: Exchange | None = None,
        max_answer_bytes: int = 64 * 2**20,
    ) -> None:
        super().__init__(status_code=200)
        self._client = client
        self._request = request
        self._interval = keepalive_interval
        self._transforms = tuple(transforms)
        self._exchange = exchange
        self._max_answer = max_answer_bytes
        self._started = False
        self._complete = False
        self.client_disconnected = False
        """True when the client went away before the answer was complete."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A cancel scope that the watcher cancels when the client goes away, rather than a task
        # group: the watcher is simply dropped at the end, with none of a group's bookkeeping (nor
        # a cancellation that formats the task's repr), on every request.
        with anyio.CancelScope() as relaying:
            watcher = asyncio.ensure_future(self._watch_client(receive, relaying))
            watcher.add_done_callback(_retrieve)
            try:
                await self._relay(scope, receive, send)
            finally:
                watcher.cancel()
        if self._exchange is not None:
            await self._exchange.close(
                cancelled=self.client_disconnected,
                status=499 if self.client_disconnected and not self._started else None,
            )
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
        pending = start_response(self._client, self._request)
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
                await self._answer_error(scope, receive, send, error)
                return
            if self._exchange is not None:
                waited = time.monotonic() - sent_at
                await self._relay_completion(scope, receive, send, response, waited)
                return
            if not response.is_success:  # the engine's error, in the proxy's shape and statuses
                await self._answer_error(scope, receive, send, await engine_error(response))
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
            if self._exchange is not None:
                self._exchange.note(ProxyError(500, "the proxy failed; see its log"))
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

    async def _answer_error(
        self, scope: Scope, receive: Receive, send: Send, error: ProxyError
    ) -> None:
        if self._exchange is not None:
            self._exchange.note(error)
        await error.response()(scope, receive, partial(self._send, send))

    async def _relay_completion(
        self, scope: Scope, receive: Receive, send: Send, response: httpx.Response, waited: float
    ) -> None:
        exchange = self._exchange
        assert exchange is not None
        if not response.is_success:
            message = await error_message(response)
            error = exchange.upstream_error(response.status_code, message)
            await self._answer_error(scope, receive, send, error)
            return
        if not self._request.stream:
            try:
                raw = await _read_all(response, self._max_answer)
                body = exchange.rewrite_body(raw)
            except ProxyError as error:
                await self._answer_error(scope, receive, send, error)
                return
            await self._send(
                send,
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        *_without_content_type(response_headers(response.headers)),
                        (b"content-type", b"application/json"),
                    ],
                },
            )
            await self._send(send, {"type": "http.response.body", "body": body})
            return
        headers = _with_sse_headers(_without_content_type(response_headers(response.headers)))
        await self._send(
            send,
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", _SSE_HEADERS[0][1]), *headers],
            },
        )
        first_after = self._interval - waited
        writer = chunk_writer(scope)
        stream = response.stream
        if writer is not None and writer.ready and isinstance(stream, ResponseBody):
            splice = Splice(
                stream.connection,
                writer,
                exchange,
                interval=self._interval,
                first_after=first_after,
                read_timeout=stream.timeout,
            )
            await splice.run()
            await self._send(send, {"type": "http.response.body", "body": b"", "more_body": False})
            return
        await self._send_completion(send, response, exchange, first_after=first_after)

    async def _relay_late(self, send: Send, pending: asyncio.Future[httpx.Response]) -> None:
        await self._send(
            send, {"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS}
        )
        await self._send(
            send, {"type": "http.response.body", "body": sse.KEEPALIVE_COMMENT, "more_body": True}
        )
        if self._exchange is not None:
            late = self._late_completion(pending, self._exchange)
            await self._send_paced(send, late, first_after=self._interval)
            return
        body = sse.compose(
            sse.with_keepalive(self._late_body(pending), self._interval), *self._transforms
        )
        await self._send_body(send, body)

    async def _late_completion(
        self, pending: asyncio.Future[httpx.Response], exchange: Exchange
    ) -> sse.ByteStream:
        from infer_cli.proxy.openrouter.exchange import client_status

        try:
            response = await asyncio.shield(pending)
        except ProxyError as error:
            yield exchange.stream_error(error.status, error.message, error.error_type)
            return
        if not response.is_success:
            message = await error_message(response)
            yield exchange.stream_error(client_status(response.status_code), message)
            return
        async for chunk in exchange.stream(iter_body(response)):
            yield chunk

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

    async def _send_completion(
        self, send: Send, response: httpx.Response, exchange: Exchange, *, first_after: float
    ) -> None:
        """The engine's event stream as ``exchange`` rewrites it, each read's events sent as they
        came, with a keep-alive comment in every silence: the loop for when a
        :class:`~infer_cli.proxy.upstream.splice.Splice` cannot be had (an ``https://`` engine, a
        server other than infer's, a response start that a middleware holds back). An engine
        whose headers come later than the keep-alive interval goes through :meth:`_relay_late`.

        :meth:`Exchange.stream` in :meth:`_send_paced` does the same; this loop feeds the exchange
        itself, so that a chunk resumes one generator (the body) rather than three on its way.
        """

        async def emit(chunk: bytes) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        body = iter_body(response)
        paced = sse.Paced(emit, self._interval, first_after=first_after)
        try:
            try:
                async for raw in body:
                    out, ended = exchange.feed(raw)
                    if out:
                        await paced.send(out)
                    if ended:
                        await drain(body)
                        break
                else:
                    await paced.send(exchange.end())
            except UpstreamStreamError as error:
                await paced.send(
                    exchange.stream_error(error.status, error.message, error.error_type)
                )
        finally:
            paced.close()
            with anyio.CancelScope(shield=True):
                await _aclose(body)
        await self._send(send, {"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_paced(self, send: Send, events: sse.ByteStream, *, first_after: float) -> None:
        """Send a stream of whole events, with a keep-alive comment in every silence."""

        async def emit(chunk: bytes) -> None:
            # Straight to ``send``: a body chunk with more to come changes none of _send's flags.
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        try:
            await sse.send_with_keepalive(events, emit, self._interval, first_after=first_after)
        finally:
            with anyio.CancelScope(shield=True):
                await _aclose(events)
        await self._send(send, {"type": "http.response.body", "body": b"", "more_body": False})


async def _read_all(response: httpx.Response, limit: int) -> bytes:
    data = bytearray()
    async for chunk in iter_body(response):
        data += chunk
        if len(data) > limit:
            raise ProxyError(502, f"the engine's answer is larger than {limit} bytes")
    return bytes(data)


def _without_content_type(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(name, value) for name, value in headers if name != b"content-type"]


def _with_sse_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    present = {name for name, _ in headers}
    extra = [(name, value) for name, value in _SSE_HEADERS[1:] if name not in present]
    return headers + extra


async def engine_error(response: httpx.Response) -> ProxyError:
    """The engine's error answer on a relayed route, as the proxy's error."""
    from infer_cli.proxy.openrouter.exchange import client_status

    status = response.status_code
    return ProxyError(
        client_status(status), await error_message(response), metadata={"upstream_status": status}
    )


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


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
