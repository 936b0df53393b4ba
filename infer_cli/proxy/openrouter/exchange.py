"""One completion from request to record: rewrites the engine's answer into OpenRouter's and keeps
the account of it (id, tokens, cost, timings, how it ended).

The relay drives it: :meth:`Exchange.rewrite_body` for a plain answer, :meth:`Exchange.feed` and
:meth:`Exchange.end` (or :meth:`Exchange.stream` around them) for an event stream,
:meth:`Exchange.upstream_error` / :meth:`Exchange.failed` for errors, and :meth:`Exchange.close`
once the response is over, which hands one :class:`GenerationRecord` to every observer.

Tokens: the engine's usage when it sent one. When it did not (the client went away before the
usage chunk, the engine failed mid-way), the prompt is counted by the engine's ``/tokenize``
(``count_prompt``; the admission estimate if that fails) and the completion is one token per
streamed chunk with output. The cost is always priced from the same counts that the record (and so
``infer_proxy_*_tokens_total`` and the tokens-per-minute budget) carries.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from infer_cli.proxy import errors, sse
from infer_cli.proxy.errors import ProxyError
from infer_cli.proxy.openrouter.generations import GenerationRecord
from infer_cli.proxy.openrouter.passing import ChunkTemplate
from infer_cli.proxy.openrouter.pricing import Prices
from infer_cli.proxy.openrouter.rewrite import Tokens, complete_usage, normalize_choices, usage_from
from infer_cli.proxy.upstream.client import UpstreamStreamError, drain

if TYPE_CHECKING:
    from infer_cli.proxy.guards.limits import Reservation

log = logging.getLogger("infer.proxy")

Observer = Callable[[GenerationRecord], None]

_CONTEXT_LENGTH = re.compile(r"context length|maximum context|too long|max_model_len", re.I)
_decode = json.JSONDecoder().decode
"""``json.loads`` without its per-call checks and keyword handling (one call per streamed chunk)."""


class Exchange:
    def __init__(
        self,
        *,
        model: str,
        route: str,
        streamed: bool,
        text: bool,
        prices: Prices,
        observers: Sequence[Observer],
        key_id: str | None = None,
        created: float | None = None,
        started: float | None = None,
        reservation: Reservation | None = None,
        count_prompt: Callable[[], Awaitable[int | None]] | None = None,
        prompt_estimate: int = 0,
    ) -> None:
        self.model = model
        self.route = route
        self.streamed = streamed
        self.text = text
        self.prices = prices
        self.observers = observers
        self.key_id = key_id
        self.created = time.time() if created is None else created
        self.started = time.monotonic() if started is None else started
        self.id: str | None = None
        self.status = 200
        self.finish_reason: str | None = None
        self.native_finish_reason: str | None = None
        self.tokens: Tokens | None = None
        self.cost = Decimal(0)
        self.error: str | None = None
        self.ttft: float | None = None
        self.itl: list[float] = []
        self._chunks = 0
        self._last_output: float | None = None
        self._upstream_created: int | None = None
        self._usage: dict[str, Any] | None = None
        self._recorded = False
        self.reservation = reservation
        """Tokens counted against the key's budget at admission; settled by :meth:`finish`."""
        self._count_prompt = count_prompt
        self._prompt_estimate = prompt_estimate
        self._engine_usage = False
        self._events = sse.EventSplitter()
        self._template: ChunkTemplate | None = None

    @property
    def completion_id(self) -> str:
        """The id the client sees (the engine's, or one made up for an answer without one)."""
        if self.id is None:
            self.id = f"{'cmpl' if self.text else 'chatcmpl'}-{uuid.uuid4().hex}"
        return self.id

    # --- a plain answer -------------------------------------------------------------------------

    def rewrite_body(self, raw: bytes) -> bytes:
        """The engine's JSON completion as OpenRouter's; :class:`ProxyError` 502 if it is none."""
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            raise self.failed(502, "the engine's answer is not a completion (invalid JSON)")
        if isinstance(body.get("id"), str):
            self.id = body["id"]
        finish = normalize_choices(body["choices"])
        if finish is not None:
            self.finish_reason, self.native_finish_reason = finish.reason, finish.native
        self._account(body)
        return json.dumps(body, separators=(",", ":")).encode()

    def _account(self, body: dict[str, Any]) -> None:
        usage = body.get("usage")
        if isinstance(usage, dict):
            self._engine_usage = True
            self.tokens, cost = complete_usage(usage, self.prices)
        else:
            usage, cost = usage_from(self._estimate(), self.prices)
            body["usage"] = usage
        self.cost = cost.total

    def _estimate(self) -> Tokens:
        """Counts without the engine's usage: one token per streamed chunk with output."""
        self.tokens = Tokens(completion=self._chunks)
        return self.tokens

    # --- an event stream ------------------------------------------------------------------------

    async def stream(self, source: sse.ByteStream) -> sse.ByteStream:
        """The engine's event stream as OpenRouter's: chunks rewritten, the usage chunk last, a
        failure as the mid-stream error chunk; always ends with ``data: [DONE]``.

        Yields whole events only; the events of one upstream read go out together, as they came.
        The relay does the same with :meth:`feed` and :meth:`end` in its own loop, one generator
        fewer for every chunk to pass through.
        """
        try:
            async for raw in source:
                out, ended = self.feed(raw)
                if out:
                    yield out
                if ended:
                    await drain(source)
                    return
        except UpstreamStreamError as error:
            yield self.stream_error(error.status, error.message, error.error_type)
            return
        yield self.end()

    def feed(self, raw: bytes) -> tuple[bytes, bool]:
        """What the client gets for one read of the engine's event stream (whole events only; a
        cut one waits for its end), and whether the stream is over (``[DONE]`` or an error event
        were sent: what follows is to be drained, not sent).

        A plain chunk of the stream's :class:`ChunkTemplate` (learned from the first one parsed),
        a read of its own or one event of a longer read, is counted from its bytes and passed on,
        with no parse.
        """
        template = self._template
        if template is not None and not self._events.pending:
            output = template.output(raw)
            if output is not None:
                if output:
                    self._output()
                return raw, False
        return self._rewrite(self._events.feed(raw))

    def end(self) -> bytes:
        """What the client gets once the engine's stream ended without ``[DONE]``: an unterminated
        last event, then the usage chunk and ``[DONE]``, or the mid-stream error when the engine
        never finished."""
        out, ended = self._rewrite(self._events.rest())
        if ended:
            return out
        if self.finish_reason is None:
            return out + self.stream_error(502, "the engine ended the stream before finishing")
        return out + self._last_events()

    def _rewrite(self, events: list[bytes]) -> tuple[bytes, bool]:
        """What the client gets for some whole events, and whether the stream is over."""
        out = b""
        template = self._template
        for event in events:
            if template is not None:  # a read of several events: each plain one needs no parse
                passed = template.output(event)
                if passed is not None:
                    if passed:
                        self._output()
                    out += event
                    continue
            data = sse.event_data(event)
            if data is None:
                continue  # the engine's own comments; the proxy sends its keep-alives
            try:
                chunk = _decode(data.decode("utf-8", "replace"))
            except ValueError:
                if data.strip() == b"[DONE]":
                    return out + self._last_events(), True
                chunk = None
            if type(chunk) is not dict:
                out += event
            elif "error" in chunk and not chunk.get("choices"):
                status, message = _error_of(chunk["error"])
                return out + self.stream_error(status, message), True
            elif isinstance(chunk.get("usage"), dict):
                self._usage = chunk.pop("usage")  # sent once, last
                if chunk.get("choices"):
                    self._chunk_changed(chunk)
                    out += sse.data_event(chunk)
                else:
                    self._remember(chunk)
            elif self._chunk_changed(chunk):
                out += sse.data_event(chunk)
            else:
                out += event
                if template is None and self.id is not None:
                    template = self._template = ChunkTemplate.learn(event, chunk, text=self.text)
        return out, False

    def _last_events(self) -> bytes:
        return sse.data_event(self._usage_chunk(self._usage)) + sse.DONE

    def _chunk_changed(self, chunk: dict[str, Any]) -> bool:
        """Account for one chunk and rewrite it in place; True when it changed.

        One pass over the choices finds both whether the chunk carries output and whether a
        choice finished (the usual chunk: one choice, some content, no finish reason)."""
        if self.id is None or self._upstream_created is None:
            self._remember(chunk)
        choices = chunk.get("choices")
        if type(choices) is not list:
            return False
        output = finished = False
        for choice in choices:
            if type(choice) is not dict:
                continue
            if not output:
                output = _has_output(choice)
            if choice.get("finish_reason") is not None:
                finished = True
        if output:
            self._output()
        if not finished:
            return False
        finish = normalize_choices(choices)
        if finish is not None and self.finish_reason is None:
            self.finish_reason, self.native_finish_reason = finish.reason, finish.native
        return True

    def _output(self) -> None:
        """A chunk with output came: the first sets the TTFT, each later one an inter-token gap."""
        now = time.monotonic()
        if self._last_output is None:
            self.ttft = now - self.started
        else:
            self.itl.append(now - self._last_output)
        self._last_output = now
        self._chunks += 1

    def _remember(self, chunk: dict[str, Any]) -> None:
        if self.id is None and isinstance(chunk.get("id"), str):
            self.id = chunk["id"]
        if self._upstream_created is None and isinstance(chunk.get("created"), int):
            self._upstream_created = chunk["created"]

    def _usage_chunk(self, usage: dict[str, Any] | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.completion_id,
            "object": "text_completion" if self.text else "chat.completion.chunk",
            "created": self._upstream_created or int(self.created),
            "model": self.model,
            "choices": [],
        }
        if usage is not None:
            body["usage"] = usage
        self._account(body)
        return body

    def stream_error(self, status: int, message: str, error_type: str | None = None) -> bytes:
        """The mid-stream error chunk and ``[DONE]``; the generation ends in error."""
        self.finish_reason = "error"
        self.error = message
        event = sse.error_event(
            status,
            message,
            model=self.model,
            error_type=error_type,
            completion_id=self.completion_id,
            created=self._upstream_created,
            text=self.text,
        )
        return event + sse.DONE

    # --- errors before the answer ---------------------------------------------------------------

    def failed(self, status: int, message: str, **details: Any) -> ProxyError:
        """Record an error answered with an HTTP status; the error to answer with."""
        self.status = status
        self.error = message
        return ProxyError(status, message, **details)

    def note(self, error: ProxyError) -> ProxyError:
        """Record an error the proxy answers with; the same error."""
        self.status = error.status
        self.error = error.message
        return error

    def upstream_error(self, status: int, message: str) -> ProxyError:
        """The engine's error status as the client gets it (see :func:`client_status`)."""
        mapped = client_status(status)
        metadata: dict[str, Any] = {"upstream_status": status}
        error_type = None
        if mapped == 400 and _CONTEXT_LENGTH.search(message):
            error_type = "context_length_exceeded"
        elif mapped == 502:
            error_type = errors.PROVIDER_UNAVAILABLE
        headers = {"Retry-After": str(errors.RETRY_AFTER_SECONDS)} if mapped == 503 else None
        return self.failed(
            mapped, message, error_type=error_type, metadata=metadata, headers=headers
        )

    # --- the end --------------------------------------------------------------------------------

    async def close(self, *, cancelled: bool, status: int | None = None) -> None:
        """Count the prompt when the engine's usage never came although it worked on the request,
        then :meth:`finish`: with the engine's ``/tokenize`` when the client went away, with the
        admission estimate when the engine failed mid-stream (it is not asked again)."""
        try:
            if self._worked_without_usage(cancelled):
                counted = None
                if cancelled and self._count_prompt is not None:
                    counted = await self._count_prompt()
                prompt = counted if counted is not None else self._prompt_estimate
                self.tokens = Tokens(prompt=prompt, completion=self._chunks)
        except Exception:
            log.exception("counting the prompt of an unfinished generation failed")
        finally:
            self.finish(cancelled=cancelled, status=status)

    def _worked_without_usage(self, cancelled: bool) -> bool:
        if self._engine_usage or self._recorded:
            return False
        # An error answered with its own status came before (or instead of) any engine work.
        return cancelled or (self.error is not None and self.status < 400)

    def finish(self, *, cancelled: bool, status: int | None = None) -> GenerationRecord | None:
        """Hand the one record of this generation to every observer (once; later calls do
        nothing).
        """
        if self._recorded:
            return None
        self._recorded = True
        if status is not None and self.status == 200:
            self.status = status
        tokens = self.tokens or self._estimate()
        if not self._engine_usage:
            # Priced from the very counts the record carries (the engine's usage is priced as it
            # arrives, in _account).
            counted = tokens.prompt or tokens.completion
            cost = self.prices.cost(tokens.prompt, tokens.completion, tokens.cached)
            self.cost = cost.total if counted else Decimal(0)
        if self.reservation is not None:
            self.reservation.settle(tokens.prompt + tokens.completion)
        record = GenerationRecord(
            id=self.completion_id,
            model=self.model,
            route=self.route,
            key_id=self.key_id,
            streamed=self.streamed,
            cancelled=cancelled,
            status=self.status,
            finish_reason=self.finish_reason,
            native_finish_reason=self.native_finish_reason,
            prompt_tokens=tokens.prompt,
            completion_tokens=tokens.completion,
            cached_tokens=tokens.cached,
            cost=self.cost,
            created=self.created,
            ttft=self.ttft,
            latency=time.monotonic() - self.started,
            error=self.error,
            itl=tuple(self.itl),
            charged=self.reservation is not None,
        )
        for observer in self.observers:
            try:
                observer(record)
            except Exception:
                log.exception("a generation observer failed on %s", record.id)
        return record


def client_status(upstream: int) -> int:
    """What a client is told for the engine's error status: the engine's own failures (5xx) and a
    refused internal key (401, 403) are 502 (the model is down), a timeout is 408, overload 503.
    """
    if upstream in (401, 403) or (upstream >= 500 and upstream not in (503, 504)):
        return 502
    if upstream == 504:
        return 408
    if upstream == 422:
        return 400
    return upstream


def _has_output(choice: dict[str, Any]) -> bool:
    """A streamed choice with text, content, tool calls or reasoning in it."""
    if choice.get("text"):
        return True
    delta = choice.get("delta")
    return type(delta) is dict and bool(
        delta.get("content")
        or delta.get("tool_calls")
        or delta.get("reasoning_content")
        or delta.get("reasoning")
    )


def _error_of(error: object) -> tuple[int, str]:
    """Status and message of the engine's in-stream error (vLLM: ``{"error": {...}}``)."""
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message")
        status = code if isinstance(code, int) and 400 <= code < 600 else 502
        return client_status(status), str(message or "the engine failed mid-stream")
    return 502, str(error or "the engine failed mid-stream")
