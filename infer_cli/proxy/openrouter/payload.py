"""A completion request on its way to the engine: validated, its model resolved, OpenRouter's own
fields removed (its ``reasoning`` object translated first), usage asked for, its size estimated.

``openrouter.max_output_length`` is both the cap and the default of ``max_tokens``: a larger
``max_tokens`` is a 400 (``max_tokens_exceeded``, as OpenRouter types it); a request without one
gets the maximum, or what room the context leaves when the prompt may be long (see
:func:`default_max_tokens`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, ValidationError

from infer_cli.proxy.errors import ProxyError
from infer_cli.proxy.guards.accounting import PromptSize, prompt_size
from infer_cli.proxy.guards.bounds import BodyBounds, check_messages, check_shape
from infer_cli.proxy.openrouter.listing import ProviderInfo
from infer_cli.proxy.openrouter.schemas import ChatCompletionRequest, CompletionRequest

OPENROUTER_ONLY = frozenset(
    {
        "provider",
        "models",
        "route",
        "transforms",
        "plugins",
        "reasoning",
        "usage",
        "session_id",
        "top_a",  # an OpenRouter sampling parameter vLLM does not implement
    }
)
"""Fields a client of OpenRouter may send that the engine must not see."""

_ENGINE_ONLY_STREAM_OPTIONS = frozenset({"continuous_usage_stats"})
_MAX_ERRORS = 5
DEFAULT_BOUNDS = BodyBounds()


@dataclass(frozen=True)
class CompletionKind:
    """One kind of completion: where it goes upstream and how its answers look."""

    path: str
    """Below ``/v1/``: ``chat/completions`` or ``completions``."""
    schema: type[BaseModel]
    text: bool
    """Text completions (``choices[].text``) rather than chat (``choices[].message|delta``)."""


CHAT = CompletionKind("chat/completions", ChatCompletionRequest, text=False)
TEXT = CompletionKind("completions", CompletionRequest, text=True)


@dataclass(frozen=True)
class Prepared:
    body: bytes
    """What the engine gets."""
    model: str
    """The model the client asked for, as it asked (for records and error events)."""
    stream: bool
    payload: dict[str, Any] | None = None
    """The engine's copy, parsed."""
    size: PromptSize = field(default_factory=lambda: PromptSize(0, 0))
    count_prompt: bool = False
    """``max_tokens`` is to be defaulted, but the prompt may be too long for the maximum: count
    it with the engine and call :func:`default_max_tokens` with the count."""


def prepare(
    endpoint: CompletionKind,
    raw: bytes,
    info: ProviderInfo,
    context_length: int | None = None,
    *,
    bounds: BodyBounds = DEFAULT_BOUNDS,
) -> Prepared:
    """Validate a completion request and build the engine's copy, or raise a :class:`ProxyError`
    (400 invalid, 404 unknown model, 413 too many JSON values: see
    :mod:`~infer_cli.proxy.guards.bounds`).
    """
    payload = _parse(raw, bounds)
    _validate(endpoint, payload)
    requested = payload.get("model")
    if requested is not None and not info.accepts(requested):
        raise ProxyError(
            404,
            f"model '{requested}' is not served here; this endpoint serves '{info.model}'",
            metadata={"model": requested, "available": [info.model]},
        )
    _check_max_tokens(payload, info)
    stream = payload.get("stream") is True
    changed = _to_engine(payload, info, stream)
    size = prompt_size(payload, text=endpoint.text)
    limit = info.max_output_length
    count_prompt = False
    if limit and _asked(payload) is None:
        if context_length is None or size.upper + limit <= context_length:
            payload["max_tokens"] = limit
            changed = True
        else:
            count_prompt = True
    body = json.dumps(payload, separators=(",", ":")).encode() if changed else raw
    return Prepared(
        body=body,
        model=requested or info.model,
        stream=stream,
        payload=payload,
        size=size,
        count_prompt=count_prompt,
    )


def default_max_tokens(
    prepared: Prepared, limit: int, context_length: int, prompt_tokens: int | None
) -> Prepared:
    """``prepared`` with ``max_tokens``: ``limit``, or less when the prompt (``prompt_tokens``, the
    engine's count) leaves less room in the context; unchanged when there is no count or no room
    (the engine then applies its own default, or says that the prompt is too long)."""
    payload = prepared.payload
    if payload is None or prompt_tokens is None or prompt_tokens >= context_length:
        return replace(prepared, count_prompt=False)
    payload["max_tokens"] = min(limit, context_length - prompt_tokens)
    body = json.dumps(payload, separators=(",", ":")).encode()
    return replace(
        prepared, body=body, count_prompt=False, size=PromptSize(prompt_tokens, prompt_tokens)
    )


