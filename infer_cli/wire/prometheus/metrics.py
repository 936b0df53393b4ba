"""Counters, gauges and histograms with labels, kept in plain dicts, in one registry per app.

Why not ``prometheus_client``'s own metric classes: the proxy records a completion's metrics on
its event loop (one thread, no lock needed) and ``prometheus_client`` takes a lock and walks the
buckets for each observation; ``benchmarks/metrics_cost.py`` measures what that would add to the
proxy's CPU per request. A registry per app (not a process-wide default) also lets several apps
live in one test run. Writing the text is ``prometheus_client``'s job: :meth:`Registry.families`
hands it metric families, :func:`infer_cli.wire.prometheus.text.render` writes them.

Labels are passed positionally, in the order the metric names them (``counter.inc("/v1/x",
"200")``); a registry's ``labels`` are added to every sample (the simulator's ``engine`` and
``model_name``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric as Family

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[str, ...]


class Metric:
    """A named family of samples, one per label set."""

    kind = "untyped"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.label_names = tuple(labels)

    def _check(self, labels: Labels) -> Labels:
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {labels}")
        return labels

    def samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        """(sample name, labels, value) for each sample, in the order they are written."""
        raise NotImplementedError

    def family(self, labels: Mapping[str, str] | None = None) -> Family:
        """This metric as a ``prometheus_client`` family, ``labels`` added to each sample."""
        from prometheus_client.metrics_core import Metric as Family

        family = Family(self.family_name, self.help, self.kind)
        for name, own, value in self.samples():
            family.add_sample(name, {**labels, **own} if labels else own, value)
        return family

    @property
    def family_name(self) -> str:
        return self.name

    def _labelled(self, values: Labels) -> dict[str, str]:
        return dict(zip(self.label_names, values, strict=True))


class Counter(Metric):
    """A value per label set that only goes up; its name ends in ``_total``."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        if not name.endswith("_total"):
            raise ValueError(f"counter {name} must end in _total")
        super().__init__(name, help, labels)
        self._values: dict[Labels, float] = {}
        if not self.label_names:
            self._values[()] = 0.0

    @property
    def family_name(self) -> str:
        # prometheus_client names a counter's family without the suffix and writes it back.
        return self.name.removesuffix("_total")

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._check(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        for labels, value in self._values.items():
            yield self.name, self._labelled(labels), value


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

    def samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
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

    def samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        if self._source is not None:
            self._values[()] = self._source()
        for labels, value in self._values.items():
            yield self.name, self._labelled(labels), value


class Histogram(Metric):
    """Observations counted in buckets (``le``: an upper bound; ``+Inf`` last), sum and count."""

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
        # Per label set: counts per bucket (not cumulative; +Inf last), and the sum.
        self._counts: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = {}
        if not self.label_names:
            self._start(())

    def _start(self, key: Labels) -> list[int]:
        counts = self._counts[key] = [0] * (len(self.bounds) + 1)
        self._sums[key] = 0.0
        return counts

    def observe(self, value: float, *labels: str) -> None:
        key = self._check(labels)
        counts = self._counts.get(key) or self._start(key)
        counts[bisect.bisect_left(self.bounds, value)] += 1
        self._sums[key] += value

    def observe_all(self, values: Iterable[float], *labels: str) -> None:
        """Each of ``values`` observed (a stream's inter-token gaps: one look-up for them all)."""
        key = self._check(labels)
        counts = self._counts.get(key) or self._start(key)
        bounds = self.bounds
        total = 0.0
        for value in values:
            counts[bisect.bisect_left(bounds, value)] += 1
            total += value
        self._sums[key] += total

    def count(self, *labels: str) -> int:
        return sum(self._counts.get(labels, ()))

    def sum(self, *labels: str) -> float:
        return self._sums.get(labels, 0.0)

    def samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        les = [repr(bound) for bound in self.bounds] + ["+Inf"]
        for labels, counts in self._counts.items():
            named = self._labelled(labels)
            cumulative = 0
            for le, count in zip(les, counts, strict=True):
                cumulative += count
                yield f"{self.name}_bucket", {**named, "le": le}, cumulative
            yield f"{self.name}_count", named, cumulative
            yield f"{self.name}_sum", named, self._sums[labels]


M = TypeVar("M", bound=Metric)


class Registry:
    """The metrics one app exposes, written in the order they were added."""

    def __init__(self, labels: Mapping[str, str] | None = None) -> None:
        self._metrics: dict[str, Metric] = {}
        self.labels = dict(labels or {})

    def add(self, metric: M) -> M:
        if metric.name in self._metrics:
            raise ValueError(f"{metric.name} is registered twice")
        self._metrics[metric.name] = metric
        return metric

    def families(self) -> list[Family]:
        return [metric.family(self.labels) for metric in self._metrics.values()]

    def render(self) -> str:
        from infer_cli.wire.prometheus.text import render

        return render(self.families())
