"""Prometheus metrics: recorded here, written and read as text by ``prometheus_client``.

- :mod:`.metrics`: counters, gauges and histograms with labels, in a registry per app. Recording is
  ours (a dict update per observation): ``benchmarks/metrics_cost.py`` measured
  ``prometheus_client``'s own metric classes at 88-98 µs per 64-chunk completion against 15-16 µs,
  +2.7-3.3% of the proxy's CPU per request (over the 2% issue 14 allowed).
- :mod:`.text`: the text exposition format (0.0.4) written from a registry and parsed into samples
  by ``prometheus_client``, and several sources' texts merged into one (line by line: the proxy
  does it on its event loop at each scrape, ten times faster than through the parser).

``prometheus_client`` is imported when text is written or read, not when this package is: the CLI's
``--help`` never pays for it.
"""

from infer_cli.wire.prometheus.metrics import (
    CONTENT_TYPE,
    Counter,
    CounterView,
    Gauge,
    Histogram,
    Labels,
    Metric,
    Registry,
)
from infer_cli.wire.prometheus.text import Sample, merge, parse, parse_line, render

__all__ = [
    "CONTENT_TYPE",
    "Counter",
    "CounterView",
    "Gauge",
    "Histogram",
    "Labels",
    "Metric",
    "Registry",
    "Sample",
    "merge",
    "parse",
    "parse_line",
    "render",
]
