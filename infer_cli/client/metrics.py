"""Prometheus text exposition (format 0.0.4) parsed into samples, and sums over them.

Used by ``infer status`` (the proxy's ``infer_proxy_*`` metrics and the engine's ``vllm:*`` ones
behind them) and by ``infer bench`` (cache-hit deltas over a run). Comments and ``# HELP`` /
``# TYPE`` lines are skipped; label values keep their escapes (``\\\\``, ``\\"``, ``\\n``) decoded;
``NaN`` and ``+Inf`` parse as floats; a trailing timestamp is ignored; a malformed line is skipped,
never fatal (a status screen must not die on one odd line).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    value: float = 0.0

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(self.labels.get(key) == value for key, value in labels.items())


def parse(text: str) -> list[Sample]:
    """Every sample of an exposition, in order."""
    return list(iter_samples(text.splitlines()))


def iter_samples(lines: Iterable[str]) -> Iterator[Sample]:
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        sample = parse_line(line)
        if sample is not None:
            yield sample


def parse_line(line: str) -> Sample | None:
    """One sample line, or ``None`` when it is not one."""
    match = _NAME.match(line)
    if match is None:
        return None
    name = match.group()
    pos = match.end()
    labels: dict[str, str] = {}
    if pos < len(line) and line[pos] == "{":
        parsed = _parse_labels(line, pos + 1)
        if parsed is None:
            return None
        labels, pos = parsed
    rest = line[pos:].split()
    if not rest:
        return None
    value = _parse_value(rest[0])
    if value is None:
        return None
    return Sample(name, labels, value)


def _parse_labels(line: str, pos: int) -> tuple[dict[str, str], int] | None:
    labels: dict[str, str] = {}
    length = len(line)
    while True:
        while pos < length and line[pos] in " ,":
            pos += 1
        if pos < length and line[pos] == "}":
            return labels, pos + 1
        match = _LABEL_NAME.match(line, pos)
        if match is None:
            return None
        key = match.group()
        pos = match.end()
        while pos < length and line[pos] == " ":
            pos += 1
        if line[pos : pos + 2] != '="':
            return None
        pos += 2
        chars: list[str] = []
        while pos < length and line[pos] != '"':
            if line[pos] == "\\" and pos + 1 < length:
                chars.append(_ESCAPES.get(line[pos + 1], "\\" + line[pos + 1]))
                pos += 2
            else:
                chars.append(line[pos])
                pos += 1
        if pos >= length:
            return None
        labels[key] = "".join(chars)
        pos += 1


def _parse_value(text: str) -> float | None:
    lowered = text.lower()
    if lowered in ("+inf", "inf"):
        return math.inf
    if lowered == "-inf":
        return -math.inf
    try:
        return float(text)
    except ValueError:
        return None


class Samples:
    """Look-ups over parsed samples: sums of counters and gauges across label sets."""

    def __init__(self, samples: Iterable[Sample]):
        self._by_name: dict[str, list[Sample]] = {}
        for sample in samples:
            self._by_name.setdefault(sample.name, []).append(sample)

    @classmethod
    def from_text(cls, text: str) -> Samples:
        return cls(iter_samples(text.splitlines()))

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
