"""The load generator against infer's simulated engine, with known delays and injected faults."""

from __future__ import annotations

import asyncio
import math
import statistics
from typing import Literal

import httpx
import pytest

from infer_cli.bench.records import RequestRecord
from infer_cli.bench.runner import Load, Runner, RunOutcome, Target
from infer_cli.bench.stats import summarize
from infer_cli.bench.text import TextSource
from infer_cli.bench.tokens import Texts, find_tokenizer, materialize
from infer_cli.bench.workloads import (
    Workload,
    long_doc_workload,
    multi_turn_workload,
    random_workload,
    shared_prefix_workload,
)
from infer_cli.sim import SimSettings, running
from tests.helpers import wait_until


async def _run(
    url: str,
    workload: Workload,
    load: Load,
    *,
    endpoint: str = "chat",
    stop: asyncio.Event | None = None,
    texts: Texts | None = None,
) -> tuple[Runner, RunOutcome]:
    if texts is None:
        texts = await materialize(workload, TextSource(0), None)
    target = Target(
        url + "/v1", "sim-model", endpoint="chat" if endpoint == "chat" else "completions"
    )
    runner = Runner(target, load, workload, texts, stop=stop)
    return runner, await runner.run()


async def test_measured_ttft_and_itl_match_the_simulated_delays() -> None:
    settings = SimSettings(ms_per_output_token=20, first_token_ms=100, prefill_ms_per_token=0)
    async with running(settings) as url:
        workload = random_workload(num_requests=6, input_len=50, output_len=10)
        _, outcome = await _run(url, workload, Load(concurrency=3))
    records = outcome.records
    assert all(r.ok for r in records), [r.error_message for r in records]
    summary = summarize(records, duration=outcome.duration)
    lat = summary["latency_ms"]
    assert lat["ttft"]["median"] == pytest.approx(100, abs=25)
    assert lat["itl"]["median"] == pytest.approx(20, abs=5)
    assert lat["tpot"]["median"] == pytest.approx(20, abs=5)
    assert lat["e2e"]["median"] == pytest.approx(100 + 9 * 20, abs=40)
    assert all(r.output_tokens == 10 and r.usage for r in records)
    assert all(len(r.chunks) == 10 for r in records)
    assert outcome.max_in_flight == 3


async def test_prompt_lengths_are_exact_with_tokenize_and_completions_endpoint() -> None:
    async with running(SimSettings(ms_per_output_token=0)) as url:
        workload = random_workload(num_requests=5, input_len=200, output_len=3, range_ratio=0.3)
        async with httpx.AsyncClient() as http:
            tokenizer = await find_tokenizer(http, [url], "sim-model")
            assert tokenizer is not None
            texts = await materialize(workload, TextSource(0), tokenizer)
        assert texts.exact and texts.off_target == 0
        _, outcome = await _run(
            url, workload, Load(concurrency=5), endpoint="completions", texts=texts
        )
    for record in outcome.records:
        assert record.ok
        assert record.prompt_tokens == record.target_input  # no template on /completions


async def test_cache_workloads_warm_requests_hit() -> None:
    settings = SimSettings(ms_per_output_token=1, prefill_ms_per_token=0.2)
    async with running(settings) as url:
        sp = shared_prefix_workload(
            prefixes=2, suffixes=3, prefix_len=400, suffix_len=10, output_len=2
        )
        _, outcome = await _run(url, sp, Load(concurrency=1))
        cache = summarize(outcome.records, duration=1.0)["cache"]
        assert cache["cold"]["requests"] == 2 and cache["warm"]["requests"] == 4
        assert cache["cold"]["hit_rate"] == 0 and cache["warm"]["hit_rate"] > 0.8
        assert cache["warm"]["ttft_ms"]["median"] < cache["cold"]["ttft_ms"]["median"]

        mt = multi_turn_workload(
            users=2, rounds=3, system_len=40, user_context_len=40, question_len=10, answer_len=4
        )
        _, outcome = await _run(url, mt, Load(concurrency=2))
        records = outcome.records
        assert all(r.ok for r in records) and len(records) == 6
        by_user: dict[int, list[RequestRecord]] = {}
        for r in records:
            by_user.setdefault(r.session, []).append(r)
        for turns in by_user.values():
            prompts = [r.prompt_tokens or 0 for r in sorted(turns, key=lambda r: r.turn)]
            assert prompts == sorted(prompts) and len(set(prompts)) == 3  # history grows
            assert all(r.cached_tokens for r in turns[1:])

        ld = long_doc_workload(
            documents=2,
            document_len=300,
            question_len=5,
            output_len=2,
            repeat_count=2,
            repeat_mode="tile",
        )
        _, outcome = await _run(url, ld, Load(concurrency=4))
        summary = summarize(outcome.records, duration=1.0)
        assert list(summary["phases"]) == ["warm-up", "query"]
        assert summary["phases"]["query"]["hit_rate"] > 0.8


