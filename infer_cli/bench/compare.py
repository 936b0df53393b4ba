"""Comparing two saved results so that the comparison cannot fool its reader.

:func:`compare` puts the two runs' workload and load side by side and names the settings that
differ (*material* ones, such as prompt lengths or the request rate, make the figures
incomparable; the command refuses them unless forced), pairs the runs by level and names every
level and figure that only one side has, and judges each change against the runs' own spread: a
percentile bootstrap of the difference ``b - a`` of the figure, resampling each side's requests
(:data:`RESAMPLES` times, seeded, so the same files always give the same answer). A change is
*beyond the spread* when the 99% interval of that difference leaves out 0; only those are shown
as better or worse. Figures that are one number per run (throughput, the engine's counters) have
no per-request spread and are never judged.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from infer_cli.bench.records import RequestRecord
from infer_cli.bench.report import BenchResult, RunResult
from infer_cli.bench.stats import first_seen_part, percentile
from infer_cli.errors import UsageError

RESAMPLES = 1000
CONFIDENCE = 0.99
MIN_RESAMPLES = 200
MAX_RESAMPLED_REQUESTS = 400_000
"""Fewer resamples (down to :data:`MIN_RESAMPLES`) for runs of very many requests."""

HIGHER, LOWER = "higher", "lower"

MATERIAL_LOAD: tuple[str, ...] = ("rate", "burstiness", "num_requests", "duration", "endpoint")
MATERIAL_LOAD += ("temperature", "ignore_eos")
"""Load settings that change what is measured (concurrency is compared level by level)."""
INCIDENTAL_LOAD = ("warmup", "timeout", "seed", "slo_ms")
SERVER = ("url", "model", "profile")


Key = tuple[str, str | None]
KEYS: tuple[Key, ...] = (("ttft", None), ("tpot", None), ("e2e", None))
KEYS += (("ttft", "cold"), ("ttft", "warm"))


@dataclass(frozen=True)
class Sample:
    """One side's successful requests as columns: each latency's values in milliseconds,
    sorted, and (cached, prompt) and (first-seen, of them cached) token pairs."""

    values: dict[Key, list[float]]
    hits: list[tuple[int, int]]
    seen: list[tuple[int, int]]

    @classmethod
    def of(cls, records: Sequence[RequestRecord]) -> Sample:
        values: dict[Key, list[float]] = {}
        for metric, cache in KEYS:
            chosen = (r for r in records if cache is None or r.cache == cache)
            found = (getattr(r, metric) for r in chosen)
            values[(metric, cache)] = sorted(v * 1000 for v in found if v is not None)
        hits = [
            (r.cached_tokens, r.prompt_tokens)
            for r in records
            if r.prompt_tokens and r.cached_tokens is not None
        ]
        seen = [part for r in records if (part := first_seen_part(r)) is not None]
        return cls(values, hits, seen)

    def resample(self, rng: random.Random) -> Sample:
        """As many draws with replacement as there are of each column."""
        values = {
            key: sorted(rng.choices(v, k=len(v))) if v else v for key, v in self.values.items()
        }
        hits = rng.choices(self.hits, k=len(self.hits)) if self.hits else []
        seen = rng.choices(self.seen, k=len(self.seen)) if self.seen else []
        return Sample(values, hits, seen)


Statistic = Callable[[Sample], float | None]


def _stat(metric: str, statistic: str, cache: str | None = None) -> Statistic:
    def compute(sample: Sample) -> float | None:
        values = sample.values[(metric, cache)]
        if not values:
            return None
        if statistic == "mean":
            return math.fsum(values) / len(values)
        return percentile(values, 50.0 if statistic == "median" else 99.0)

    return compute


def _ratio(pairs: list[tuple[int, int]], part: int, whole: int) -> float | None:
    total = sum(pair[whole] for pair in pairs)
    return sum(pair[part] for pair in pairs) / total if total else None


def _hit_rate(sample: Sample) -> float | None:
    return _ratio(sample.hits, 0, 1)


def _first_seen_rate(sample: Sample) -> float | None:
    return _ratio(sample.seen, 1, 0)


@dataclass(frozen=True)
class Figure:
    name: str
    path: tuple[str, ...]
    direction: str
    statistic: Statistic | None = None
    """The figure recomputed from a run's requests (for its spread); ``None``: not judged (one
    number per run; ITL, many correlated gaps per request, which TPOT sums up per request)."""


FIGURES: tuple[Figure, ...] = (
    Figure("requests/s", ("throughput", "requests_per_s"), HIGHER),
    Figure("output tokens/s", ("throughput", "output_tokens_per_s"), HIGHER),
    Figure("goodput requests/s", ("goodput", "requests_per_s"), HIGHER),
    Figure("TTFT mean ms", ("latency_ms", "ttft", "mean"), LOWER, _stat("ttft", "mean")),
    Figure("TTFT median ms", ("latency_ms", "ttft", "median"), LOWER, _stat("ttft", "median")),
    Figure("TTFT p99 ms", ("latency_ms", "ttft", "p99"), LOWER, _stat("ttft", "p99")),
    Figure("TPOT median ms", ("latency_ms", "tpot", "median"), LOWER, _stat("tpot", "median")),
    Figure("TPOT p99 ms", ("latency_ms", "tpot", "p99"), LOWER, _stat("tpot", "p99")),
    Figure("ITL median ms", ("latency_ms", "itl", "median"), LOWER),
    Figure("ITL p99 ms", ("latency_ms", "itl", "p99"), LOWER),
    Figure("E2E median ms", ("latency_ms", "e2e", "median"), LOWER, _stat("e2e", "median")),
    Figure("E2E p99 ms", ("latency_ms", "e2e", "p99"), LOWER, _stat("e2e", "p99")),
    Figure("cache hit rate", ("cache", "hit_rate"), HIGHER, _hit_rate),
    Figure("first-seen hit rate", ("cache", "first_seen", "hit_rate"), LOWER, _first_seen_rate),
    Figure(
        "cold TTFT median ms",
        ("cache", "cold", "ttft_ms", "median"),
        LOWER,
        _stat("ttft", "median", "cold"),
    ),
    Figure(
        "warm TTFT median ms",
        ("cache", "warm", "ttft_ms", "median"),
        LOWER,
        _stat("ttft", "median", "warm"),
    ),
    Figure("engine prefix hit rate", ("engine", "prefix_cache_hit_rate"), HIGHER),
    Figure("engine external hit rate", ("engine", "external_hit_rate"), HIGHER),
    Figure("engine TTFT mean ms", ("engine", "latency_ms", "ttft", "mean"), LOWER),
    Figure("engine TPOT mean ms", ("engine", "latency_ms", "tpot", "mean"), LOWER),
    Figure("engine queue mean ms", ("engine", "latency_ms", "queue", "mean"), LOWER),
    Figure("failed requests", ("requests", "failed"), LOWER),
)


@dataclass(frozen=True)
class Change:
    metric: str
    a: float | None
    b: float | None
    change: float | None
    """Change from ``a`` to ``b``, in ``unit``."""
    better: bool | None
    """Whether ``b`` is better than ``a``: ``None`` when equal, not comparable, or within the
    runs' spread."""
    unit: str = "%"
    """``%`` (relative change) or ``pp`` (percentage points, for rates)."""
    beyond_spread: bool | None = None
    """Whether the change is beyond the runs' own spread (``None``: not judged)."""
    spread: tuple[float, float] | None = None
    """The 99% bootstrap interval of ``b - a``, in the figure's own unit."""


