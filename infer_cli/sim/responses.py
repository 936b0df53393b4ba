"""Answering one generation request: an ASGI response that runs the generation while it is sent.

The client is watched the whole time (waiting for a slot, prefill, decoding): when it goes away,
the generation is cancelled at the point it waits, which frees its slot and counts it as cancelled,
as vLLM aborts a request whose client disconnected.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import aclosing

import anyio
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from infer_cli.sim import protocol
from infer_cli.sim.engine import EngineFailure, EngineStopped, SimEngine
from infer_cli.sim.protocol import GenerationRequest, StreamEncoder
from infer_cli.wire.sse import DONE

log = logging.getLogger("infer.sim")

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]
_JSON_HEADERS = [(b"content-type", b"application/json")]


def _more(body: bytes) -> Message:
    return {"type": "http.response.body", "body": body, "more_body": True}


class GenerationResponse(Response):
    def __init__(self, engine: SimEngine, request: GenerationRequest) -> None:
        super().__init__(status_code=200)
        self._engine = engine
        self._request = request
        self.client_disconnected = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch_client, receive, group.cancel_scope)
            try:
                if self._request.stream:
                    await self._stream(send)
                else:
                    await self._whole(send)
            finally:
                group.cancel_scope.cancel()

    async def _watch_client(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.client_disconnected = True
                scope.cancel()
                return

    async def _whole(self, send: Send) -> None:
        request = self._request
        generation = self._engine.start(request.job)
        parts: list[str] = []
        try:
            async with aclosing(generation.steps()) as steps:
                async for step in steps:
                    parts.append(step.text)
        except EngineFailure as failure:
            status, payload = failure.status, protocol.error_body(failure.status, str(failure))
        else:
            status = 200
            payload = protocol.completion_body(
                request.kind,
                protocol.new_id(request.kind),
                int(time.time()),
                request.model,
                "".join(parts),
                generation,
            )
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _stream(self, send: Send) -> None:
        request = self._request
        engine = self._engine
        generation = engine.start(request.job)
        encoder = StreamEncoder(
            request.kind, protocol.new_id(request.kind), int(time.time()), request.model
        )
        continuous = request.continuous_usage
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        pending = encoder.opening()
        try:
            async with aclosing(generation.steps()) as steps:
                async for step in steps:
                    if step.text or step.finish_reason is not None or continuous:
                        pending += encoder.chunk(
                            step.text,
                            finish_reason=step.finish_reason,
                            stop_reason=generation.stop_reason,
                            usage=protocol.usage(generation) if continuous else None,
                        )
                    if step.finish_reason is None and pending:
                        await send(_more(pending))
                        pending = b""
        except EngineFailure as failure:
            if engine.settings.fail_mode == "disconnect" and not isinstance(failure, EngineStopped):
                # Returning with the response incomplete makes the server drop the connection.
                log.warning("simulated engine failure: dropping the connection")
                return
            pending += protocol.error_event(failure.status, str(failure)) + DONE
            await send({"type": "http.response.body", "body": pending, "more_body": False})
            return
        if request.include_usage:
            pending += encoder.usage_chunk(protocol.usage(generation))
        await send({"type": "http.response.body", "body": pending + DONE, "more_body": False})
