"""``bench compare``: settings side by side, what is left out, changes judged by their spread."""

from __future__ import annotations

import random

import pytest

from infer_cli.bench import compare, report, stats
from infer_cli.bench.records import RequestRecord
from infer_cli.errors import UsageError


def _records(ttfts: list[float], *, hit: int = 0) -> list[RequestRecord]:
    out = []
    for index, ttft in enumerate(ttfts):
        chunks = [ttft + 0.01 * k for k in range(5)]
        out.append(
            RequestRecord(
                index=index, ttft=ttft, chunks=chunks, output_tokens=5, prompt_tokens=100,
                cached_tokens=hit, first_seen=100,
            )
        )  # fmt: skip
    return out


def _run(label: str, records: list[RequestRecord], **summary_extra: object) -> report.RunResult:
    summary = stats.summarize(records, duration=1.0)
    summary.update(summary_extra)
    return report.RunResult(label, int(label.split("=")[1]), None, summary, records)


def _result(
    runs: list[report.RunResult], *, workload: dict[str, object] | None = None, **load: object
) -> report.BenchResult:
    return report.BenchResult(
        server={"url": "http://x", "model": "m"},
        workload=workload or {"name": "random", "input_len": 128, "output_len": 16, "seed": 0},
        load={"rate": None, "burstiness": 1.0, "num_requests": None, "seed": 0, **load},
        lengths={"exact": True},
        runs=runs,
    )


def _noisy(center: float, n: int = 40, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [center * rng.uniform(0.5, 1.5) for _ in range(n)]


def test_a_change_within_the_spread_is_not_coloured() -> None:
    # the same distribution twice: medians differ by chance, the interval holds 0
    a = _result([_run("c=1", _records(_noisy(0.1, seed=1)))])
    b = _result([_run("c=1", _records(_noisy(0.1, seed=2)))])
    [runs] = compare.compare(a, b).comparisons
    ttft = {c.metric: c for c in runs.changes}["TTFT median ms"]
    assert ttft.change is not None and ttft.change != 0
    assert ttft.beyond_spread is False and ttft.better is None
    assert ttft.spread is not None and ttft.spread[0] < 0 < ttft.spread[1]


def test_a_change_beyond_the_spread_is_judged_by_direction() -> None:
    a = _result([_run("c=1", _records(_noisy(0.2), hit=10))])
    b = _result([_run("c=1", _records(_noisy(0.1), hit=60))])
    changes = {c.metric: c for c in compare.compare(a, b).comparisons[0].changes}
    ttft = changes["TTFT median ms"]
    assert ttft.beyond_spread is True and ttft.better is True and ttft.change < -30
    hit = changes["cache hit rate"]
    assert hit.unit == "pp" and hit.change == pytest.approx(50.0) and hit.better is True
    # throughput is one number per run: shown, never judged
    assert changes["requests/s"].beyond_spread is None and changes["requests/s"].better is None


def test_comparisons_are_repeatable() -> None:
    a = _result([_run("c=1", _records(_noisy(0.1, seed=1)))])
    b = _result([_run("c=1", _records(_noisy(0.1, seed=2)))])
    first = compare.compare(a, b).comparisons[0].changes
    assert first == compare.compare(a, b).comparisons[0].changes


def test_levels_and_figures_only_one_side_has_are_named() -> None:
    a = _result([_run("c=1", _records(_noisy(0.1))), _run("c=2", _records(_noisy(0.1)))])
    goodput = {"goodput": {"requests_per_s": 3.0}}
    b = _result([_run("c=1", _records(_noisy(0.1)), **goodput), _run("c=4", _records(_noisy(0.1)))])
    result = compare.compare(a, b)
    assert result.levels_left_out == ["c=2 (only in a)", "c=4 (only in b)"]
    [runs] = result.comparisons
    assert runs.label == "c=1"
    assert "goodput requests/s (only in b)" in runs.left_out
    assert "goodput requests/s" not in {c.metric for c in runs.changes}


def test_settings_side_by_side_and_material_differences() -> None:
    a = _result([_run("c=1", _records(_noisy(0.1)))], warmup=0, nonce="aaaa")
    other = {"name": "random", "input_len": 256, "output_len": 16, "seed": 0}
    b = _result([_run("c=1", _records(_noisy(0.1)))], workload=other, warmup=5, nonce="bbbb")
    result = compare.compare(a, b)
    rows = {s.name: s for s in result.settings}
    assert (rows["input_len"].a, rows["input_len"].b) == (128, 256)
    assert rows["warmup"].differs and not rows["warmup"].material
    assert [s.name for s in result.differences] == ["input_len"]
    assert not result.warnings  # fresh nonces on both sides


def test_single_runs_at_other_levels_are_a_material_difference() -> None:
    a = _result([_run("c=1", _records(_noisy(0.1)))])
    b = _result([_run("c=4", _records(_noisy(0.1)))])
    result = compare.compare(a, b)
    assert [s.name for s in result.differences] == ["level compared"]
    assert result.comparisons[0].label == "c=1 / c=4"
    c = _result([_run("c=2", _records(_noisy(0.1))), _run("c=8", _records(_noisy(0.1)))])
    with pytest.raises(UsageError, match="no level in common"):
        compare.compare(a, c)


def test_same_nonce_and_warm_first_seen_prompts_are_warned_about() -> None:
    warm = _records(_noisy(0.1), hit=90)
    summary_warnings = stats.summarize(warm, duration=1.0)["warnings"]
    assert summary_warnings and "were already cached" in summary_warnings[0]
    a = _result([_run("c=1", _records(_noisy(0.1)))], nonce="abcd1234")
    b = _result([_run("c=1", warm)], nonce="abcd1234")
    warnings = compare.compare(a, b).warnings
    assert any("same prompts (same --seed)" in w for w in warnings)
    assert any(w.startswith("b c=1: 90.0% of the prompt tokens") for w in warnings)
