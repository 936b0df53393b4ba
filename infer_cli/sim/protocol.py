"""vLLM's OpenAI-compatible protocol, as far as the simulator speaks it: parsing and shapes.

Requests are checked by hand (cheaper than a pydantic model per request, and the messages say what
vLLM would say); a request the simulator cannot honour is refused with 400 rather than half-served.
Responses are plain dicts; stream chunks are built from templates that are filled per step, so a
token costs one small ``json.dumps``. No web framework here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

from infer_cli.config.sim import SimSettings
from infer_cli.sim.engine import Generation, Job
from infer_cli.sim.tokenizer import TemplateError, decode, encode, render_chat, split, token_id
from infer_cli.wire.sse import data_event

Kind = Literal["chat", "completion"]

_ERROR_TYPES = {
    400: "BadRequestError",
    404: "NotFoundError",
    500: "InternalServerError",
    501: "NotImplementedError",
}


class SimError(Exception):
    """A request answered with an error, in vLLM's shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, param=self.param)


def error_body(status: int, message: str, *, param: str | None = None) -> dict[str, Any]:
    """vLLM's ``ErrorResponse``: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = _ERROR_TYPES.get(status)
    if kind is None:
        try:
            kind = HTTPStatus(status).phrase
        except ValueError:
            kind = "Error"
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


def error_event(status: int, message: str) -> bytes:
    """How vLLM reports a failure inside a stream: an error event (then ``[DONE]``)."""
    return data_event(error_body(status, message))


# --- requests -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationRequest:
    kind: Kind
    model: str
    job: Job
    stream: bool
    include_usage: bool
    continuous_usage: bool


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise SimError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise SimError(400, "the request body must be a JSON object")
    return payload


def parse_generation(kind: Kind, body: bytes, settings: SimSettings) -> GenerationRequest:
    """A chat or text completion request, checked, its prompt rendered and tokenized."""
    payload = parse_json(body)
    model = check_model(payload, settings)
    if kind == "chat":
        prompt = encode(_render(payload))
        max_tokens = _int(payload, "max_completion_tokens", 1)
        if max_tokens is None:
            max_tokens = _int(payload, "max_tokens", 1)
        if _flag(payload, "logprobs") or payload.get("top_logprobs"):
            raise _unsupported("logprobs")
    else:
        prompt = _completion_prompt(payload.get("prompt"))
        max_tokens = _int(payload, "max_tokens", 1)
        if payload.get("logprobs") is not None:
            raise _unsupported("logprobs")
        if _flag(payload, "echo"):
            raise _unsupported("echo")
    n = _int(payload, "n", 1)
    if n is not None and n > 1:
        raise SimError(
            400, "the simulated engine generates one choice per request (n=1)", param="n"
        )
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = payload.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise SimError(400, f"'{name}' must be a number", param=name)
    seed = _int(payload, "seed", None)
    stream = _flag(payload, "stream")
    options = payload.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise SimError(400, "'stream_options' must be an object", param="stream_options")
        if options and not stream:
            raise SimError(
                400,
                "Stream options can only be defined when `stream=True`.",
                param="stream_options",
            )
    options = options or {}
    return GenerationRequest(
        kind=kind,
        model=model,
        job=Job(
            prompt=prompt,
            max_tokens=_fit(len(prompt), max_tokens, settings),
            stop=_stop(payload.get("stop")),
            seed=seed,
        ),
        stream=stream,
        include_usage=_flag(options, "include_usage"),
        continuous_usage=_flag(options, "continuous_usage_stats"),
    )


def parse_tokenize(body: bytes, settings: SimSettings) -> dict[str, Any]:
    """vLLM's ``/tokenize``: ``{"prompt"}`` or ``{"messages"}`` -> count, ids (and strings)."""
    payload = parse_json(body)
    check_model(payload, settings)
    if "messages" in payload:
        text = _render(payload)
    else:
        prompt = payload.get("prompt")
        if not isinstance(prompt, str):
            raise SimError(400, "'prompt' (a string) or 'messages' is required", param="prompt")
        text = prompt
    tokens = split(text)
    return {
        "count": len(tokens),
        "max_model_len": settings.context_length,
        "tokens": [token_id(token) for token in tokens],
        "token_strs": tokens if _flag(payload, "return_token_strs") else None,
    }


def parse_detokenize(body: bytes, settings: SimSettings) -> dict[str, Any]:
    """vLLM's ``/detokenize``: ``{"tokens": [ids]}`` -> ``{"prompt": text}``."""
    payload = parse_json(body)
    check_model(payload, settings)
    tokens = payload.get("tokens")
    if not isinstance(tokens, list) or not all(
        isinstance(token, int) and not isinstance(token, bool) and token >= 0 for token in tokens
    ):
        raise SimError(400, "'tokens' must be a list of token ids", param="tokens")
    return {"prompt": decode(tokens)}


def check_model(payload: Mapping[str, Any], settings: SimSettings) -> str:
    model = payload.get("model")
    if model is None or model == settings.model:
        return settings.model
    if not isinstance(model, str):
        raise SimError(400, "'model' must be a string", param="model")
    raise SimError(404, f"The model `{model}` does not exist.", param="model")


