"""Statistics over request records: pure functions, no I/O.

Percentiles interpolate linearly between order statistics (numpy's default, which ``vllm bench
serve`` uses) and the standard deviation is the population one (``numpy.std``), so figures compare
one to one with vLLM's. Latencies in the summary are milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infer_cli.bench.records import RequestRecord

PERCENTILES = (50.0, 90.0, 99.0)
FIRST_SEEN_WARN = 0.02
"""A run whose first-seen prompt tokens hit the cache more than this was not measured cold."""
SLO_METRICS = ("ttft", "tpot", "e2e")


def percentile(ordered: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of sorted values, linearly interpolated."""
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within [0, 100], got {p}")
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    fraction = rank - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


@dataclass(frozen=True)
class Distribution:
    count: int
    mean: float
    std: float
    min: float
    median: float
    p90: float
    p99: float
    max: float

    def as_dict(self, scale: float = 1.0, digits: int = 3) -> dict[str, float | int]:
        return {
            "count": self.count,
            **{
                name: round(getattr(self, name) * scale, digits)
                for name in ("mean", "std", "min", "median", "p90", "p99", "max")
            },
        }


def describe(values: Iterable[float]) -> Distribution | None:
    ordered = sorted(values)
    if not ordered:
        return None
    count = len(ordered)
    mean = math.fsum(ordered) / count
    variance = math.fsum((value - mean) ** 2 for value in ordered) / count
    return Distribution(
        count=count,
        mean=mean,
        std=math.sqrt(variance),
        min=ordered[0],
        median=percentile(ordered, 50),
        p90=percentile(ordered, 90),
        p99=percentile(ordered, 99),
        max=ordered[-1],
    )


def ms(values: Iterable[float]) -> dict[str, float | int] | None:
    """A distribution of seconds, in milliseconds, as JSON."""
    found = describe(values)
    return found.as_dict(1000.0) if found else None


def parse_slo(text: str | None) -> dict[str, float]:
    """``ttft=500,tpot=50`` (milliseconds; also ``e2e``; ``:`` works like ``=``) -> seconds."""
    if not text:
        return {}
    slo: dict[str, float] = {}
    for part in text.replace(" ", ",").split(","):
        if not part:
            continue
        name, sep, value = part.replace(":", "=").partition("=")
        name = {"e2el": "e2e"}.get(name.strip().lower(), name.strip().lower())
        if not sep or name not in SLO_METRICS:
            raise ValueError(f"bad SLO {part!r}: use ttft=MS, tpot=MS or e2e=MS")
        try:
            milliseconds = float(value.removesuffix("ms"))
        except ValueError:
            raise ValueError(f"bad SLO value {value!r} for {name}: milliseconds expected") from None
        if milliseconds <= 0:
            raise ValueError(f"SLO {name} must be positive")
        slo[name] = milliseconds / 1000
    return slo


def meets(record: RequestRecord, slo: Mapping[str, float]) -> bool:
    """Whether a successful request met every objective (TPOT of a one-token answer is 0)."""
    if not record.ok:
        return False
    values = {"ttft": record.ttft, "tpot": record.tpot or 0.0, "e2e": record.e2e}
    return all((values[name] or 0.0) <= limit for name, limit in slo.items())


def hit_rate(records: Iterable[RequestRecord]) -> tuple[float | None, int, int]:
    """(cached / prompt tokens, cached, prompt) over requests whose usage gave both."""
    cached = prompt = 0
    for record in records:
        if record.prompt_tokens and record.cached_tokens is not None:
            cached += record.cached_tokens
            prompt += record.prompt_tokens
    return (cached / prompt if prompt else None), cached, prompt


