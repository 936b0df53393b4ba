"""OpenRouter's ``reasoning`` request object, in the terms vLLM understands.

OpenRouter clients ask for reasoning with ``{"effort", "max_tokens", "exclude", "enabled"}``;
vLLM (with a ``--reasoning-parser``) reads ``reasoning_effort`` (which also switches thinking on or
off in chat templates that have ``enable_thinking``), ``thinking_token_budget`` and
``include_reasoning``. Fields the client set in vLLM's own terms win. An engine without a reasoning
parser ignores the effort and ``include_reasoning`` but refuses a budget, so a budget is only sent
when the profile names a parser (OpenRouter, too, ignores reasoning settings for models without
reasoning).
"""

from __future__ import annotations

from typing import Any

from infer_cli.proxy.errors import ProxyError

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
