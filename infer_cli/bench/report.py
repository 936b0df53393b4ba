"""Results as files: the JSON of a whole benchmark and a CSV of its requests.

The JSON holds everything needed to recompute any figure: the server (URL, model, what its health
and listing said), the workload's parameters, the load settings, and per run (one per concurrency
level of a sweep) the summary, the engine's counter deltas and every request record with its
chunk times. ``partial`` says whether the benchmark ran to its end.
"""

from __future__ import annotations

import csv
import json
import math
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
