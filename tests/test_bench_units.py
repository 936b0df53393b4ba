"""infer bench's pure parts: statistics, arrivals, workload shapes, reports, engine deltas."""

from __future__ import annotations

import itertools
import json
import math
import random
import statistics
from pathlib import Path

import pytest

from infer_cli.bench import compare, engine_metrics, report, schedule, stats, workloads
from infer_cli.bench.records import RequestRecord
from infer_cli.bench.text import WORDS, TextSource

# --- statistics ----------------------------------------------------------------------------------


def test_percentile_interpolates_like_numpy() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert stats.percentile(values, 0) == 1.0
    assert stats.percentile(values, 100) == 4.0
    assert stats.percentile(values, 50) == 2.5
    assert stats.percentile(values, 90) == pytest.approx(3.7)  # numpy.percentile gives 3.7
    assert stats.percentile([5.0], 99) == 5.0
    with pytest.raises(ValueError):
        stats.percentile([], 50)


def test_describe_matches_known_distributions() -> None:
    rng = random.Random(7)
    uniform = [rng.uniform(0, 1) for _ in range(20000)]
    d = stats.describe(uniform)
    assert d is not None
    assert d.mean == pytest.approx(0.5, abs=0.01)
    assert d.median == pytest.approx(0.5, abs=0.01)
    assert d.p90 == pytest.approx(0.9, abs=0.01)
    assert d.p99 == pytest.approx(0.99, abs=0.005)
    assert d.std == pytest.approx(1 / math.sqrt(12), abs=0.005)
    normal = [rng.gauss(100, 15) for _ in range(20000)]
    n = stats.describe(normal)
    assert n is not None
    assert n.mean == pytest.approx(100, abs=0.5)
    assert n.std == pytest.approx(15, abs=0.5)
    assert n.p90 == pytest.approx(100 + 1.2816 * 15, abs=0.8)
    assert n.std == pytest.approx(statistics.pstdev(normal))
    assert stats.describe([]) is None


def _record(index: int, ttft: float, gaps: list[float], **extra: object) -> RequestRecord:
    chunks = [ttft]
    for gap in gaps:
        chunks.append(chunks[-1] + gap)
    record = RequestRecord(index=index, chunks=chunks, ttft=ttft, output_tokens=len(chunks))
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_summary_follows_vllm_definitions() -> None:
    records = [_record(i, 0.1 * (i + 1), [0.02] * 9, prompt_tokens=100) for i in range(4)]
    records.append(RequestRecord(index=4, error="http_500", error_message="boom"))
    summary = stats.summarize(records, duration=2.0, slo={"ttft": 0.25, "tpot": 0.05})
    assert summary["requests"] == {"total": 5, "completed": 4, "failed": 1}
    assert summary["errors"] == {"http_500": 1}
    lat = summary["latency_ms"]
    assert lat["ttft"]["median"] == pytest.approx(250.0)
    assert lat["tpot"]["mean"] == pytest.approx(20.0)  # (E2E - TTFT) / (tokens - 1)
    assert lat["itl"]["count"] == 36
    assert lat["e2e"]["max"] == pytest.approx(400 + 180)
    assert summary["throughput"]["requests_per_s"] == 2.0
    assert summary["throughput"]["output_tokens_per_s"] == 20.0
    assert summary["goodput"]["good"] == 2  # TTFT 100 and 200 ms meet 250 ms
    assert summary["goodput"]["fraction"] == pytest.approx(0.4)


def test_cache_summary_splits_cold_and_warm() -> None:
    records = [
        _record(0, 1.0, [0.1], prompt_tokens=1000, cached_tokens=0, cache="cold"),
        _record(1, 0.1, [0.1], prompt_tokens=1000, cached_tokens=900, cache="warm"),
        _record(2, 0.2, [0.1], prompt_tokens=1000, cached_tokens=900, cache="warm"),
    ]
    cache = stats.summarize(records, duration=1.0)["cache"]
    assert cache["hit_rate"] == pytest.approx(0.6)
    assert cache["cold"]["ttft_ms"]["median"] == pytest.approx(1000)
    assert cache["warm"]["hit_rate"] == pytest.approx(0.9)
    assert cache["warm_over_cold_ttft"] == pytest.approx(0.15)


def test_parse_slo() -> None:
    assert stats.parse_slo("ttft=500,tpot=50") == {"ttft": 0.5, "tpot": 0.05}
    assert stats.parse_slo("ttft:200 e2el:1000") == {"ttft": 0.2, "e2e": 1.0}
    for bad in ("ttft", "speed=1", "ttft=-1", "ttft=x"):
        with pytest.raises(ValueError):
            stats.parse_slo(bad)


# --- arrivals ------------------------------------------------------------------------------------


def _gaps(rate: float, burstiness: float, n: int = 20000) -> list[float]:
    times = schedule.arrival_times(n, rate, burstiness, seed=3)
    return [b - a for a, b in itertools.pairwise(times)]


def test_poisson_arrivals_have_the_rate_and_exponential_gaps() -> None:
    gaps = _gaps(50.0, 1.0)
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(1 / 50, rel=0.03)
    assert statistics.pstdev(gaps) / mean == pytest.approx(1.0, abs=0.05)  # CV of exponential