@dataclass(frozen=True)
class Comparison:
    label: str
    changes: list[Change]
    left_out: list[str] = field(default_factory=list)
    """Figures only one side has (``name (only in a)``)."""


@dataclass(frozen=True)
class Setting:
    name: str
    a: Any
    b: Any
    material: bool
    """A difference here makes the runs measure different things."""

    @property
    def differs(self) -> bool:
        return bool(self.a != self.b)


@dataclass
class CompareResult:
    settings: list[Setting]
    comparisons: list[Comparison]
    levels_left_out: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def differences(self) -> list[Setting]:
        return [s for s in self.settings if s.material and s.differs]


def lookup(summary: dict[str, Any], path: Sequence[str]) -> float | None:
    value: Any = summary
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def settings(a: BenchResult, b: BenchResult) -> list[Setting]:
    """The two runs' workload, load and server, row by row."""
    rows = [Setting("workload", a.workload.get("name"), b.workload.get("name"), True)]
    keys = [k for k in (*a.workload, *b.workload) if k != "name"]
    for key in dict.fromkeys(keys):
        rows.append(Setting(key, a.workload.get(key), b.workload.get(key), key != "seed"))
    rows.append(Setting("levels", _levels(a), _levels(b), False))
    for key in (*MATERIAL_LOAD, *INCIDENTAL_LOAD):
        if key in a.workload or key in b.workload:
            continue  # the workload's own count and seed, shown above
        rows.append(Setting(key, a.load.get(key), b.load.get(key), key in MATERIAL_LOAD))
    rows.append(Setting("prompt lengths", _exact(a), _exact(b), False))
    for key in SERVER:
        rows.append(Setting(key, a.server.get(key), b.server.get(key), False))
    return [row for row in rows if row.a is not None or row.b is not None]