async def test_rate_is_kept_and_sends_are_on_time() -> None:
    async with running(SimSettings(ms_per_output_token=0, prefill_ms_per_token=0)) as url:
        workload = random_workload(num_requests=60, input_len=20, output_len=2)
        _, outcome = await _run(url, workload, Load(concurrency=None, rate=100.0, seed=1))
    records = outcome.records
    sends = sorted(r.sent for r in records)
    achieved = (len(sends) - 1) / (sends[-1] - sends[0])
    assert achieved == pytest.approx(100, rel=0.4)
    lags = [r.send_lag for r in records]
    assert statistics.median(lags) < 0.01


async def test_stream_errors_and_disconnects_are_recorded_with_what_came_before() -> None:
    modes: tuple[tuple[Literal["error", "disconnect"], str], ...] = (
        ("error", "stream_error"),
        ("disconnect", "disconnect"),
    )
    for mode, kind in modes:
        settings = SimSettings(ms_per_output_token=1, fail_after_tokens=3, fail_mode=mode)
        async with running(settings) as url:
            workload = random_workload(num_requests=3, input_len=20, output_len=10)
            _, outcome = await _run(url, workload, Load(concurrency=1))
        records = outcome.records
        assert outcome.stopped is None
        assert [r.error for r in records] == [kind] * 3
        assert all(r.chunks and r.ttft is not None for r in records)
        assert summarize(records, duration=1.0)["errors"] == {kind: 3}


async def test_http_errors_count_by_status() -> None:
    async with running(SimSettings(ms_per_output_token=0, error_rate=1.0)) as url:
        workload = random_workload(num_requests=4, input_len=10, output_len=2)
        _, outcome = await _run(url, workload, Load(concurrency=2))
    records = outcome.records
    assert {r.error for r in records} == {"http_500"}
    assert "error_rate" in (records[0].error_message or "")


async def test_a_server_that_goes_away_makes_a_partial_run() -> None:
    settings = SimSettings(ms_per_output_token=5)
    workload = random_workload(num_requests=200, input_len=10, output_len=5)
    async with running(settings) as url:
        texts = await materialize(workload, TextSource(0), None)
        runner = Runner(
            Target(url + "/v1", "sim-model"), Load(concurrency=2, timeout=5), workload, texts
        )
        task = asyncio.create_task(runner.run())
        await wait_until(lambda: len(runner._records) >= 4, timeout=20)
    outcome = await asyncio.wait_for(task, 20)
    assert outcome.stopped and "stopped accepting connections" in outcome.stopped
    ok = [r for r in outcome.records if r.ok]
    assert len(ok) >= 4 and len(outcome.records) < 200


async def test_stop_event_cancels_requests_in_flight() -> None:
    async with running(SimSettings(ms_per_output_token=50)) as url:
        workload = random_workload(num_requests=10, input_len=10, output_len=100)
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.3, stop.set)
        _, outcome = await _run(url, workload, Load(concurrency=2), stop=stop)
    assert outcome.stopped
    assert {r.error for r in outcome.records} == {"cancelled"}


async def test_duration_repeats_the_workload_and_stops_sending() -> None:
    async with running(SimSettings(ms_per_output_token=0)) as url:
        workload = random_workload(num_requests=3, input_len=10, output_len=2)
        _, outcome = await _run(url, workload, Load(concurrency=1, duration=0.5))
    assert outcome.stopped is None
    assert outcome.repeated > 0
    assert max(r.sent for r in outcome.records) < 0.6
    assert not math.isnan(outcome.duration)