@pytest.mark.parametrize("burstiness", [0.25, 4.0])
def test_gamma_burstiness_keeps_the_rate_and_sets_the_spread(burstiness: float) -> None:
    gaps = _gaps(20.0, burstiness)
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(1 / 20, rel=0.05)
    assert statistics.pstdev(gaps) / mean == pytest.approx(1 / math.sqrt(burstiness), rel=0.08)


def test_infinite_rate_sends_everything_at_once_and_seeds_repeat() -> None:
    assert schedule.arrival_times(5, math.inf) == [0.0] * 5
    assert schedule.arrival_times(10, 5.0, seed=1) == schedule.arrival_times(10, 5.0, seed=1)
    assert schedule.arrival_times(10, 5.0, seed=1) != schedule.arrival_times(10, 5.0, seed=2)


# --- workloads -----------------------------------------------------------------------------------


def test_random_workload_lengths_range_and_seed() -> None:
    w = workloads.random_workload(num_requests=200, input_len=100, output_len=20, range_ratio=0.5)
    turns = [s.turns[0] for s in w.phases[0].sessions]
    assert len(turns) == 200 == w.requests
    inputs = [t.target_tokens for t in turns]
    assert min(inputs) >= 50 and max(inputs) <= 150 and len(set(inputs)) > 20
    assert all(10 <= (t.max_tokens or 0) <= 30 for t in turns)
    again = workloads.random_workload(
        num_requests=200, input_len=100, output_len=20, range_ratio=0.5
    )
    assert again == w
    other = workloads.random_workload(
        num_requests=200, input_len=100, output_len=20, range_ratio=0.5, seed=1
    )
    assert other != w


def test_shared_prefix_shape() -> None:
    w = workloads.shared_prefix_workload(
        prefixes=2, suffixes=3, prefix_len=100, suffix_len=10, output_len=4
    )
    sessions = w.phases[0].sessions
    assert len(sessions) == 6
    assert [s.group for s in sessions[:2]] == ["prefix-0", "prefix-1"]
    keys = [tuple(seg.key for seg in s.turns[0].prompt) for s in sessions]
    assert keys[0] == ("p0", "p0s0") and keys[2] == ("p0", "p0s1")
    assert all(s.turns[0].target_tokens == 110 for s in sessions)
    assert len({k[1] for k in keys}) == 6  # every suffix distinct


def test_multi_turn_shape() -> None:
    w = workloads.multi_turn_workload(
        users=3, rounds=4, system_len=50, user_context_len=30, question_len=10, answer_len=5
    )
    sessions = w.phases[0].sessions
    assert w.requests == 12
    assert all(s.history and s.system[0].key == "system" for s in sessions)
    first = sessions[1].turns[0]
    assert [seg.key for seg in first.prompt] == ["u1context", "u1q0"]
    assert [seg.key for seg in sessions[1].turns[2].prompt] == ["u1q2"]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("tile", [0, 1, 2, 0, 1, 2]), ("interleave", [0, 0, 1, 1, 2, 2])],
)
def test_long_doc_rounds(mode: workloads.RepeatMode, expected: list[int]) -> None:
    w = workloads.long_doc_workload(
        documents=3,
        document_len=100,
        question_len=5,
        output_len=2,
        repeat_count=2,
        repeat_mode=mode,
    )
    warm, query = w.phases
    assert [p.name for p in w.phases] == ["warm-up", "query"]
    assert [s.group for s in warm.sessions] == ["doc-0", "doc-1", "doc-2"]
    assert [int((s.group or "")[4:]) for s in query.sessions] == expected
    shuffled = workloads.repeat_order(3, 2, "random", seed=5)
    assert sorted(shuffled) == [0, 0, 1, 1, 2, 2]
    assert shuffled == workloads.repeat_order(3, 2, "random", seed=5)


