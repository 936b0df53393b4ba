"""What a generation costs, in exact decimal USD, from the profile's per-token prices.

Prompt tokens served from the prefix cache are charged at ``input_cache_read`` when that price is
set (non-zero), else at the prompt price; completion tokens at the completion price; every request
adds the per-request price. Floats appear only at the JSON boundary (:meth:`Cost.as_json`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

ZERO = Decimal(0)


@dataclass(frozen=True)
class Prices:
    """USD per token (``request``: per request)."""

    prompt: Decimal = ZERO
    completion: Decimal = ZERO
    input_cache_read: Decimal = ZERO
    request: Decimal = ZERO
    image: Decimal = ZERO

    @classmethod
    def parse(
        cls,
        *,
        prompt: str = "0",
        completion: str = "0",
        input_cache_read: str = "0",
        request: str = "0",
        image: str = "0",
    ) -> Prices:
        return cls(
            prompt=Decimal(prompt),
            completion=Decimal(completion),
            input_cache_read=Decimal(input_cache_read),
            request=Decimal(request),
            image=Decimal(image),
        )

    @property
    def cached_prompt(self) -> Decimal:
        """What one cached prompt token costs."""
        return self.input_cache_read if self.input_cache_read > 0 else self.prompt

    @property
    def is_free(self) -> bool:
        return not any((self.prompt, self.completion, self.input_cache_read, self.request))

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> Cost:
        cached = max(0, min(cached_tokens, prompt_tokens))
        prompt_cost = (prompt_tokens - cached) * self.prompt + cached * self.cached_prompt
        completion_cost = completion_tokens * self.completion
        return Cost(
            prompt=prompt_cost,
            completion=completion_cost,
            total=prompt_cost + completion_cost + self.request,
        )


@dataclass(frozen=True)
class Cost:
    prompt: Decimal
    completion: Decimal
    total: Decimal
    """Prompt + completion + the per-request price."""

    def as_json(self) -> dict[str, Any]:
        """``usage.cost`` and ``usage.cost_details`` as OpenRouter names them (numbers, USD)."""
        return {
            "cost": number(self.total),
            "cost_details": {
                "upstream_inference_cost": number(self.total),
                "upstream_inference_prompt_cost": number(self.prompt),
                "upstream_inference_completions_cost": number(self.completion),
            },
        }


def number(value: Decimal) -> float | int:
    """A JSON number for ``value``: the shortest float that reads back as the same decimal for any
    price with up to 15 significant digits; 0 stays an integer.
    """
    return 0 if value == 0 else float(value)