def _asked(payload: dict[str, Any]) -> object:
    return payload.get("max_completion_tokens") or payload.get("max_tokens")


def _parse(raw: bytes, bounds: BodyBounds) -> dict[str, Any]:
    if not raw.strip():
        raise ProxyError(400, "the request body is empty; send a JSON object")
    check_shape(raw, bounds)  # before json.loads, whose cost grows with the values
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        text = str(exc)[:200] or type(exc).__name__
        raise ProxyError(400, f"the request body is not valid JSON: {text}") from exc
    if not isinstance(payload, dict):
        raise ProxyError(400, "the request body must be a JSON object")
    check_messages(payload, bounds)  # before any work per message
    return payload


def _validate(endpoint: CompletionKind, payload: dict[str, Any]) -> None:
    try:
        endpoint.schema.model_validate(payload)
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors(include_url=False)]
        shown = "; ".join(problems[:_MAX_ERRORS])
        if len(problems) > _MAX_ERRORS:
            shown += f"; and {len(problems) - _MAX_ERRORS} more"
        raise ProxyError(
            400, f"invalid request: {shown}", metadata={"errors": problems[:20]}
        ) from None


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error.get("loc", ())) or "body"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{location}: {message}"


def _check_max_tokens(payload: dict[str, Any], info: ProviderInfo) -> None:
    limit = info.max_output_length
    for name in ("max_completion_tokens", "max_tokens"):  # each, as the document says (2.0 too)
        asked = payload.get(name)
        if limit and isinstance(asked, int | float) and asked > limit:
            raise ProxyError(
                400,
                f"{name} {int(asked)} is more than this model's maximum output of {limit} tokens",
                error_type="max_tokens_exceeded",
                metadata={"max_output_length": limit},
            )


def _to_engine(payload: dict[str, Any], info: ProviderInfo, stream: bool) -> bool:
    """Edit ``payload`` into the engine's copy; True when anything changed."""
    changed = False
    model = info.model
    reasoning = engine_fields(payload.get("reasoning"), allow_budget=info.reasoning_parser)
    for name, value in reasoning.items():
        payload.setdefault(name, value)
    for name in OPENROUTER_ONLY.intersection(payload):
        del payload[name]
        changed = True
    if payload.get("model") != model:
        payload["model"] = model
        changed = True
    options = payload.get("stream_options")
    if stream:
        wanted = {
            key: value
            for key, value in (options if isinstance(options, dict) else {}).items()
            if key not in _ENGINE_ONLY_STREAM_OPTIONS
        }
        wanted["include_usage"] = True
        if options != wanted:
            payload["stream_options"] = wanted
            changed = True
    elif "stream_options" in payload:
        del payload["stream_options"]  # vLLM rejects stream options without a stream
        changed = True
    return changed


# OpenRouter's ``reasoning`` request object, in the terms vLLM understands.
#
# OpenRouter clients ask for reasoning with ``{"effort", "max_tokens", "exclude", "enabled"}``; vLLM
# (with a ``--reasoning-parser``) reads ``reasoning_effort`` (which also switches thinking on or off
# in chat templates that have ``enable_thinking``), ``thinking_token_budget`` and
# ``include_reasoning``. Fields the client set in vLLM's own terms win. An engine without a
# reasoning parser ignores the effort and ``include_reasoning`` but refuses a budget, so a budget is
# only sent when the profile names a parser (OpenRouter, too, ignores reasoning settings for models
# without reasoning).

EFFORTS = ("xhigh", "high", "medium", "low", "minimal", "none")


def engine_fields(reasoning: Any, *, allow_budget: bool) -> dict[str, Any]:
    """vLLM's fields for an OpenRouter ``reasoning`` object (with ``allow_budget``: the thinking
    budget too); 400 for one that makes no sense."""
    if reasoning is None:
        return {}
    if not isinstance(reasoning, dict):
        raise ProxyError(400, 'reasoning must be an object like {"effort": "high"}')
    fields: dict[str, Any] = {}
    effort = reasoning.get("effort")
    if effort is not None:
        if effort not in EFFORTS:
            raise ProxyError(400, f"reasoning.effort must be one of {', '.join(EFFORTS)}")
        fields["reasoning_effort"] = effort
    budget = reasoning.get("max_tokens")
    if budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
            raise ProxyError(400, "reasoning.max_tokens must be a whole number of at least 0")
        if allow_budget:
            fields["thinking_token_budget"] = budget
    for name in ("exclude", "enabled"):
        if reasoning.get(name) is not None and not isinstance(reasoning[name], bool):
            raise ProxyError(400, f"reasoning.{name} must be true or false")
    if reasoning.get("enabled") is False and effort is None:
        fields["reasoning_effort"] = "none"
    if reasoning.get("exclude") is True:
        fields["include_reasoning"] = False
    return fields