def _levels(result: BenchResult) -> str:
    return " ".join(run.label for run in result.runs)


def _exact(result: BenchResult) -> str | None:
    if not result.lengths:
        return None
    return "exact" if result.lengths.get("exact") else "estimated"


def compare(
    a: BenchResult, b: BenchResult, *, resamples: int = RESAMPLES, seed: int = 0
) -> CompareResult:
    """Runs paired by level; a level or figure only one side has is named, never dropped."""
    rows = settings(a, b)
    theirs = {run.label: run for run in b.runs}
    ours = {run.label for run in a.runs}
    pairs = [(run, theirs[run.label]) for run in a.runs if run.label in theirs]
    left_out = [f"{run.label} (only in a)" for run in a.runs if run.label not in theirs]
    left_out += [f"{run.label} (only in b)" for run in b.runs if run.label not in ours]
    if not pairs and len(a.runs) == 1 and len(b.runs) == 1:
        # one run each at different levels: comparable only when forced, as a material change
        pairs, left_out = [(a.runs[0], b.runs[0])], []
        rows.append(Setting("level compared", a.runs[0].label, b.runs[0].label, True))
    if not pairs:
        raise UsageError(
            f"the two results have no level in common (a: {_levels(a) or 'none'}; "
            f"b: {_levels(b) or 'none'})",
            hint="compare results of the same sweep levels (labels such as c=4)",
        )
    rng = random.Random(seed)
    comparisons = [
        compare_runs(x, y, resamples=resamples, rng=rng, label=x.label if x.label == y.label
                     else f"{x.label} / {y.label}")
        for x, y in pairs
    ]  # fmt: skip
    result = CompareResult(rows, comparisons, left_out)
    result.warnings = _warnings(a, b, pairs)
    return result


def _warnings(
    a: BenchResult, b: BenchResult, pairs: list[tuple[RunResult, RunResult]]
) -> list[str]:
    out = []
    nonce_a, nonce_b = a.load.get("nonce"), b.load.get("nonce")
    if nonce_a and nonce_a == nonce_b:
        out.append(
            "a and b sent the same prompts (same --seed): the later one ran on a cache the "
            "earlier one had warmed"
        )
    for side, runs in (("a", [x for x, _ in pairs]), ("b", [y for _, y in pairs])):
        for run in runs:
            for warning in run.summary.get("warnings") or ():
                out.append(f"{side} {run.label}: {warning}")
    for side, result in (("a", a), ("b", b)):
        if result.partial:
            out.append(f"{side} is partial: {result.reason or 'it stopped early'}")
    return out


