"""A small real upstream for proxy tests: vLLM's OpenAI routes, served by uvicorn in the test loop.

It mimics what the proxy relies on: ``GET /v1/models``, ``POST /v1/chat/completions`` (plain and
streamed, with configurable delays before the headers, before the first token and between chunks),
checks the internal key like ``vllm serve --api-key``, notices a client that goes away (as vLLM
aborts the request) and records what it saw. ``/v1/echo`` answers with the request it received.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

CONTENT = ["Hello", ",", " world", "!", " How", " are", " you", "?"]


@dataclass
class FakeUpstream:
    api_key: str = "internal-key"
    model: str = "fake/model"
    header_delay: float = 0.0
    """Seconds before the response starts (vLLM: chat template, tokenization)."""
    first_token_delay: float = 0.0
    """Seconds between the headers and the first chunk of a stream (vLLM: queueing, prefill)."""
    chunk_delay: float = 0.0
    chunks: int = 4
    fail_status: int | None = None
    """Answer chat completions with this error status (after ``header_delay``)."""
    break_after: int | None = None
    """Drop the connection after this many content chunks of a stream."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a client went away before its answer was complete."""
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a streamed answer was sent to its end."""
    cancelled_at: float | None = None
    finished_at: float | None = None

    _server: Any = None
    _sock: socket.socket | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        assert self._sock is not None
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    # --- running ---------------------------------------------------------------------------------

    async def start(self) -> None:
        app = Starlette(
            routes=[
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/echo", self._echo, methods=["GET", "POST", "PUT", "DELETE"]),
            ]
        )
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only for that protocol.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.setblocking(False)
        self._sock = sock
        config = uvicorn.Config(app, lifespan="off", log_config=None, log_level="warning")
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        self._server = server
        self._task = asyncio.create_task(server.main_loop())

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._server.config.timeout_graceful_shutdown = 1
        await self._server.shutdown(sockets=[self._sock])
        self._server = None

    # --- routes ----------------------------------------------------------------------------------

    def _unauthorized(self, request: Request) -> Response | None:
        if request.headers.get("authorization") == f"Bearer {self.api_key}":
            return None
        return JSONResponse({"error": "Unauthorized"}, status_code=401)

    async def _record(self, request: Request) -> bytes:
        body = await request.body()
        self.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "headers": [
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                ],
                "body": body,
            }
        )
        return body

    async def _models(self, request: Request) -> Response:
        await self._record(request)
        if denied := self._unauthorized(request):
            return denied
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {
                        "id": self.model,
                        "object": "model",
                        "created": 1700000000,
                        "owned_by": "vllm",
                        "root": self.model,
                        "max_model_len": 8192,
                    }
                ],
            }
        )

    async def _echo(self, request: Request) -> Response:
        body = await self._record(request)
        if denied := self._unauthorized(request):
            return denied
        seen = self.requests[-1]
        return JSONResponse(
            {
                "method": seen["method"],
                "path": seen["path"],
                "query": seen["query"],
                "headers": seen["headers"],
                "body": body.decode("utf-8", "replace"),
            },
            headers={"x-upstream": "fake", "x-request-id": "req-1"},
        )

    async def _chat(self, request: Request) -> Response:
        raw = await self._record(request)
        if denied := self._unauthorized(request):
            return denied
        payload = json.loads(raw)
        if not await self._wait(request, self.header_delay):
            return Response(status_code=499)
        if self.fail_status is not None:
            return JSONResponse(
                {
                    "error": {
                        "message": "fake failure",
                        "type": "BadRequestError",
                        "param": None,
                        "code": self.fail_status,
                    }
                },
                status_code=self.fail_status,
            )
        created = int(time.time())
        if payload.get("stream"):
            return StreamingResponse(self._stream(created), media_type="text/event-stream")
        if not await self._wait(request, self.first_token_delay):
            return Response(status_code=499)
        text = "".join(CONTENT[: self.chunks])
        return JSONResponse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": created,
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": self.chunks, "total_tokens": 9},
            }
        )

    async def _stream(self, created: int) -> AsyncIterator[bytes]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            body = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(body)}\n\n".encode()

        try:
            await asyncio.sleep(self.first_token_delay)
            yield chunk({"role": "assistant", "content": ""})
            for index in range(self.chunks):
                if self.break_after is not None and index >= self.break_after:
                    raise ConnectionAbortedError("fake upstream breaks off")
                await asyncio.sleep(self.chunk_delay)
                yield chunk({"content": CONTENT[index % len(CONTENT)]})
            yield chunk({}, "stop")
            yield b"data: [DONE]\n\n"
            self.finished_at = time.monotonic()
            self.finished.set()
        except (asyncio.CancelledError, GeneratorExit):
            self._mark_cancelled()
            raise

    async def _wait(self, request: Request, seconds: float) -> bool:
        """Sleep, unless the client goes away first (vLLM aborts such requests): False then."""
        if seconds <= 0:
            return True

        async def disconnect() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        watcher = asyncio.ensure_future(disconnect())
        done, _ = await asyncio.wait({watcher}, timeout=seconds)
        watcher.cancel()
        if done:
            self._mark_cancelled()
            return False
        return True

    def _mark_cancelled(self) -> None:
        if self.cancelled_at is None:
            self.cancelled_at = time.monotonic()
        self.cancelled.set()