def _render(payload: Mapping[str, Any]) -> str:
    messages = payload.get("messages")
    if not isinstance(messages, list):
        raise SimError(400, "'messages' must be a list of messages", param="messages")
    try:
        return render_chat(
            messages,
            add_generation_prompt=_flag(payload, "add_generation_prompt", default=True),
            continue_final_message=_flag(payload, "continue_final_message"),
        )
    except TemplateError as exc:
        raise SimError(400, str(exc), param="messages") from None


def _completion_prompt(prompt: Any) -> list[int]:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        ids = encode(prompt)
    elif isinstance(prompt, list) and all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in prompt
    ):
        ids = list(prompt)
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str | list) for p in prompt):
        raise SimError(400, "the simulated engine takes one prompt per request", param="prompt")
    else:
        raise SimError(400, "'prompt' must be a string or a list of token ids", param="prompt")
    if not ids:
        raise SimError(400, "The prompt cannot be empty.", param="prompt")
    return ids


def _fit(prompt_tokens: int, max_tokens: int | None, settings: SimSettings) -> int:
    """``max_tokens`` as asked (400 if prompt and completion exceed the context) or defaulted."""
    limit = settings.context_length
    if prompt_tokens >= limit:
        raise SimError(
            400,
            f"This model's maximum context length is {limit} tokens. However, your request has "
            f"{prompt_tokens} input tokens. Please reduce the length of the input messages.",
        )
    room = limit - prompt_tokens
    if max_tokens is None:
        return min(settings.max_tokens_default, room)
    if max_tokens > room:
        raise SimError(
            400,
            f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's "
            f"maximum context length is {limit} tokens and your request has {prompt_tokens} input "
            f"tokens ({max_tokens} > {limit} - {prompt_tokens}).",
            param="max_tokens",
        )
    return max_tokens


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(item for item in value if item)
    raise SimError(400, "'stop' must be a string or a list of strings", param="stop")


def _int(payload: Mapping[str, Any], name: str, minimum: int | None) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SimError(400, f"'{name}' must be an integer", param=name)
    if minimum is not None and value < minimum:
        raise SimError(400, f"'{name}' must be at least {minimum}, got {value}", param=name)
    return value


def _flag(payload: Mapping[str, Any], name: str, *, default: bool = False) -> bool:
    value = payload.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise SimError(400, f"'{name}' must be true or false", param=name)
    return value


def _unsupported(what: str) -> SimError:
    return SimError(400, f"the simulated engine does not support {what}", param=what)


# --- responses ------------------------------------------------------------------------------------


def new_id(kind: Kind) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex


def usage(generation: Generation) -> dict[str, Any]:
    """vLLM's usage, with ``prompt_tokens_details.cached_tokens`` (prefix-cache hits)."""
    prompt = generation.prompt_tokens
    completion = generation.completion_tokens
    return {
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "completion_tokens": completion,
        "prompt_tokens_details": {"cached_tokens": generation.cached_tokens},
    }


def completion_body(
    kind: Kind, completion_id: str, created: int, model: str, text: str, generation: Generation
) -> dict[str, Any]:
    """The whole answer of a request that did not stream."""
    choice: dict[str, Any] = {"index": 0}
    if kind == "chat":
        choice["message"] = {"role": "assistant", "content": text, "tool_calls": []}
    else:
        choice["text"] = text
    choice["logprobs"] = None
    choice["finish_reason"] = generation.finish_reason
    choice["stop_reason"] = generation.stop_reason
    return {
        "id": completion_id,
        "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage(generation),
        "system_fingerprint": None,
    }


class StreamEncoder:
    """Server-sent events of one streamed answer, in vLLM's chunk shapes."""

    def __init__(self, kind: Kind, completion_id: str, created: int, model: str) -> None:
        self.kind = kind
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
        self._head = (
            f'data: {{"id":{_dumps(completion_id)},"object":"{obj}","created":{created},'
            f'"model":{_dumps(model)},"choices":['
        )
        self._text_key = (
            '{"index":0,"delta":{"content":' if kind == "chat" else '{"index":0,"text":'
        )
        self._text_end = "}" if kind == "chat" else ""

    def opening(self) -> bytes:
        """What precedes the first token: the assistant's role (chat only)."""
        if self.kind != "chat":
            return b""
        return (
            self._head
            + '{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,'
            + '"finish_reason":null}]}\n\n'
        ).encode()

    def chunk(
        self,
        text: str,
        *,
        finish_reason: str | None = None,
        stop_reason: str | None = None,
        usage: Mapping[str, Any] | None = None,
    ) -> bytes:
        """One chunk of new text; the last one carries the finish reason."""
        if finish_reason is None:
            tail = ',"logprobs":null,"finish_reason":null}]'
        else:
            tail = (
                f',"logprobs":null,"finish_reason":"{finish_reason}",'
                f'"stop_reason":{_dumps(stop_reason)}}}]'
            )
        if self.kind == "chat" and not text and finish_reason is not None:
            body = '{"index":0,"delta":{}'
        else:
            body = self._text_key + _dumps(text) + self._text_end
        if usage is not None:
            tail += ',"usage":' + _dumps(usage)
        return (self._head + body + tail + "}\n\n").encode()

    def usage_chunk(self, usage: Mapping[str, Any]) -> bytes:
        """The last chunk with ``stream_options.include_usage``: no choices, the usage."""
        return (self._head + '],"usage":' + _dumps(usage) + "}\n\n").encode()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
