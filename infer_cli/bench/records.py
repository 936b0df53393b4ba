"""What one request measured: :class:`RequestRecord`, and its JSON form.

Times are seconds: ``scheduled`` and ``sent`` since the run started, every other time since the
request was sent (``time.perf_counter`` throughout). Definitions follow ``vllm bench serve``:
TTFT is the first chunk that carries generated text; E2E is the last such chunk; TPOT is
``(E2E - TTFT) / (output tokens - 1)``; ITL are the gaps between successive text chunks.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields
from typing import Any

ERROR_KINDS = {
    "connect": "could not connect",
    "timeout": "timed out",
    "disconnect": "connection dropped mid-answer",
    "stream_error": "error event in the stream",
    "no_tokens": "answer carried no tokens",
    "cancelled": "cancelled (run stopped)",
    "protocol": "answer was not a valid HTTP/SSE stream",
}
"""Error kinds besides ``http_<status>``."""


@dataclass(slots=True)
class RequestRecord:
    index: int
    phase: str = "main"
    session: int = 0
    turn: int = 0
    group: str | None = None
    cache: str | None = None
    """``cold`` or ``warm`` for a request of a cache group (see ``bench.workloads``)."""
    target_input: int = 0
    """Prompt tokens the workload aimed at (without any chat template or history)."""
    first_seen: int | None = None
    """Target tokens at the end of the prompt that no earlier request of the run had sent (from
    the first new segment on): a cache hit on them came from outside the run."""
    max_tokens: int | None = None
    scheduled: float = 0.0
    sent: float = 0.0
    ttft: float | None = None
    chunks: list[float] = field(default_factory=list)
    """Arrival of every chunk that carried text."""
    end: float | None = None
    """When the answer ended (``[DONE]`` or the end of the body)."""
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    usage: bool = False
    """Token counts came from the answer's usage (else: text chunks were counted)."""
    status: int | None = None
    finish_reason: str | None = None
    error: str | None = None
    """``http_<status>`` or one of :data:`ERROR_KINDS`; ``None`` when the request succeeded."""
    error_message: str | None = None
    warmup: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.ttft is not None

    @property
    def e2e(self) -> float | None:
        return self.chunks[-1] if self.chunks else None

    @property
    def tpot(self) -> float | None:
        e2e, ttft, tokens = self.e2e, self.ttft, self.output_tokens
        if e2e is None or ttft is None or tokens is None or tokens < 2:
            return None
        return (e2e - ttft) / (tokens - 1)

    @property
    def itls(self) -> list[float]:
        chunks = self.chunks
        return [b - a for a, b in itertools.pairwise(chunks)]

    @property
    def send_lag(self) -> float:
        return self.sent - self.scheduled

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["chunks"] = [round(t, 6) for t in self.chunks]
        for name in ("scheduled", "sent", "ttft", "end"):
            value = out[name]
            if isinstance(value, float):
                out[name] = round(value, 6)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["chunks"] = [float(t) for t in values.get("chunks") or ()]
        return cls(**values)


CSV_COLUMNS = (
    "run",
    "index",
    "phase",
    "session",
    "turn",
    "group",
    "cache",
    "scheduled_s",
    "sent_s",
    "ttft_ms",
    "tpot_ms",
    "e2e_ms",
    "chunks",
    "target_input",
    "first_seen",
    "prompt_tokens",
    "cached_tokens",
    "output_tokens",
    "max_tokens",
    "status",
    "finish_reason",
    "error",
    "error_message",
)


def csv_row(run: str, record: RequestRecord) -> list[Any]:
    def ms(value: float | None) -> str:
        return "" if value is None else f"{value * 1000:.3f}"

    def blank(value: Any) -> Any:
        return "" if value is None else value

    return [
        run,
        record.index,
        record.phase,
        record.session,
        record.turn,
        blank(record.group),
        blank(record.cache),
        f"{record.scheduled:.6f}",
        f"{record.sent:.6f}",
        ms(record.ttft),
        ms(record.tpot),
        ms(record.e2e),
        len(record.chunks),
        record.target_input,
        blank(record.first_seen),
        blank(record.prompt_tokens),
        blank(record.cached_tokens),
        blank(record.output_tokens),
        blank(record.max_tokens),
        blank(record.status),
        blank(record.finish_reason),
        blank(record.error),
        blank(record.error_message),
    ]
