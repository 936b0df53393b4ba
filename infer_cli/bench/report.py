"""Results as files: the JSON of a whole benchmark, a CSV of its requests, and comparisons.

The JSON holds everything needed to recompute any figure: the server (URL, model, what its health
and listing said), the workload's parameters, the load settings, and per run (one per concurrency
level of a sweep) the summary, the engine's counter deltas and every request record with its
chunk times. ``partial`` says whether the benchmark ran to its end.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infer_cli.bench.records import CSV_COLUMNS, RequestRecord, csv_row
from infer_cli.errors import InferError, UsageError

FORMAT = "infer-bench/1"


class ReportError(UsageError):
    """A results file cannot be read (missing, not JSON, not infer bench's)."""


@dataclass
class RunResult:
    label: str
    concurrency: int | None
    rate: float | None
    summary: dict[str, Any]
    records: list[RequestRecord] = field(default_factory=list)
    engine: dict[str, Any] | None = None
    stopped: str | None = None
    started: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "concurrency": self.concurrency,
            "rate": self.rate,
            "started": self.started,
            "stopped": self.stopped,
            "summary": self.summary,
            "engine": self.engine,
            "requests": [record.as_dict() for record in self.records],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        return cls(
            label=str(data.get("label", "run")),
            concurrency=data.get("concurrency"),
            rate=data.get("rate"),
            summary=dict(data.get("summary") or {}),
            records=[RequestRecord.from_dict(r) for r in data.get("requests") or ()],
            engine=data.get("engine"),
            stopped=data.get("stopped"),
            started=float(data.get("started") or 0.0),
        )


@dataclass
class BenchResult:
    server: dict[str, Any]
    workload: dict[str, Any]
    load: dict[str, Any]
    lengths: dict[str, Any]
    runs: list[RunResult] = field(default_factory=list)
    partial: bool = False
    reason: str | None = None
    created: str = ""
    version: str = ""
    warmup: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "created": self.created,
            "infer_version": self.version,
            "partial": self.partial,
            "reason": self.reason,
            "server": self.server,
            "workload": self.workload,
            "load": self.load,
            "lengths": self.lengths,
            "warmup": self.warmup,
            "runs": [run.as_dict() for run in self.runs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        return cls(
            server=dict(data.get("server") or {}),
            workload=dict(data.get("workload") or {}),
            load=dict(data.get("load") or {}),
            lengths=dict(data.get("lengths") or {}),
            runs=[RunResult.from_dict(run) for run in data.get("runs") or ()],
            partial=bool(data.get("partial")),
            reason=data.get("reason"),
            created=str(data.get("created") or ""),
            version=str(data.get("infer_version") or ""),
            warmup=data.get("warmup"),
        )

    @property
    def failed(self) -> int:
        return sum(int(run.summary.get("requests", {}).get("failed", 0)) for run in self.runs)

    @property
    def total(self) -> int:
        return sum(int(run.summary.get("requests", {}).get("total", 0)) for run in self.runs)


def dumps(result: BenchResult) -> str:
    return json.dumps(finite(result.as_dict()), separators=(",", ":"))


def finite(value: Any) -> Any:
    """JSON has no infinity: an unlimited rate is written as null."""
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value


def write_json(result: BenchResult, path: Path) -> None:
    _write(path, dumps(result) + "\n")


def write_csv(result: BenchResult, path: Path) -> None:
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for run in result.runs:
        for record in run.records:
            writer.writerow(csv_row(run.label, record))
    _write(path, buffer.getvalue())


def _write(path: Path, text: str) -> None:
    try:
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InferError(f"cannot write {path}: {exc.strerror or exc}") from None


def read(path: Path) -> BenchResult:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"results file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"cannot read results file {path}: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ReportError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ReportError(
            f"{path} is not an infer bench result",
            hint="write one with `infer bench ... --output FILE.json`",
        )
    return BenchResult.from_dict(data)


# --- compare -----------------------------------------------------------------------------------

HIGHER, LOWER = "higher", "lower"

COMPARED: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("requests/s", ("throughput", "requests_per_s"), HIGHER),
    ("output tokens/s", ("throughput", "output_tokens_per_s"), HIGHER),
    ("goodput requests/s", ("goodput", "requests_per_s"), HIGHER),
    ("TTFT mean ms", ("latency_ms", "ttft", "mean"), LOWER),
    ("TTFT median ms", ("latency_ms", "ttft", "median"), LOWER),
    ("TTFT p99 ms", ("latency_ms", "ttft", "p99"), LOWER),
    ("TPOT median ms", ("latency_ms", "tpot", "median"), LOWER),
    ("TPOT p99 ms", ("latency_ms", "tpot", "p99"), LOWER),
    ("ITL median ms", ("latency_ms", "itl", "median"), LOWER),
    ("ITL p99 ms", ("latency_ms", "itl", "p99"), LOWER),
    ("E2E median ms", ("latency_ms", "e2e", "median"), LOWER),
    ("E2E p99 ms", ("latency_ms", "e2e", "p99"), LOWER),
    ("cache hit rate", ("cache", "hit_rate"), HIGHER),
    ("cold TTFT median ms", ("cache", "cold", "ttft_ms", "median"), LOWER),
    ("warm TTFT median ms", ("cache", "warm", "ttft_ms", "median"), LOWER),
    ("engine prefix hit rate", ("engine", "prefix_cache_hit_rate"), HIGHER),
    ("engine external hit rate", ("engine", "external_hit_rate"), HIGHER),
    ("engine TTFT mean ms", ("engine", "latency_ms", "ttft", "mean"), LOWER),
    ("engine TPOT mean ms", ("engine", "latency_ms", "tpot", "mean"), LOWER),
    ("engine queue mean ms", ("engine", "latency_ms", "queue", "mean"), LOWER),
    ("failed requests", ("requests", "failed"), LOWER),
)


@dataclass(frozen=True)
class Change:
    metric: str
    a: float | None
    b: float | None
    change: float | None
    """Change from ``a`` to ``b``, in ``unit``."""
    better: bool | None
    """Whether ``b`` is better than ``a`` (``None``: equal or not comparable)."""
    unit: str = "%"
    """``%`` (relative change) or ``pp`` (percentage points, for rates)."""


@dataclass(frozen=True)
class Comparison:
    label: str
    changes: list[Change]


def lookup(summary: dict[str, Any], path: Sequence[str]) -> float | None:
    value: Any = summary
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def compare_runs(a: RunResult, b: RunResult) -> list[Change]:
    sa = {**a.summary, "engine": a.engine or {}}
    sb = {**b.summary, "engine": b.engine or {}}
    changes = []
    for name, path, direction in COMPARED:
        va, vb = lookup(sa, path), lookup(sb, path)
        if va is None and vb is None:
            continue
        change = None
        points = "rate" in name  # rates change in percentage points
        if va is not None and vb is not None and (points or va != 0):
            change = (vb - va) * 100 if points else (vb - va) / abs(va) * 100
        better = None
        if va is not None and vb is not None and va != vb:
            better = (vb > va) if direction == HIGHER else (vb < va)
        changes.append(Change(name, va, vb, change, better, "pp" if points else "%"))
    return changes


def compare(a: BenchResult, b: BenchResult) -> list[Comparison]:
    """Runs paired by label (a single run each: paired whatever their labels)."""
    if len(a.runs) == 1 and len(b.runs) == 1:
        pairs = [(a.runs[0], b.runs[0])]
    else:
        theirs = {run.label: run for run in b.runs}
        pairs = [(run, theirs[run.label]) for run in a.runs if run.label in theirs]
    if not pairs:
        raise UsageError(
            "the two results have no run in common",
            hint="compare results of the same sweep levels (labels such as c=4)",
        )
    return [Comparison(x.label, compare_runs(x, y)) for x, y in pairs]


def comparison_json(a: Path, b: Path, comparisons: list[Comparison]) -> dict[str, Any]:
    return {
        "a": str(a),
        "b": str(b),
        "runs": [
            {
                "label": comparison.label,
                "changes": [
                    {
                        "metric": c.metric,
                        "a": c.a,
                        "b": c.b,
                        "change": None if c.change is None else round(c.change, 2),
                        "unit": c.unit,
                        "better": c.better,
                    }
                    for c in comparison.changes
                ],
            }
            for comparison in comparisons
        ],
    }
