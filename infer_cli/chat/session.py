"""A chat session: the conversation, the model and parameters, and one answer at a time.

:meth:`ChatSession.ask` sends the conversation plus a new user message and hands every piece of
text to a callback as it arrives (and every piece of a reasoning model's thinking to another); it
never raises for a failed answer, it returns a :class:`Reply` that says what happened. Whatever
happens (success, Ctrl-C through :meth:`ChatSession.interrupt`, an error before or during the
stream) the conversation stays consistent:

- an answer, whole or partial, is kept with its question; a partial one is marked ``interrupted``
  or ``error``;
- a question that got no answer at all is not kept, but :meth:`ChatSession.retry` asks it again;
- the thinking is never kept nor sent back (as OpenAI and OpenRouter expect): only the answer is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infer_cli.chat.conversation import Conversation, Message
from infer_cli.chat.stats import AnswerStats, SessionStats
from infer_cli.client.api import Client, reasoning_of
from infer_cli.errors import (
    APIStatusError,
    AuthenticationError,
    ClientError,
    EndpointUnreachableError,
    InferError,
    ModelNotFoundError,
    StreamError,
    UsageError,
)

TextCallback = Callable[[str], None]
SHOWN_MODELS = 8


@dataclass
class Reply:
    text: str
    stats: AnswerStats
    interrupted: bool = False
    error: InferError | None = None
    response: dict[str, Any] | None = None
    """The whole response of a non-streamed request (for ``--json``)."""
    reasoning: str = ""
    """The model's thinking before the answer (reasoning models; not kept in the conversation)."""

    @property
    def ok(self) -> bool:
        return self.error is None and not self.interrupted

    @property
    def started(self) -> bool:
        """Some of the answer arrived."""
        return bool(self.text)


