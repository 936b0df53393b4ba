"""A small real upstream for proxy tests: vLLM's OpenAI routes, served by uvicorn in the test loop.

It mimics what the proxy relies on: ``GET /v1/models``, ``POST /v1/chat/completions`` and
``/v1/completions`` (plain and streamed, with configurable delays before the headers, before the
first token and between chunks; the usage chunk when ``stream_options.include_usage`` asks for it,
with ``prompt_tokens_details.cached_tokens`` like ``--enable-prompt-tokens-details``), checks the
internal key like ``vllm serve --api-key``, can think first like a reasoning model served with
``--reasoning-parser`` (``reasoning_chunks`` pieces in ``delta.reasoning_content`` or
``delta.reasoning`` before the answer; ``message.<field>`` when not streamed), notices a client
that goes away (as vLLM aborts the request) and records what it saw. It can fail in vLLM's ways:
an error status, an in-stream error event, a dropped connection, a garbled answer. ``/v1/echo``
answers with the request it received.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, fields
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

CONTENT = ["Hello", ",", " world", "!", " How", " are", " you", "?"]
REASONING = ["Let", " me", " think", ".\n", "\n", "The", " user", " greets", ".\n\n"]


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
    reasoning_chunks: int = 0
    """Pieces of thinking (``REASONING``) sent before the answer, as vLLM's reasoning parser."""
    reasoning_field: str = "reasoning_content"
    """Where the thinking goes: ``reasoning_content`` (older vLLM) or ``reasoning`` (newer)."""
    fail_status: int | None = None
    """Answer chat completions with this error status (after ``header_delay``)."""
    break_after: int | None = None
    """Drop the connection after this many content chunks of a stream."""
    error_after: int | None = None
    """Send vLLM's in-stream error event (then ``[DONE]``) after this many content chunks."""
    gap_after: int | None = None
    """Pause ``gap`` seconds after this many content chunks of a stream."""
    gap: float = 0.0
    prompt_tokens: int = 5
    cached_tokens: int | None = None
    """``usage.prompt_tokens_details.cached_tokens``; None: no details (as without the flag)."""
    finish_reason: str = "stop"
    usage_in_stream: bool = True
    """Honour ``stream_options.include_usage`` (False: never send the usage chunk)."""
    garbled: bool = False
    """Answer a plain completion with 200 and a body that is not JSON."""
    gate: asyncio.Event | None = None
    """When set, chat completions wait for this event (after being recorded) before answering."""
    metrics_text: str = "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0\n"
    """What ``GET /metrics`` answers (vLLM's Prometheus text)."""
    metrics_delay: float = 0.0

    requests: list[dict[str, Any]] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a client went away before its answer was complete."""
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a streamed answer was sent to its end."""
    cancelled_at: float | None = None
    finished_at: float | None = None
    served: int = 0

    _server: Any = None
    _sock: socket.socket | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        assert self._sock is not None
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def reset(self) -> None:
        """Back to the defaults, with nothing seen (for a fake shared by several tests)."""
        fresh = FakeUpstream(api_key=self.api_key, model=self.model)
        for item in fields(self):
            if not item.name.startswith("_") and item.name not in ("api_key", "model", "served"):
                setattr(self, item.name, getattr(fresh, item.name))

    # --- running ---------------------------------------------------------------------------------

    async def start(self) -> None:
        app = Starlette(
            routes=[
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/completions", self._chat, methods=["POST"]),
                Route("/v1/echo", self._echo, methods=["GET", "POST", "PUT", "DELETE"]),
                Route("/tokenize", self._echo, methods=["POST"]),
                Route("/detokenize", self._echo, methods=["POST"]),
                Route("/metrics", self._metrics, methods=["GET"]),
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

    async def _metrics(self, request: Request) -> Response:
        # Like vLLM: open even with --api-key.
        await self._record(request)
        await asyncio.sleep(self.metrics_delay)
        return Response(self.metrics_text, media_type="text/plain; version=0.0.4")

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
        if self.gate is not None:
            await self.gate.wait()
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
        text = request.url.path == "/v1/completions"
        self.served += 1
        completion_id = f"{'cmpl' if text else 'chatcmpl'}-fake{self.served}"
        if payload.get("stream"):
            options = payload.get("stream_options") or {}
            usage = self.usage_in_stream and options.get("include_usage") is True
            return StreamingResponse(
                self._stream(completion_id, created, text=text, usage=usage),
                media_type="text/event-stream",
            )
        if not await self._wait(request, self.first_token_delay):
            return Response(status_code=499)
        if self.garbled:
            return Response(b"<html>oops", media_type="application/json")
        content = "".join(CONTENT[: self.chunks])
        choice: dict[str, Any] = {"index": 0, "finish_reason": self.finish_reason}
        if text:
            choice["text"] = content
        else:
            choice["message"] = {"role": "assistant", "content": content}
            if self.reasoning_chunks:
                choice["message"][self.reasoning_field] = "".join(self.reasoning())
        return JSONResponse(
            {
                "id": completion_id,
                "object": "text_completion" if text else "chat.completion",
                "created": created,
                "model": self.model,
                "choices": [choice],
                "usage": self.usage(),
            }
        )

    def reasoning(self) -> list[str]:
        return [REASONING[index % len(REASONING)] for index in range(self.reasoning_chunks)]

    def usage(self) -> dict[str, Any]:
        completion = self.chunks + self.reasoning_chunks  # thinking is generated tokens too
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }
        if self.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return usage

    async def _stream(
        self, completion_id: str, created: int, *, text: bool, usage: bool
    ) -> AsyncIterator[bytes]:
        def event(body: dict[str, Any]) -> bytes:
            return f"data: {json.dumps(body, separators=(',', ':'))}\n\n".encode()  # as vLLM writes

        def chunk(content: str | None, finish: str | None = None) -> bytes:
            choice: dict[str, Any] = {"index": 0}
            if text:
                choice["text"] = content or ""
            else:
                choice["delta"] = {} if content is None else {"content": content}
                if content == "":
                    choice["delta"]["role"] = "assistant"
            choice["finish_reason"] = finish
            return event(
                {
                    "id": completion_id,
                    "object": "text_completion" if text else "chat.completion.chunk",
                    "created": created,
                    "model": self.model,
                    "choices": [choice],
                }
            )

        def thought(piece: str) -> bytes:
            delta = {self.reasoning_field: piece}
            return event(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": self.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                }
            )

        try:
            await asyncio.sleep(self.first_token_delay)
            if not text:
                yield chunk("")
                for piece in self.reasoning():
                    await asyncio.sleep(self.chunk_delay)
                    yield thought(piece)
            for index in range(self.chunks):
                if self.break_after is not None and index >= self.break_after:
                    raise ConnectionAbortedError("fake upstream breaks off")
                if self.error_after is not None and index >= self.error_after:
                    yield event({"error": {"message": "fake engine error", "code": 500}})
                    yield b"data: [DONE]\n\n"
                    return
                if self.gap_after is not None and index == self.gap_after:
                    await asyncio.sleep(self.gap)
                await asyncio.sleep(self.chunk_delay)
                yield chunk(CONTENT[index % len(CONTENT)])
            yield chunk(None, self.finish_reason)
            if usage:
                yield event(
                    {
                        "id": completion_id,
                        "object": "text_completion" if text else "chat.completion.chunk",
                        "created": created,
                        "model": self.model,
                        "choices": [],
                        "usage": self.usage(),
                    }
                )
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
