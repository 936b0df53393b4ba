"""Sums and look-ups over a Prometheus text's samples (parsed by ``infer_cli.wire.prometheus``).

Used by ``infer status`` (the proxy's ``infer_proxy_*`` metrics and the engine's ``vllm:*`` ones
behind them) and by ``infer bench`` (cache-hit deltas over a run). A malformed line is skipped,
never fatal (a status screen must not die on one odd line).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from infer_cli.wire.prometheus import Sample, parse


class Samples:
    """Look-ups over parsed samples: sums of counters and gauges across label sets."""

    def __init__(self, samples: Iterable[Sample]):
        self._by_name: dict[str, list[Sample]] = {}
        for sample in samples:
            self._by_name.setdefault(sample.name, []).append(sample)

    @classmethod
    def from_text(cls, text: str) -> Samples:
        return cls(parse(text))

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        return list(self._by_name)

    def samples(self, name: str, **labels: str) -> list[Sample]:
        return [s for s in self._by_name.get(name, ()) if s.matches(labels)]

    def total(self, name: str, **labels: str) -> float | None:
        """Sum over every sample of ``name`` matching ``labels``; ``None`` when there is none.

        A counter may be named with or without its ``_total`` suffix.
        """
        found = self.samples(name, **labels)
        if not found:
            found = self.samples(_other_spelling(name), **labels)
        if not found:
            return None
        return math.fsum(s.value for s in found)

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """``name`` summed per value of ``label`` (e.g. requests per status)."""
        totals: dict[str, float] = {}
        for sample in self.samples(name) or self.samples(_other_spelling(name)):
            key = sample.labels.get(label, "")
            totals[key] = totals.get(key, 0.0) + sample.value
        return totals


def _other_spelling(name: str) -> str:
    """A counter's name with its ``_total`` suffix added or removed."""
    return name.removesuffix("_total") if name.endswith("_total") else name + "_total"


def ratio(hits: float | None, queries: float | None) -> float | None:
    """``hits / queries`` or ``None`` when there were no queries (a rate of nothing is unknown)."""
    if hits is None or queries is None or queries <= 0:
        return None
    return hits / queries