class ChatSession:
    def __init__(self, client: Client, conversation: Conversation):
        self.client = client
        self.conversation = conversation
        self.totals = SessionStats()
        self.last: Reply | None = None
        self.unanswered: str | None = None
        """A question that failed before any answer arrived (what /retry asks again)."""
        self._served: list[str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._interrupting = False
        self.show_reasoning = True
        """Whether the terminal shows the thinking of reasoning models (``/reasoning on|off``)."""

    # --- model ------------------------------------------------------------------------------

    @property
    def model(self) -> str:
        return self.conversation.model or ""

    async def served_models(self, *, refresh: bool = False) -> list[str]:
        if self._served is None or refresh:
            self._served = (await self.client.list_models()).ids
        return self._served

    async def choose_model(self, requested: str | None, *, check: bool = True) -> str:
        """Use ``requested`` (checked against the listing when ``check``), else the first served."""
        if requested and not check:
            self.conversation.model = requested
            return requested
        try:
            served = await self.served_models()
        except (AuthenticationError, EndpointUnreachableError):
            raise
        except ClientError as error:
            if requested:  # no listing to check against: let the server judge
                self.conversation.model = requested
                return requested
            raise UsageError(
                f"cannot tell which model {self.client.endpoint.url} serves ({error.message})",
                hint="pass --model NAME",
            ) from None
        if requested:
            if served and requested not in served:
                raise self.unknown_model(requested, served)
            self.conversation.model = requested
            return requested
        if not served:
            raise UsageError(f"{self.client.endpoint.url} lists no model", hint="pass --model NAME")
        self.conversation.model = served[0]
        return served[0]

    def unknown_model(self, name: str, served: list[str]) -> ModelNotFoundError:
        shown = ", ".join(served[:SHOWN_MODELS])
        if len(served) > SHOWN_MODELS:
            shown += f" and {len(served) - SHOWN_MODELS} more"
        return ModelNotFoundError(
            f"model {name!r} is not served at {self.client.endpoint.url}; it serves: {shown}",
            hint="pick one with --model (or /model); `infer models` lists them",
        )

    # --- asking -----------------------------------------------------------------------------

    def request_body(self, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": self.conversation.api_messages()}
        if stream:
            body["stream_options"] = {"include_usage": True}
        body.update(self.conversation.params)
        return body

    async def ask(
        self,
        text: str,
        on_text: TextCallback | None = None,
        *,
        stream: bool = True,
        on_reasoning: TextCallback | None = None,
    ) -> Reply:
        """Send ``text`` as the next user message; returns when the answer ends, fails or is
        interrupted. ``on_text`` gets each piece of the answer as it arrives, ``on_reasoning`` each
        piece of a reasoning model's thinking (which comes first). Thinking counts as generated
        tokens: its first piece is the first token, and its chunks count like the answer's.
        """
        started = time.perf_counter()
        question = Message("user", text)
        self.conversation.messages.append(question)
        stats = AnswerStats(started=started)
        parts: list[str] = []
        thoughts: list[str] = []
        response: dict[str, Any] | None = None
        error: InferError | None = None
        interrupted = False

        def take(thought: str, piece: str, at: float) -> None:
            if not thought and not piece:
                return
            if stats.first_token is None:
                stats.first_token = at
            stats.last_token = at
            stats.chunks += 1
            if thought:
                thoughts.append(thought)
                if on_reasoning is not None:
                    on_reasoning(thought)
            if piece:
                parts.append(piece)
                if on_text is not None:
                    on_text(piece)

        async def run() -> None:
            nonlocal response
            body = self.request_body(stream=stream)
            if stream:
                async for chunk in self.client.chat_stream(body):
                    self._note(chunk.data, stats)
                    take(chunk.reasoning, chunk.content, chunk.at)
            else:
                response = await self.client.chat(body)
                self._note(response, stats)
                message = _message(response)
                take(reasoning_of(message), _text(message), time.perf_counter())

        self._interrupting = False
        self._task = asyncio.ensure_future(run())
        try:
            await self._task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not self._interrupting or (current is not None and current.cancelling()):
                self._keep(question, "".join(parts), stats, interrupted=True)
                raise
            interrupted = True
        except InferError as exc:
            error = await self._explain(exc)
        except Exception:  # e.g. the text callback's BrokenPipeError: keep what came, as cut short
            self._keep(question, "".join(parts), stats, interrupted=True)
            raise
        finally:
            self._task = None
        stats.finished = time.perf_counter()
        reply = Reply("".join(parts), stats, interrupted, error, response, "".join(thoughts))
        self._keep(question, reply.text, stats, interrupted=interrupted, error=error)
        self.last = reply
        return reply

    async def retry(
        self,
        on_text: TextCallback | None = None,
        *,
        stream: bool = True,
        on_reasoning: TextCallback | None = None,
    ) -> Reply:
        """Drop the last answer and ask its question again (or the question that got none)."""
        messages = self.conversation.messages
        if self.unanswered is not None:
            text = self.unanswered
        elif messages and messages[-1].role == "assistant" and len(messages) >= 2:
            messages.pop()
            text = messages.pop().content
        elif messages and messages[-1].role == "user":
            text = messages.pop().content
        else:
            raise UsageError("nothing to retry yet")
        return await self.ask(text, on_text, stream=stream, on_reasoning=on_reasoning)

    def interrupt(self) -> bool:
        """Stop the answer in progress (Ctrl-C); False when there is none."""
        task = self._task
        if task is None or task.done():
            return False
        self._interrupting = True
        task.cancel()
        return True

    @property
    def answering(self) -> bool:
        return self._task is not None and not self._task.done()

    # --- internals --------------------------------------------------------------------------

    def _note(self, data: dict[str, Any], stats: AnswerStats) -> None:
        if stats.generation_id is None and isinstance(data.get("id"), str):
            stats.generation_id = data["id"]
        usage = data.get("usage")
        if isinstance(usage, dict):
            stats.add_usage(usage)
        for choice in data.get("choices") or ():
            if isinstance(choice, dict) and choice.get("finish_reason"):
                stats.finish_reason = str(choice["finish_reason"])

    def _keep(
        self,
        question: Message,
        text: str,
        stats: AnswerStats,
        *,
        interrupted: bool = False,
        error: InferError | None = None,
    ) -> None:
        """Settle the conversation after an answer (called exactly once per ask)."""
        messages = self.conversation.messages
        if messages and messages[-1] is question:
            if text:
                messages.append(
                    Message(
                        "assistant",
                        text,
                        interrupted=interrupted,
                        error=error.message if error is not None else None,
                        stats=stats.to_json(),
                    )
                )
                self.unanswered = None
            else:
                messages.pop()
                self.unanswered = question.content
        if text or error is None:
            self.totals.add(stats, interrupted=interrupted, error=error is not None)
        elif error is not None:
            self.totals.errors += 1

    async def _explain(self, error: InferError) -> InferError:
        """A 404 about the model becomes "unknown model" with the served ones listed."""
        about_model = "model" in error.message.lower()
        if isinstance(error, APIStatusError) and error.status == 404 and about_model:
            try:
                served = await self.served_models(refresh=True)
            except ClientError:
                return error
            if self.model not in served:
                return self.unknown_model(self.model, served)
        if isinstance(error, StreamError) and not error.message.startswith("the stream"):
            return StreamError(
                f"the answer failed mid-stream: {error.message}", status=error.status
            )
        return error


def _message(response: dict[str, Any]) -> dict[str, Any]:
    """The first choice's ``message`` of a whole answer (empty when there is none)."""
    for choice in response.get("choices") or ():
        if isinstance(choice, dict):
            message = choice.get("message")
            return message if isinstance(message, dict) else {}
    return {}


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else ""
