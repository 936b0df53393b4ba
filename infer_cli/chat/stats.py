"""Figures of one answer (time to first token, tokens per second, tokens, cost) and of a session."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class AnswerStats:
    started: float
    """When the request left (:func:`time.perf_counter`, taken when the user pressed Enter)."""
    first_token: float | None = None
    last_token: float | None = None
    finished: float | None = None
    chunks: int = 0
    """Chunks that carried text (an estimate of completion tokens when usage is missing)."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cost: float | None = None
    finish_reason: str | None = None
    generation_id: str | None = None

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.started

    @property
    def total(self) -> float | None:
        return None if self.finished is None else self.finished - self.started

    @property
    def tokens(self) -> int:
        """Completion tokens: the server's count, else the chunks that carried text."""
        return self.completion_tokens if self.completion_tokens is not None else self.chunks

    @property
    def tokens_per_second(self) -> float | None:
        """Decode rate: tokens after the first over the time since the first."""
        if self.first_token is None or self.last_token is None:
            return None
        span = self.last_token - self.first_token
        if span <= 0 or self.tokens < 2:
            return None
        return (self.tokens - 1) / span

    def add_usage(self, usage: dict[str, Any]) -> None:
        self.prompt_tokens = _int(usage.get("prompt_tokens"), self.prompt_tokens)
        self.completion_tokens = _int(usage.get("completion_tokens"), self.completion_tokens)
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict):
            self.cached_tokens = _int(details.get("cached_tokens"), self.cached_tokens)
        cost = usage.get("cost")
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            self.cost = float(cost)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ttft": _round(self.ttft),
            "tokens_per_second": _round(self.tokens_per_second, 2),
            "total_seconds": _round(self.total),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "cost": self.cost,
            "finish_reason": self.finish_reason,
        }
        return {key: value for key, value in data.items() if value is not None}


@dataclass
class SessionStats:
    answers: int = 0
    interrupted: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost: float | None = None
    ttfts: list[float] = field(default_factory=list)
    decode_rates: list[float] = field(default_factory=list)

    def add(self, stats: AnswerStats, *, interrupted: bool = False, error: bool = False) -> None:
        self.answers += 1
        self.interrupted += int(interrupted)
        self.errors += int(error)
        self.prompt_tokens += stats.prompt_tokens or 0
        self.completion_tokens += stats.tokens
        self.cached_tokens += stats.cached_tokens or 0
        if stats.cost is not None:
            self.cost = (self.cost or 0.0) + stats.cost
        if stats.ttft is not None:
            self.ttfts.append(stats.ttft)
        if stats.tokens_per_second is not None:
            self.decode_rates.append(stats.tokens_per_second)

    @property
    def cache_hit_rate(self) -> float | None:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else None


def median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _int(value: Any, default: int | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def summary(stats: AnswerStats) -> str:
    """The line shown after an answer: ``0.21 s to first token · 48.2 tok/s · ...``."""
    parts: list[str] = []
    if stats.ttft is not None:
        parts.append(f"{stats.ttft:.2f} s to first token")
    rate = stats.tokens_per_second
    if rate is not None:
        approx = "" if stats.completion_tokens is not None else "~"
        parts.append(f"{approx}{rate:.1f} tok/s")
    if stats.prompt_tokens is not None:
        cached = f" ({stats.cached_tokens} cached)" if stats.cached_tokens is not None else ""
        parts.append(f"{stats.prompt_tokens} prompt{cached}")
    completion = stats.completion_tokens
    if completion is not None:
        parts.append(f"{completion} completion tokens")
    elif stats.chunks:
        parts.append(f"~{stats.chunks} completion tokens")
    if stats.cost is not None:
        parts.append(format_cost(stats.cost))
    if stats.total is not None:
        parts.append(f"{stats.total:.2f} s")
    if stats.finish_reason == "length":
        parts.append("max_tokens reached")
    return " · ".join(parts)


def format_cost(cost: float) -> str:
    """USD, with enough digits for the fractions of a cent a single answer costs."""
    if cost == 0:
        return "$0"
    if cost >= 0.01:
        return f"${cost:.4f}"
    return f"${cost:.8f}".rstrip("0")