def test_file_workload_jsonl_and_sharegpt(tmp_path: Path) -> None:
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        '{"prompt": "hello there", "max_tokens": 7}\n\n'
        '{"messages": [{"role": "user", "content": "hi"}]}\n'
    )
    w = workloads.file_workload(jsonl, num_requests=3, output_len=None)
    turns = [s.turns[0] for s in w.phases[0].sessions]
    assert [t.max_tokens for t in turns] == [7, None, 7]  # cycles through the file
    assert turns[1].messages == ({"role": "user", "content": "hi"},)
    assert not w.ignore_eos
    share = tmp_path / "sg.json"
    conv = {
        "conversations": [{"from": "human", "value": "why?"}, {"from": "gpt", "value": "a b c"}]
    }
    share.write_text(json.dumps([conv]))
    turn = workloads.file_workload(share, num_requests=None, output_len=None).phases[0].sessions[0]
    assert turn.turns[0].prompt[0].text == "why?"
    assert turn.turns[0].max_tokens == 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json\n", "not valid JSON"),
        ('{"text": "x"}\n', "expected 'prompt'"),
        ("", "holds no prompts"),
    ],
)
def test_file_workload_bad_files(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "d.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(workloads.DatasetError, match=message):
        workloads.file_workload(path, num_requests=None, output_len=None)


def test_text_is_seeded_and_prefix_stable() -> None:
    source = TextSource(1)
    assert source.words("a", 10) == TextSource(1).words("a", 10)
    assert source.words("a", 5) == source.words("a", 50)[:5]
    assert source.text("a", 10) != source.text("b", 10)
    assert TextSource(2).text("a", 10) != source.text("a", 10)
    assert len(source.words("a", 300)) == 300
    assert all(word.startswith(" ") and word[1:].isalpha() for word in WORDS)


# --- reports -------------------------------------------------------------------------------------


def _result(ttft: float, hit: int) -> report.BenchResult:
    records = [
        _record(i, ttft, [0.01] * 4, prompt_tokens=100, cached_tokens=hit, cache="warm")
        for i in range(3)
    ]
    summary = stats.summarize(records, duration=1.0)
    run = report.RunResult("c=1", 1, None, summary, records, engine={"prefix_cache_hit_rate": 0.5})
    return report.BenchResult(
        server={"url": "http://x", "model": "m"},
        workload={"name": "random"},
        load={"rate": math.inf},
        lengths={"exact": True},
        runs=[run],
        created="2026-01-01T00:00:00+00:00",
        version="0",
    )


def test_json_round_trip_and_csv(tmp_path: Path) -> None:
    result = _result(0.2, 50)
    path = tmp_path / "out" / "run.json"
    report.write_json(result, path)
    loaded = report.read(path)
    assert loaded.as_dict() == json.loads(path.read_text())
    assert loaded.runs[0].records[0].chunks == pytest.approx(result.runs[0].records[0].chunks)
    assert json.loads(path.read_text())["load"]["rate"] is None  # no Infinity in JSON
    report.write_csv(result, tmp_path / "r.csv")
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0].startswith("run,index,phase") and len(lines) == 4
    assert "200.000" in lines[1]


def test_read_refuses_other_files(tmp_path: Path) -> None:
    other = tmp_path / "x.json"
    other.write_text('{"a": 1}')
    with pytest.raises(report.ReportError, match="not an infer bench result"):
        report.read(other)
    with pytest.raises(report.ReportError, match="does not exist"):
        report.read(tmp_path / "missing.json")


# --- engine metrics ------------------------------------------------------------------------------

_BEFORE = """
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 1000.0
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 100.0
vllm:external_prefix_cache_queries_total{engine="0",model_name="m"} 900.0
vllm:external_prefix_cache_hits_total{engine="0",model_name="m"} 0.0
vllm:prompt_tokens_by_source_total{source="local_compute"} 900.0
"""
_AFTER = """
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 3000.0
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 1600.0
vllm:external_prefix_cache_queries_total{engine="0",model_name="m"} 1400.0
vllm:external_prefix_cache_hits_total{engine="0",model_name="m"} 256.0
vllm:prompt_tokens_by_source_total{source="local_compute"} 1300.0
vllm:prompt_tokens_by_source_total{source="external_kv_transfer"} 256.0
"""


def test_engine_metric_deltas() -> None:
    delta = engine_metrics.delta(engine_metrics.snapshot(_BEFORE), engine_metrics.snapshot(_AFTER))
    assert delta is not None
    assert delta["prefix_cache_queries"] == 2000
    assert delta["prefix_cache_hit_rate"] == 0.75
    assert delta["external_hit_rate"] == pytest.approx(0.512)
    assert delta["prompt_tokens_by_source"] == {"local_compute": 400, "external_kv_transfer": 256}
    assert engine_metrics.snapshot("# nothing\nother_metric 1\n") is None
    assert engine_metrics.delta(None, {}) is None


def test_engine_timing_means_over_the_run() -> None:
    before = _BEFORE + (
        'vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 2.0\n'
        'vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 10.0\n'
        'vllm:request_queue_time_seconds_sum{engine="0",model_name="m"} 0.5\n'
        'vllm:request_queue_time_seconds_count{engine="0",model_name="m"} 10.0\n'
    )
    after = _AFTER + (
        'vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 3.2\n'
        'vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 14.0\n'
        'vllm:request_queue_time_seconds_sum{engine="0",model_name="m"} 0.5\n'
        'vllm:request_queue_time_seconds_count{engine="0",model_name="m"} 10.0\n'
    )
    delta = engine_metrics.delta(engine_metrics.snapshot(before), engine_metrics.snapshot(after))
    assert delta is not None
    # 4 requests ended in between, 1.2 s of TTFT: 300 ms each; no request ended queueing
    assert delta["latency_ms"] == {"ttft": {"mean": pytest.approx(300.0), "requests": 4}}
    a, b = _result(0.2, 50), _result(0.2, 50)
    a.runs[0].engine = delta
    b.runs[0].engine = {**delta, "latency_ms": {"ttft": {"mean": 240.0, "requests": 4}}}
    changes = {c.metric: c for c in compare.compare_runs(a.runs[0], b.runs[0]).changes}
    assert changes["engine TTFT mean ms"].change == pytest.approx(-20.0)
