"""The one Prometheus registry, its text exposition, the parser and the merge of several sources."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from infer_cli.wire.prometheus import (
    Counter,
    CounterView,
    Gauge,
    Histogram,
    Registry,
    Sample,
    merge,
    parse,
    parse_line,
)
from tests.guard_harness import parse_metrics

# --- exposition -----------------------------------------------------------------------------------


def test_counter_gauge_and_histogram_render_in_the_text_format() -> None:
    registry = Registry()
    counter = registry.add(Counter("x_requests_total", "Requests\nanswered", ("route", "status")))
    gauge = registry.add(Gauge("x_in_flight", "Now \\ then"))
    histogram = registry.add(Histogram("x_seconds", "Time", ("model",), buckets=(5, 0.1, 1)))
    counter.inc("/v1/a", "200")
    counter.inc("/v1/a", "200", amount=2)
    counter.inc('we"ird\\\n', "500")
    gauge.inc()
    gauge.inc()
    gauge.dec()
    for value in (0.05, 0.1, 0.5, 7.0):
        histogram.observe(value, "m")
    assert registry.render() == (
        "# HELP x_requests_total Requests\\nanswered\n"
        "# TYPE x_requests_total counter\n"
        'x_requests_total{route="/v1/a",status="200"} 3.0\n'
        'x_requests_total{route="we\\"ird\\\\\\n",status="500"} 1.0\n'
        "# HELP x_in_flight Now \\\\ then\n"
        "# TYPE x_in_flight gauge\n"
        "x_in_flight 1.0\n"
        "# HELP x_seconds Time\n"
        "# TYPE x_seconds histogram\n"
        'x_seconds_bucket{le="0.1",model="m"} 2.0\n'
        'x_seconds_bucket{le="1.0",model="m"} 3.0\n'
        'x_seconds_bucket{le="5.0",model="m"} 3.0\n'
        'x_seconds_bucket{le="+Inf",model="m"} 4.0\n'
        'x_seconds_count{model="m"} 4.0\n'
        'x_seconds_sum{model="m"} 7.65\n'
    )


def test_mistakes_are_refused() -> None:
    registry = Registry()
    counter = registry.add(Counter("x_total", "X", ("a", "b")))
    with pytest.raises(ValueError, match="twice"):
        registry.add(Gauge("x_total", "again"))
    with pytest.raises(ValueError, match="takes labels"):
        counter.inc("only-one-label")
    with pytest.raises(ValueError, match="only goes up"):
        counter.inc("a", "b", amount=-1)
    with pytest.raises(ValueError, match="_total"):
        Counter("x_requests", "a counter's name ends in _total")
    with pytest.raises(ValueError, match="reserved"):
        Histogram("h", "H", ("le",), buckets=(1,))
    with pytest.raises(ValueError, match="finite bucket"):
        Histogram("h", "H", buckets=(math.inf,))


def test_histogram_buckets_are_cumulative_upper_bounds() -> None:
    histogram = Histogram("h_seconds", "H", buckets=(0.5, 1.0))
    registry = Registry()
    registry.add(histogram)
    empty = parse(registry.render())
    # An unlabelled histogram is written before its first observation, all zero.
    assert [(s.name, s.labels.get("le"), s.value) for s in empty] == [
        ("h_seconds_bucket", "0.5", 0.0),
        ("h_seconds_bucket", "1.0", 0.0),
        ("h_seconds_bucket", "+Inf", 0.0),
        ("h_seconds_count", None, 0.0),
        ("h_seconds_sum", None, 0.0),
    ]
    for value in (0.5, 0.50001, 1.0, 3.0, 3.0):  # a value on a bound counts in that bucket
        histogram.observe(value)
    assert histogram.count() == 5 and histogram.sum() == pytest.approx(8.00001)
    buckets = {
        s.labels["le"]: s.value for s in parse(registry.render()) if s.name == "h_seconds_bucket"
    }
    assert buckets == {"0.5": 1.0, "1.0": 3.0, "+Inf": 5.0}
    one_by_one = Histogram("a", "A", ("m",), buckets=(0.5, 1.0))
    at_once = Histogram("a", "A", ("m",), buckets=(0.5, 1.0))
    values = [0.25, 0.5, 0.75, 2.0, 1.0]
    for value in values:
        one_by_one.observe(value, "x")
    at_once.observe_all(values, "x")
    assert list(one_by_one.samples()) == list(at_once.samples()) and at_once.count("x") == 5


def test_views_read_their_source_at_each_scrape() -> None:
    restarts: dict[tuple[str, ...], int] = {}
    ready = [0.0]
    registry = Registry()
    registry.add(
        CounterView("r_restarts_total", "Restarts", ("process", "reason"), source=lambda: restarts)
    )
    registry.add(Gauge("r_ready", "Ready", source=lambda: ready[0]))
    assert parse_metrics(registry.render()) == {("r_ready", frozenset()): 0.0}
    restarts[("vllm", "exited")] = 2
    ready[0] = 1.0
    assert parse_metrics(registry.render()) == {
        ("r_restarts_total", frozenset({("process", "vllm"), ("reason", "exited")})): 2.0,
        ("r_ready", frozenset()): 1.0,
    }


def test_a_registrys_labels_go_on_every_sample() -> None:
    registry = Registry(labels={"engine": "0", "model_name": "org/m"})
    registry.add(Counter("c_total", "C", ("finished_reason",))).inc("stop", amount=2)
    registry.add(Histogram("h", "H", buckets=(1.0,))).observe(0.5)
    samples = parse(registry.render())
    assert samples[0] == Sample(
        "c_total", {"engine": "0", "finished_reason": "stop", "model_name": "org/m"}, 2.0
    )
    assert all(s.labels["engine"] == "0" and s.labels["model_name"] == "org/m" for s in samples)


def test_importing_the_package_does_not_import_prometheus_client() -> None:
    code = (
        "import sys, infer_cli.wire.prometheus, infer_cli.proxy.metrics, infer_cli.client.metrics;"
        "print('prometheus_client' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


# --- parsing --------------------------------------------------------------------------------------


def test_what_is_written_parses_back_the_same() -> None:
    registry = Registry()
    counter = registry.add(Counter("p_total", "P", ("path",)))
    gauge = registry.add(Gauge("g", "G", ("k",)))
    weird = 'a"b\\c\nd {x="1"} é'
    counter.inc(weird, amount=3)
    gauge.set(math.inf, "inf")
    gauge.set(-math.inf, "-inf")
    gauge.set(1e-7, "small")
    gauge.set(2.5e20, "big")
    gauge.set(math.nan, "nan")
    samples = {
        (s.name, s.labels.get("path", s.labels.get("k"))): s.value for s in parse(registry.render())
    }
    assert samples[("p_total", weird)] == 3.0
    assert samples[("g", "inf")] == math.inf and samples[("g", "-inf")] == -math.inf
    assert samples[("g", "small")] == 1e-7 and samples[("g", "big")] == 2.5e20
    assert math.isnan(samples[("g", "nan")])


def test_odd_lines_are_dropped_and_the_rest_kept() -> None:
    text = (
        "# HELP a_total A\n"
        "# TYPE a_total counter\n"
        'a_total{x="1"} 1\n'
        "a_total{broken 2\n"
        'a_total{x="3"} 3 1712345678000\n'  # a timestamp, dropped
        "# TYPE b gauge\n"
        "b not-a-number\n"
        "b 4\n"
        "no_value\n"
        "# a comment\n"
        "c{} 5\n"
    )
    assert parse(text) == [
        Sample("a_total", {"x": "1"}, 1.0),
        Sample("a_total", {"x": "3"}, 3.0),
        Sample("b", {}, 4.0),
        Sample("c", {}, 5.0),
    ]
    assert parse("") == []
    assert parse_line('a{b="c"} 1') == Sample("a", {"b": "c"}, 1.0)
    assert parse_line("no_value") is None
    assert parse_line("# HELP a A") is None


# --- merging --------------------------------------------------------------------------------------


def _engine(running: int, hits: int) -> str:
    return (
        "# HELP vllm:num_requests_running Running.\n"
        "# TYPE vllm:num_requests_running gauge\n"
        f'vllm:num_requests_running{{model_name="m"}} {running}.0\n'
        "# HELP vllm:prefix_cache_hits_total Hits.\n"
        "# TYPE vllm:prefix_cache_hits_total counter\n"
        f'vllm:prefix_cache_hits_total{{model_name="m"}} {hits}.0\n'
    )


def test_merge_writes_each_family_once_with_each_sample_labelled_by_its_source() -> None:
    router = "# TYPE vllm_router_requests_total counter\nvllm_router_requests_total 7\n"
    text = merge([("vllm-0", _engine(1, 10)), ("vllm-1", _engine(2, 20)), ("", router)])
    lines = text.splitlines()
    assert lines.count("# TYPE vllm:num_requests_running gauge") == 1
    assert lines.count("# HELP vllm:prefix_cache_hits_total Hits.") == 1
    assert lines.index("# TYPE vllm:num_requests_running gauge") < lines.index(
        "# TYPE vllm:prefix_cache_hits_total counter"
    )
    samples = parse_metrics(text)  # strict about the syntax
    running = "vllm:num_requests_running"
    assert samples[(running, frozenset({("model_name", "m"), ("replica", "vllm-0")}))] == 1
    assert samples[(running, frozenset({("model_name", "m"), ("replica", "vllm-1")}))] == 2
    hits = "vllm:prefix_cache_hits_total"
    assert samples[(hits, frozenset({("model_name", "m"), ("replica", "vllm-1")}))] == 20
    assert samples[("vllm_router_requests_total", frozenset())] == 7  # no label for ""


def test_merge_survives_a_source_with_odd_lines_and_one_with_nothing() -> None:
    odd = 'vllm:num_requests_running{model_name="m"} 3\nhalf{ a line\n'
    text = merge([("vllm-0", _engine(1, 10)), ("vllm-1", odd), ("vllm-2", "")], label="r")
    samples = parse_metrics(text)
    running = "vllm:num_requests_running"
    assert samples[(running, frozenset({("model_name", "m"), ("r", "vllm-1")}))] == 3
    assert len(samples) == 3
    assert merge([]) == ""
    # A source's name is escaped; braces inside a quoted label value and a timestamp are kept.
    stamped = 'x{path="a}b"} 1.5 1712345678000\ny{} 2\n'
    assert merge([('we"ird', stamped)]) == (
        'x{replica="we\\"ird",path="a}b"} 1.5 1712345678000\ny{replica="we\\"ird"} 2\n'
    )