def summarize(
    records: Sequence[RequestRecord],
    *,
    duration: float,
    slo: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The summary of one run (warm-up requests left out)."""
    measured = [r for r in records if not r.warmup]
    done = [r for r in measured if r.ok]
    failed = [r for r in measured if not r.ok]
    errors: dict[str, int] = {}
    for record in failed:
        kind = record.error or "no_tokens"
        errors[kind] = errors.get(kind, 0) + 1
    input_tokens = sum(r.prompt_tokens or r.target_input for r in done)
    output_tokens = sum(r.output_tokens or 0 for r in done)
    span = duration if duration > 0 else math.nan
    summary: dict[str, Any] = {
        "requests": {"total": len(measured), "completed": len(done), "failed": len(failed)},
        "duration_s": round(duration, 4),
        "tokens": {
            "input": input_tokens,
            "output": output_tokens,
            "from_usage": bool(done) and all(r.usage for r in done),
        },
        "throughput": {
            "requests_per_s": _round(len(done) / span),
            "output_tokens_per_s": _round(output_tokens / span),
            "total_tokens_per_s": _round((input_tokens + output_tokens) / span),
        },
        "latency_ms": {
            "ttft": ms(r.ttft for r in done if r.ttft is not None),
            "tpot": ms(t for r in done if (t := r.tpot) is not None),
            "itl": ms(gap for r in done for gap in r.itls),
            "e2e": ms(e for r in done if (e := r.e2e) is not None),
        },
        "errors": dict(sorted(errors.items())),
        "cache": cache_summary(done),
        "generator": {"send_lag_ms": ms(r.send_lag for r in measured)},
    }
    if slo:
        good = sum(1 for r in done if meets(r, slo))
        summary["goodput"] = {
            "slo_ms": {name: round(limit * 1000, 3) for name, limit in slo.items()},
            "good": good,
            "requests_per_s": _round(good / span),
            "fraction": _round(good / len(measured)) if measured else None,
        }
    phases = list(dict.fromkeys(r.phase for r in measured))
    if len(phases) > 1:
        summary["phases"] = {name: _phase(measured, name) for name in phases}
    summary["warnings"] = warnings(summary)
    return summary


def first_seen_part(record: RequestRecord) -> tuple[int, int] | None:
    """(first-seen tokens, those of them cached) of one request whose usage gave both counts."""
    if record.first_seen is None or not record.prompt_tokens or record.cached_tokens is None:
        return None
    new = min(record.first_seen, record.prompt_tokens)
    if new <= 0:
        return None
    return new, min(new, max(0, record.cached_tokens - (record.prompt_tokens - new)))


def first_seen_hits(records: Iterable[RequestRecord]) -> dict[str, Any] | None:
    """Hits on the tokens a run sent for the first time, which only an earlier run (or other
    traffic) can explain: per request, cached tokens beyond the prompt's part sent before."""
    parts = [part for record in records if (part := first_seen_part(record)) is not None]
    tokens = sum(new for new, _ in parts)
    if not tokens:
        return None
    cached = sum(hit for _, hit in parts)
    return {
        "requests": len(parts),
        "tokens": tokens,
        "cached_tokens": cached,
        "hit_rate": _round(cached / tokens),
    }


def warnings(summary: Mapping[str, Any]) -> list[str]:
    """What makes a run's figures mean something other than they seem."""
    out = []
    seen = (summary.get("cache") or {}).get("first_seen") or {}
    rate = seen.get("hit_rate")
    if rate is not None and rate > FIRST_SEEN_WARN:
        out.append(
            f"{rate * 100:.1f}% of the prompt tokens this run sent for the first time were "
            "already cached (an earlier run with the same --seed, or other traffic): "
            "its cold figures are not cold"
        )
    return out


def cache_summary(done: Sequence[RequestRecord]) -> dict[str, Any]:
    rate, cached, prompt = hit_rate(done)
    out: dict[str, Any] = {
        "hit_rate": _round(rate),
        "cached_tokens": cached,
        "prompt_tokens": prompt,
    }
    seen = first_seen_hits(done)
    if seen is not None:
        out["first_seen"] = seen
    for kind in ("cold", "warm"):
        chosen = [r for r in done if r.cache == kind]
        if chosen:
            kind_rate, _, _ = hit_rate(chosen)
            out[kind] = {
                "requests": len(chosen),
                "hit_rate": _round(kind_rate),
                "ttft_ms": ms(r.ttft for r in chosen if r.ttft is not None),
            }
    cold, warm = out.get("cold"), out.get("warm")
    if cold and warm and cold["ttft_ms"] and warm["ttft_ms"] and cold["ttft_ms"]["median"]:
        out["warm_over_cold_ttft"] = _round(warm["ttft_ms"]["median"] / cold["ttft_ms"]["median"])
    return out


def _phase(records: Sequence[RequestRecord], name: str) -> dict[str, Any]:
    chosen = [r for r in records if r.phase == name]
    ok = [r for r in chosen if r.ok]
    start = min(r.sent for r in chosen)
    end = max(r.sent + (r.end or r.e2e or 0.0) for r in chosen)
    rate, _, _ = hit_rate(ok)
    return {
        "requests": len(chosen),
        "completed": len(ok),
        "duration_s": round(end - start, 4),
        "ttft_ms": ms(r.ttft for r in ok if r.ttft is not None),
        "hit_rate": _round(rate),
    }


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or math.isnan(value):
        return None
    return round(value, digits)
