"""Prometheus text (format 0.0.4): written, parsed and merged through ``prometheus_client``.

Reading is forgiving, because the text comes from engines and routers we do not control and a
status screen must not die on one odd line: a text that ``prometheus_client`` refuses is read again
family by family, then line by line, and only the lines it still refuses are dropped. Label values
come back with their escapes (``\\\\``, ``\\"``, ``\\n``) decoded; ``NaN`` and ``+Inf`` are floats;
timestamps are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric as Family

_PARSE_ERRORS = (ValueError, IndexError, KeyError, TypeError)
"""What ``prometheus_client``'s parser raises on text it cannot read (not only ValueError)."""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    value: float = 0.0

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(self.labels.get(key) == value for key, value in labels.items())


def render(families: Iterable[Family]) -> str:
    """The text exposition of ``families``, in their order."""
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import Collector

    class _Families(Collector):
        def collect(self) -> Iterable[Family]:
            return families

    return generate_latest(_Families()).decode("utf-8")


def families(text: str) -> list[Family]:
    """Every family of ``text``; what cannot be read is left out (see the module's docstring)."""
    try:
        return _parse(text)
    except _PARSE_ERRORS:
        found: list[Family] = []
        for block in _blocks(text):
            try:
                found += _parse(block)
            except _PARSE_ERRORS:
                found += (family for line in block.splitlines() for family in _line(line))
        return found


def parse(text: str) -> list[Sample]:
    """Every sample of ``text``, in order."""
    return [
        Sample(sample.name, sample.labels, float(sample.value))
        for family in families(text)
        for sample in family.samples
    ]


def parse_line(line: str) -> Sample | None:
    """One sample line, or ``None`` when it is not one."""
    found = [Sample(s.name, s.labels, float(s.value)) for f in _line(line) for s in f.samples]
    return found[0] if len(found) == 1 else None


def merge(texts: Sequence[tuple[str, str]], label: str = "replica") -> str:
    """Several sources' texts as one: each family once, each sample labelled by its source.

    ``texts`` are (source, text) pairs, e.g. ``("vllm-0", "...")``; a source of ``""`` adds no
    label (the router's own metrics). Families keep the order they first appear in; a family that
    has no sample is left out (two families of one name would be invalid text).
    """
    from prometheus_client.metrics_core import Metric as Family

    merged: dict[str, Family] = {}
    for source, text in texts:
        for family in families(text):
            if not family.samples:
                continue
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Family(
                    family.name, family.documentation, family.type, family.unit
                )
            for sample in family.samples:
                labels = {**sample.labels, label: source} if source else sample.labels
                into.add_sample(sample.name, labels, sample.value)
    return render(merged.values())


def _parse(text: str) -> list[Family]:
    from prometheus_client.parser import text_string_to_metric_families

    return list(text_string_to_metric_families(text))


def _blocks(text: str) -> Iterator[str]:
    """``text`` cut before each comment that follows a sample: one family per block, mostly."""
    block: list[str] = []
    for line in text.splitlines():
        if line.startswith("#") and block and not block[-1].startswith("#"):
            yield "\n".join(block) + "\n"
            block = []
        block.append(line)
    if block:
        yield "\n".join(block) + "\n"


def _line(line: str) -> list[Family]:
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return []
    try:
        return _parse(stripped + "\n")
    except _PARSE_ERRORS:
        return []
