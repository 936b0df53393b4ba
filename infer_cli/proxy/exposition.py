"""A minimal Prometheus registry and its text exposition format (version 0.0.4).

Counters, gauges and histograms with labels, rendered as ``# HELP`` / ``# TYPE`` lines and samples
(histograms as cumulative ``_bucket{le=...}`` samples ending with ``+Inf``, then ``_sum`` and
``_count``). Written here rather than taken from ``prometheus_client``: the proxy needs a dozen
metrics, updated on one event loop, with one registry per app (a process-wide default registry
gets in the way of several apps in one test run), and no dependency or import cost.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[str, ...]


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _labels_text(names: Sequence[str], values: Labels, extra: str = "") -> str:
    parts = [f'{name}="{escape_label(value)}"' for name, value in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.label_names = tuple(labels)

    def _check(self, labels: Labels) -> Labels:
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {labels}")
        return labels

    def samples(self) -> Iterable[str]:
        raise NotImplementedError

    def render(self) -> str:
        head = f"# HELP {self.name} {escape_help(self.help)}\n# TYPE {self.name} {self.kind}\n"
        return head + "".join(line + "\n" for line in self.samples())


class Counter(Metric):
    """A monotonically increasing value per label set; the name should end in ``_total``."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[Labels, float] = {}
        if not self.label_names:
            self._values[()] = 0.0

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._check(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def samples(self) -> Iterable[str]:
        for labels, value in self._values.items():
            text = _labels_text(self.label_names, labels)
            yield f"{self.name}{text} {format_value(value)}"


class CounterView(Counter):
    """A counter kept elsewhere (the engine's restarts), read from ``source`` at each scrape."""

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str],
        *,
        source: Callable[[], Mapping[Labels, int | float]],
    ) -> None:
        super().__init__(name, help, labels)
        self._source = source

    def samples(self) -> Iterable[str]:
        self._values = {self._check(k): float(v) for k, v in self._source().items()}
        return super().samples()


class Gauge(Metric):
    """A value that goes up and down, or is read from ``source`` at each scrape."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        *,
        source: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(name, help, labels)
        self._values: dict[Labels, float] = {}
        self._source = source
        if not self.label_names:
            self._values[()] = 0.0

    def set(self, value: float, *labels: str) -> None:
        self._values[self._check(labels)] = value

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        key = self._check(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, *labels: str, amount: float = 1.0) -> None:
        self.inc(*labels, amount=-amount)

    def value(self, *labels: str) -> float:
        if self._source is not None and not labels:
            return self._source()
        return self._values.get(labels, 0.0)

    def samples(self) -> Iterable[str]:
        if self._source is not None:
            self._values[()] = self._source()
        for labels, value in self._values.items():
            yield f"{self.name}{_labels_text(self.label_names, labels)} {format_value(value)}"


class Histogram(Metric):
    """Observations counted in cumulative buckets, with their sum and count, per label set."""

    kind = "histogram"

    def __init__(
        self, name: str, help: str, labels: Sequence[str] = (), *, buckets: Sequence[float]
    ) -> None:
        super().__init__(name, help, labels)
        if "le" in self.label_names:
            raise ValueError("'le' is reserved for histogram buckets")
        bounds = sorted(float(bound) for bound in buckets if not math.isinf(bound))
        if not bounds:
            raise ValueError("a histogram needs at least one finite bucket")
        self.bounds = tuple(bounds)
        # Per label set: counts per bucket (non-cumulative, +Inf last), sum.
        self._counts: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = {}

    def observe(self, value: float, *labels: str) -> None:
        key = self._check(labels)
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = [0] * (len(self.bounds) + 1)
            self._sums[key] = 0.0
        counts[bisect.bisect_left(self.bounds, value)] += 1
        self._sums[key] += value

    def count(self, *labels: str) -> int:
        return sum(self._counts.get(labels, ()))

    def sum(self, *labels: str) -> float:
        return self._sums.get(labels, 0.0)

    def samples(self) -> Iterable[str]:
        names = self.label_names
        for labels, counts in self._counts.items():
            cumulative = 0
            for bound, count in zip((*self.bounds, math.inf), counts, strict=True):
                cumulative += count
                le = 'le="+Inf"' if math.isinf(bound) else f'le="{bound!r}"'
                yield f"{self.name}_bucket{_labels_text(names, labels, le)} {cumulative}"
            plain = _labels_text(names, labels)
            yield f"{self.name}_sum{plain} {format_value(self._sums[labels])}"
            yield f"{self.name}_count{plain} {cumulative}"


M = TypeVar("M", bound=Metric)


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}

    def add(self, metric: M) -> M:
        if metric.name in self._metrics:
            raise ValueError(f"{metric.name} is registered twice")
        self._metrics[metric.name] = metric
        return metric

    def render(self) -> str:
        return "".join(metric.render() for metric in self._metrics.values())


def merge(texts: Sequence[tuple[str, str]], label: str = "replica") -> str:
    """Several Prometheus texts as one: each family once, every sample labelled by its source.

    ``texts`` are (source, text) pairs, e.g. ``("vllm-0", "...")``; a source of ``""`` adds no
    label (the router's own metrics). Families keep the order they first appear in.
    """
    families: dict[str, list[str]] = {}  # name -> HELP/TYPE lines, then samples
    heads: dict[str, int] = {}  # how many head lines each family has
    for source, text in texts:
        family = ""
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = parts[2]
                    lines = families.setdefault(family, [])
                    if not any(
                        head.split(None, 2)[1] == parts[1] for head in lines[: heads.get(family, 0)]
                    ):
                        lines.insert(heads.get(family, 0), line)
                        heads[family] = heads.get(family, 0) + 1
                continue
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if not family or not name.startswith(family):
                family = name  # a sample without a TYPE line of its own
            families.setdefault(family, []).append(_labelled(line, label, source))
    return "".join(line + "\n" for lines in families.values() for line in lines)


def _labelled(sample: str, label: str, source: str) -> str:
    if not source:
        return sample
    pair = f'{label}="{escape_label(source)}"'
    name, brace, rest = sample.partition("{")
    if brace:
        return f"{name}{{{pair},{rest}" if not rest.startswith("}") else f"{name}{{{pair}{rest}"
    name, space, value = sample.partition(" ")
    return f"{name}{{{pair}}}{space}{value}"
