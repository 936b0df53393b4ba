"""infer bench's spec: each workload's defaults, every rule with the one-line error it gives."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pydantic
import pytest

from infer_cli.bench import spec as bench_spec
from infer_cli.bench.spec import (
    FileSpec,
    LatencySpec,
    LongDocSpec,
    MultiTurnSpec,
    RandomSpec,
    SharedPrefixSpec,
    defaults,
    parse,
)
from infer_cli.errors import UsageError

# --- defaults ------------------------------------------------------------------------------------

OWN_DEFAULTS: dict[str, dict[str, Any]] = {
    "latency": {"input_len": 128, "output_len": 128, "range_ratio": 0.0, "ignore_eos": True},
    "random": {"input_len": 1024, "output_len": 128, "range_ratio": 0.0, "ignore_eos": True},
    "shared-prefix": {"prefixes": 4, "suffixes": 8, "prefix_len": 1024, "suffix_len": 64,
                      "output_len": 32, "ignore_eos": True},
    "multi-turn": {"users": 10, "rounds": 5, "system_len": 1000, "user_context_len": 2000,
                   "question_len": 50, "output_len": 100, "ignore_eos": True},
    "long-doc": {"documents": 8, "document_len": 3000, "question_len": 32, "output_len": 32,
                 "repeat_count": 2, "repeat_mode": "random", "ignore_eos": True},
    "file": {"output_len": None, "shuffle": False, "ignore_eos": False},
}  # fmt: skip
REQUESTS = {"latency": 10, "random": 100, "shared-prefix": 32, "multi-turn": 50, "long-doc": 24}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "one"}\n{"prompt": "two"}\n{"prompt": "three"}\n')
    return path


def _spec(workload: str, dataset: Path, **options: Any) -> bench_spec.BenchSpec:
    if workload == "file":
        options.setdefault("dataset", dataset)
    return parse({"workload": workload, **options})


@pytest.mark.parametrize("workload", sorted(OWN_DEFAULTS))
def test_each_workload_carries_its_own_defaults(workload: str, dataset: Path) -> None:
    spec = _spec(workload, dataset)
    own = {name: getattr(spec, name) for name in OWN_DEFAULTS[workload]}
    assert own == OWN_DEFAULTS[workload]
    built = spec.build(spec.shape_seed)
    assert built.name == workload
    assert built.requests == REQUESTS.get(workload, 3)  # the file: every prompt once
    assert built.ignore_eos is (workload != "file")
    assert spec.levels == (1,) and spec.arrivals == (math.inf, 1.0)


def test_shared_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFER_HOST", raising=False)
    monkeypatch.setenv("INFER_PORT", "19150")
    spec = parse({"workload": "random"})
    assert spec.url == "http://127.0.0.1:19150"  # where clients look for `infer serve`
    assert (spec.endpoint, spec.timeout, spec.warmup, spec.engine_metrics) == ("chat", 300, 0, True)
    assert spec.num_requests is None and spec.duration is None and spec.seed is None
    assert spec.slo == {} and spec.max_errors.allows(100) == 0 and spec.shape_seed == 0


def test_defaults_are_what_the_help_shows() -> None:
    shown = defaults("long-doc")
    assert shown["document_len"] == 3000 and shown["repeat_mode"] == "random"
    assert shown["max_errors"] == "0" and shown["burstiness"] == 1.0
    assert "url" not in shown  # its default depends on INFER_HOST / INFER_PORT
    assert "dataset" not in defaults("file") and "concurrency" not in defaults("latency")
    with pytest.raises(UsageError, match="unknown workload 'nope'"):
        defaults("nope")


def test_a_spec_is_validated_once_and_frozen(dataset: Path) -> None:
    spec = LatencySpec(input_len=64)
    with pytest.raises(pydantic.ValidationError):
        spec.input_len = 0
    assert parse({"workload": "latency", "input_len": 64}) == spec
    assert isinstance(_spec("file", dataset), FileSpec)
    classes = (LatencySpec, RandomSpec, SharedPrefixSpec, MultiTurnSpec, LongDocSpec, FileSpec)
    assert classes == bench_spec.SPECS
    assert tuple(OWN_DEFAULTS) == bench_spec.WORKLOADS


# --- what the options turn into ------------------------------------------------------------------


def test_levels_and_arrivals() -> None:
    assert parse({"workload": "random", "concurrency": "1,2 4"}).levels == (1, 2, 4)
    paced = parse({"workload": "random", "rate": 8.0, "burstiness": 0.5})
    assert paced.levels == (None,) and paced.arrivals == (8.0, 0.5)
    both = parse({"workload": "multi-turn", "concurrency": "4", "rate": 2.0})
    assert both.levels == (4,) and both.arrivals == (2.0, 1.0)


@pytest.mark.parametrize(
    ("text", "total", "allowed"),
    [("0", 100, 0), ("3", 100, 3), ("5%", 100, 5), ("10%", 15, 1), ("100%", 7, 7)],
)
def test_max_errors_is_a_count_or_a_share(text: str, total: int, allowed: int) -> None:
    assert parse({"workload": "latency", "max_errors": text}).max_errors.allows(total) == allowed


def test_slo_seed_and_count() -> None:
    spec = parse({"workload": "random", "slo": "ttft=500,e2e=2000", "seed": 7, "num_requests": 3})
    assert spec.slo == {"ttft": 0.5, "e2e": 2.0} and spec.shape_seed == 7
    assert spec.build(7).requests == 3 and spec.build(7) == spec.build(7)
    assert spec.build(7) != spec.build(8)


# --- every rule, one line each -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workload", "options", "message"),
    [
        ("random", {"num_requests": 0}, "--num-requests must be at least 1, got 0"),
        ("random", {"duration": 0.0}, "--duration must be positive, got 0.0"),
        ("random", {"warmup": -1}, "--warmup must be 0 or more, got -1"),
        ("random", {"timeout": -5.0}, "--timeout must be positive, got -5.0"),
        ("random", {"temperature": -0.1}, "--temperature must be 0 or more, got -0.1"),
        ("random", {"endpoint": "embeddings"},
         "--endpoint must be 'chat' or 'completions', got 'embeddings'"),
        ("random", {"slo": "speed=3"}, "--slo: bad SLO 'speed=3'"),
        ("random", {"slo": "ttft=-1"}, "--slo: SLO ttft must be positive"),
        ("random", {"max_errors": "many"}, "--max-errors: takes a count or a percentage"),
        ("random", {"max_errors": "-1"}, "--max-errors: takes a count or a percentage"),
        ("random", {"max_errors": "120%"}, "--max-errors: takes a count or a percentage"),
        ("random", {"concurrency": "1,x"}, "--concurrency: takes whole numbers"),
        ("random", {"concurrency": ","}, "--concurrency: is empty"),
        ("random", {"concurrency": "2,0"}, "--concurrency values must be at least 1, got 0"),
        ("random", {"rate": 0.0}, "--rate must be positive, got 0.0"),
        ("random", {"burstiness": 0.0}, "--burstiness must be positive"),
        ("latency", {"input_len": 0}, "--input-len must be at least 1"),
        ("random", {"output_len": 0}, "--output-len must be at least 1"),
        ("random", {"range_ratio": 1.0}, "--range-ratio must be less than 1, got 1.0"),
        ("random", {"range_ratio": -0.5}, "--range-ratio must be 0 or more, got -0.5"),
        ("shared-prefix", {"prefixes": 0}, "--prefixes must be at least 1"),
        ("shared-prefix", {"suffix_len": 0}, "--suffix-len must be at least 1"),
        ("multi-turn", {"rounds": 0}, "--rounds must be at least 1"),
        ("multi-turn", {"system_len": -1}, "--system-len must be 0 or more"),
        ("long-doc", {"repeat_count": 0}, "--repeat-count must be at least 1"),
        ("long-doc", {"repeat_mode": "zigzag"},
         "--repeat-mode must be 'tile', 'interleave' or 'random', got 'zigzag'"),
        ("file", {}, "infer bench file needs --dataset"),
        ("file", {"dataset": "p.jsonl", "output_len": 0}, "--output-len must be at least 1"),
        ("latency", {"concurrency": "4"}, "--concurrency is not an option of latency"),
        ("latency", {"prefixes": 3}, "--prefixes is not an option of latency"),
        ("nope", {}, "unknown workload 'nope'"),
    ],
)  # fmt: skip
def test_every_rule_is_a_one_line_error_naming_the_option(
    workload: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        parse({"workload": workload, **options})
    error = caught.value
    assert message in error.message
    assert "\n" not in error.one_line() and error.exit_code == 2
    if workload != "nope":  # what to do: the workload's help, which describes the option
        assert f"`infer bench {workload} --help` describes --" in (error.hint or "")


def test_several_errors_are_counted_on_the_one_line() -> None:
    with pytest.raises(UsageError) as caught:
        parse({"workload": "multi-turn", "users": 0, "rounds": 0, "question_len": 0})
    assert caught.value.message == "--users must be at least 1, got 0 (and 2 more)"