def compare_runs(
    a: RunResult,
    b: RunResult,
    *,
    resamples: int = RESAMPLES,
    rng: random.Random | None = None,
    label: str | None = None,
) -> Comparison:
    rng = rng or random.Random(0)
    sa = {**a.summary, "engine": a.engine or {}}
    sb = {**b.summary, "engine": b.engine or {}}
    done_a = [r for r in a.records if r.ok and not r.warmup]
    done_b = [r for r in b.records if r.ok and not r.warmup]
    spreads = bootstrap(FIGURES, done_a, done_b, resamples, rng)
    changes, left_out = [], []
    for figure in FIGURES:
        va, vb = lookup(sa, figure.path), lookup(sb, figure.path)
        if va is None and vb is None:
            continue
        if va is None or vb is None:
            left_out.append(f"{figure.name} (only in {'b' if va is None else 'a'})")
            continue
        points = "rate" in figure.name  # rates change in percentage points
        change = None
        if points or va != 0:
            change = (vb - va) * 100 if points else (vb - va) / abs(va) * 100
        spread = spreads.get(figure.name)
        beyond = None if spread is None else not (spread[0] <= 0 <= spread[1])
        better = None
        if beyond and va != vb:
            better = (vb > va) if figure.direction == HIGHER else (vb < va)
        unit = "pp" if points else "%"
        changes.append(Change(figure.name, va, vb, change, better, unit, beyond, spread))
    return Comparison(label or a.label, changes, left_out)


def bootstrap(
    figures: Sequence[Figure],
    a: Sequence[RequestRecord],
    b: Sequence[RequestRecord],
    resamples: int,
    rng: random.Random,
) -> dict[str, tuple[float, float]]:
    """Per judged figure, the percentile-bootstrap interval (:data:`CONFIDENCE`) of
    ``figure(b) - figure(a)``, resampling each side's requests with replacement; a figure
    without two requests a side, or undefined in most resamples, gets none."""
    judged = [f for f in figures if f.statistic is not None]
    if len(a) < 2 or len(b) < 2 or not judged:
        return {}
    rounds = max(MIN_RESAMPLES, min(resamples, MAX_RESAMPLED_REQUESTS // (len(a) + len(b))))
    differences: dict[str, list[float]] = {f.name: [] for f in judged}
    whole_a, whole_b = Sample.of(a), Sample.of(b)
    for _ in range(rounds):
        x, y = whole_a.resample(rng), whole_b.resample(rng)
        for figure in judged:
            assert figure.statistic is not None
            first, second = figure.statistic(x), figure.statistic(y)
            if first is not None and second is not None:
                differences[figure.name].append(second - first)
    tail = (1 - CONFIDENCE) / 2 * 100
    out = {}
    for name, found in differences.items():
        if len(found) >= rounds // 2:
            found.sort()
            out[name] = (percentile(found, tail), percentile(found, 100 - tail))
    return out


def as_json(a: str, b: str, result: CompareResult, *, forced: bool) -> dict[str, Any]:
    return {
        "a": a,
        "b": b,
        "method": f"percentile bootstrap of b - a over each side's requests, {RESAMPLES} "
        f"resamples, {CONFIDENCE:.0%} interval",
        "settings": [
            {"name": s.name, "a": s.a, "b": s.b, "material": s.material, "differs": s.differs}
            for s in result.settings
        ],
        "differences": [s.name for s in result.differences],
        "forced": forced,
        "levels_left_out": result.levels_left_out,
        "warnings": result.warnings,
        "runs": [
            {
                "label": comparison.label,
                "left_out": comparison.left_out,
                "changes": [
                    {
                        "metric": c.metric,
                        "a": c.a,
                        "b": c.b,
                        "change": None if c.change is None else round(c.change, 2),
                        "unit": c.unit,
                        "better": c.better,
                        "beyond_spread": c.beyond_spread,
                        "spread": None if c.spread is None else [round(v, 4) for v in c.spread],
                    }
                    for c in comparison.changes
                ],
            }
            for comparison in result.comparisons
        ],
    }
