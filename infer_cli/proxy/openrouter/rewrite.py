"""The engine's completion answers, rewritten into OpenRouter's: pure functions on parsed JSON.

- ``finish_reason`` becomes one of OpenRouter's (``stop``, ``length``, ``tool_calls``,
  ``content_filter``, ``error``); the engine's own value moves to ``native_finish_reason``.
- ``usage`` gets ``prompt_tokens_details.cached_tokens`` (0 when the engine gave none),
  ``completion_tokens_details.reasoning_tokens``, ``cost`` and ``cost_details``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infer_cli.proxy.openrouter.pricing import Cost, Prices

_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "error": "error",
    "abort": "error",
}


def normalize_finish_reason(native: object) -> str | None:
    """OpenRouter's finish reason for the engine's; anything unknown (``eos``, a stop string, ...)
    ended normally: ``stop``.
    """
    if native is None:
        return None
    return _FINISH_REASONS.get(str(native), "stop")


@dataclass(frozen=True)
class Finish:
    reason: str | None
    native: str | None


def normalize_choices(choices: object) -> Finish | None:
    """Rewrite every finished choice's finish reason in place; the first one's, if any."""
    found: Finish | None = None
    if not isinstance(choices, list):
        return None
    for choice in choices:
        if not isinstance(choice, dict) or choice.get("finish_reason") is None:
            continue
        native = str(choice["finish_reason"])
        choice["finish_reason"] = normalize_finish_reason(native)
        choice["native_finish_reason"] = native
        if found is None:
            found = Finish(choice["finish_reason"], native)
    return found


@dataclass(frozen=True)
class Tokens:
    prompt: int = 0
    completion: int = 0
    cached: int = 0


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def read_tokens(usage: object) -> Tokens:
    if not isinstance(usage, dict):
        return Tokens()
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Tokens(
        _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")), _count(cached)
    )


def complete_usage(usage: dict[str, Any], prices: Prices) -> tuple[Tokens, Cost]:
    """Fill in ``usage`` (in place) as OpenRouter reports it; its counts and cost."""
    tokens = read_tokens(usage)
    usage["prompt_tokens"] = tokens.prompt
    usage["completion_tokens"] = tokens.completion
    usage["total_tokens"] = tokens.prompt + tokens.completion
    details = usage.get("prompt_tokens_details")
    details = dict(details) if isinstance(details, dict) else {}
    details["cached_tokens"] = tokens.cached
    created = details.get("created_cache_tokens")
    if isinstance(created, int) and "cache_write_tokens" not in details:
        details["cache_write_tokens"] = created  # vLLM's name for what OpenRouter calls this
    usage["prompt_tokens_details"] = details
    completion = usage.get("completion_tokens_details")
    completion = dict(completion) if isinstance(completion, dict) else {}
    completion.setdefault("reasoning_tokens", 0)
    usage["completion_tokens_details"] = completion
    cost = prices.cost(tokens.prompt, tokens.completion, tokens.cached)
    usage.update(cost.as_json())
    return tokens, cost


def usage_from(tokens: Tokens, prices: Prices) -> tuple[dict[str, Any], Cost]:
    """A whole ``usage`` object from counts (when the engine sent none)."""
    usage: dict[str, Any] = {
        "prompt_tokens": tokens.prompt,
        "completion_tokens": tokens.completion,
        "prompt_tokens_details": {"cached_tokens": tokens.cached},
    }
    _, cost = complete_usage(usage, prices)
    return usage, cost
