"""``infer bench`` through the command line (typer's CliRunner) against the simulated engine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from infer_cli.cli import app
from infer_cli.sim import SimSettings, running
from tests.helpers import free_port


@contextlib.contextmanager
def sim_in_thread(settings: SimSettings) -> Iterator[str]:
    """The simulated engine served from a thread of its own (CliRunner runs its own loop)."""
    ready = threading.Event()
    found: list[str] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        async with running(settings) as url:
            found.append(url)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the simulated engine did not start"
    try:
        yield found[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    with sim_in_thread(SimSettings(ms_per_output_token=1, prefill_ms_per_token=0.01)) as url:
        yield url


def bench(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["bench", *args])
    return result.exit_code, result.stdout, result.stderr


def test_random_run_writes_json_and_csv(sim_url: str, tmp_path: Path) -> None:
    out, csv = tmp_path / "run.json", tmp_path / "run.csv"
    code, stdout, stderr = bench(
        "random", "--url", sim_url, "-n", "6", "--input-len", "40", "--output-len", "4",
        "-c", "1,2", "--warmup", "2", "--slo", "ttft=1000", "-o", str(out), "--csv", str(csv),
    )  # fmt: skip
    assert code == 0, stderr
    assert "TTFT" in stdout and "sweep" in stdout and "latency against concurrency" in stdout
    assert "prompt lengths exact" in stdout  # the bare simulator has /tokenize
    data = json.loads(out.read_text())
    assert data["partial"] is False and data["server"]["model"] == "sim-model"
    assert [run["label"] for run in data["runs"]] == ["c=1", "c=2"]
    assert len(data["runs"][0]["requests"]) == 6 and data["warmup"]["requests"] == 2
    assert data["runs"][0]["summary"]["goodput"]["good"] == 6
    assert data["runs"][0]["engine"]["prefix_cache_queries"] > 0
    # the engine's own TTFT over the run's 6 requests (no warm-up), below what the client measured
    engine_ttft = data["runs"][0]["engine"]["latency_ms"]["ttft"]
    assert engine_ttft["requests"] == 6
    assert 0 < engine_ttft["mean"] <= data["runs"][0]["summary"]["latency_ms"]["ttft"]["mean"]
    assert "engine's own means, ms: TTFT" in stdout
    assert len(csv.read_text().splitlines()) == 13
    code, stdout, _ = bench("compare", str(out), str(out))
    assert code == 0 and "TTFT median ms" in stdout
    code, stdout, _ = bench("compare", str(out), str(out), "--json")
    assert json.loads(stdout)["runs"][0]["changes"][0]["change"] == 0


def test_json_summary_and_shared_prefix(sim_url: str) -> None:
    code, stdout, stderr = bench(
        "shared-prefix", "--url", sim_url, "--prefixes", "2", "--suffixes", "2",
        "--prefix-len", "200", "--suffix-len", "10", "--output-len", "2", "--json", "-q",
    )  # fmt: skip
    assert code == 0, stderr
    data = json.loads(stdout)
    cache = data["runs"][0]["summary"]["cache"]
    assert cache["warm"]["hit_rate"] > 0.5 and "requests" not in data["runs"][0]


def test_failed_requests_exit_1_unless_allowed(tmp_path: Path) -> None:
    with sim_in_thread(SimSettings(ms_per_output_token=0, error_rate=1.0)) as url:
        code, _, stderr = bench("random", "--url", url, "-n", "3", "--input-len", "5", "-q")
        assert code == 1
        assert "3 of 3 requests failed (http_500 3)" in stderr
        assert len(stderr.strip().splitlines()) == 1
        code, _, _ = bench(
            "random", "--url", url, "-n", "3", "--input-len", "5", "-q", "--max-errors", "100%"
        )
        assert code == 0


def test_server_gone_mid_run_writes_a_partial_result(tmp_path: Path) -> None:
    out = tmp_path / "partial.json"
    settings = SimSettings(ms_per_output_token=20)
    holder: dict[str, object] = {}

    def run() -> None:
        holder["result"] = CliRunner().invoke(
            app,
            ["bench", "random", "--url", url, "-n", "60", "--input-len", "5", "--output-len",
             "10", "-c", "2", "-q", "-o", str(out), "--no-engine-metrics"],
        )  # fmt: skip

    with sim_in_thread(settings) as url:
        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until a few answers have been completed
            metrics = httpx.get(url + "/metrics", timeout=5).text
            done = [
                line
                for line in metrics.splitlines()
                if line.startswith("vllm:e2e_request_latency_seconds_count")
            ]
            if done and float(done[0].split()[-1]) >= 3:
                break
            time.sleep(0.05)
    thread.join(30)
    result = holder["result"]
    assert getattr(result, "exit_code", None) == 1
    stderr = getattr(result, "stderr", "")
    data = json.loads(out.read_text())  # what was measured is written either way
    assert 0 < data["runs"][0]["summary"]["requests"]["completed"] < 60
    if data["partial"]:  # the server refused connections: the run stopped early
        assert "stopped early" in stderr and "partial results in" in stderr
        assert "stopped accepting connections" in data["reason"]
    else:  # a server shutting down answered the rest with errors (events, 503s, cut streams)
        failed = data["runs"][0]["summary"]["requests"]["failed"]
        assert failed > 0 and f"{failed} of " in stderr and "requests failed (" in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "unknown workload or command 'nope'"),
        (["random", "-c", "0"], "--concurrency values must be at least 1"),
        (["random", "--rate", "-1"], "--rate must be positive"),
        (["random", "--slo", "speed=3"], "--slo: bad SLO"),
        (["random", "--range-ratio", "2"], "--range-ratio must be less than 1, got 2.0"),
        (["latency", "-c", "4"], "-c is not an option of latency (random, shared-prefix, "),
        (["latency", "--prefixes", "3"], "--prefixes is not an option of latency (shared-prefix"),
        (["random", "--bogus"], "infer bench random has no option --bogus"),
        (["file"], "needs --dataset"),
        (["file", "--dataset", "/nonexistent.jsonl"], "does not exist"),
        (["long-doc", "--repeat-mode", "zigzag"], "--repeat-mode"),
        (["random", "--max-errors", "many"], "--max-errors"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    code, _, stderr = bench(*args)
    assert code == 2
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_unreachable_server_and_unknown_model(sim_url: str) -> None:
    code, _, stderr = bench("random", "--url", f"http://127.0.0.1:{free_port()}", "-q")
    assert code == 1 and "cannot reach" in stderr
    code, _, stderr = bench("random", "--url", sim_url, "--model", "other", "-q")
    assert code == 2 and "does not serve 'other'" in stderr


def test_compare_rejects_a_file_that_is_not_a_result(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    code, _, stderr = bench("compare", str(bad), str(bad))
    assert code == 2 and "not an infer bench result" in stderr


def test_file_workload_from_jsonl(sim_url: str, tmp_path: Path) -> None:
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"prompt": "Tell me a story", "max_tokens": 3}\n{"prompt": "Hi"}\n')
    code, stdout, stderr = bench(
        "file", "--url", sim_url, "--dataset", str(data), "--output-len", "2", "-q", "--json"
    )
    assert code == 0, stderr
    assert json.loads(stdout)["runs"][0]["summary"]["tokens"]["output"] == 4


OWN_OPTIONS = {
    "latency": {"--input-len", "--output-len", "--range-ratio"},
    "random": {"--input-len", "--output-len", "--range-ratio"},
    "shared-prefix": {"--prefixes", "--suffixes", "--prefix-len", "--suffix-len", "--output-len"},
    "multi-turn": {"--users", "--rounds", "--system-len", "--user-context-len", "--question-len",
                   "--output-len"},
    "long-doc": {"--documents", "--document-len", "--repeat-count", "--repeat-mode",
                 "--question-len", "--output-len"},
    "file": {"--dataset", "--shuffle", "--output-len", "--ignore-eos"},
}  # fmt: skip
SWEEP = {"--concurrency", "--rate", "--burstiness"}


@pytest.mark.parametrize("workload", sorted(OWN_OPTIONS))
def test_each_workload_has_its_own_help(workload: str) -> None:
    result = CliRunner().invoke(app, ["bench", workload, "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = result.stdout
    assert f"Usage: infer bench {workload} [OPTIONS]" in text
    options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", text))
    foreign = set().union(*OWN_OPTIONS.values()) - OWN_OPTIONS[workload]
    assert OWN_OPTIONS[workload] <= options
    assert not options & foreign
    assert (options >= SWEEP) is (workload != "latency")
    assert bool(SWEEP & options) is (workload != "latency")
    for internal in ("<int>", "<str>", "<bool>", "<float", "list[", "<path>"):
        assert internal not in text
    assert "Examples:" in text and f"infer bench {workload}" in text.split("Examples:")[1]


def test_compare_help_names_its_arguments_plainly() -> None:
    result = CliRunner().invoke(app, ["bench", "compare", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "Usage: infer bench compare [OPTIONS] A B" in result.stdout
    assert "<path>" not in result.stdout and "<bool>" not in result.stdout
    assert "--force" in result.stdout and "Examples:" in result.stdout


def test_bench_help_lists_the_workloads_as_commands() -> None:
    result = CliRunner().invoke(app, ["bench", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert all(workload in result.stdout for workload in OWN_OPTIONS)
    assert "<bool>" not in result.stdout and "Examples:" in result.stdout


def test_old_spelling_bench_run_still_works() -> None:
    result = CliRunner().invoke(app, ["bench", "run", "random", "--help"])
    assert result.exit_code == 0 and "Usage: infer bench random [OPTIONS]" in result.stdout


def test_runs_are_independent_and_compare_sees_no_change_beyond_the_spread(
    tmp_path: Path,
) -> None:
    # a fresh simulated engine whose prefill is slow enough for a cache hit to show in TTFT;
    # lengths vary (150-450 tokens, the same in every run) so each run has a spread of its own
    settings = SimSettings(ms_per_output_token=1, prefill_ms_per_token=0.2)
    common = ["--input-len", "300", "--range-ratio", "0.5", "--output-len", "4", "-n", "20",
              "--warmup", "2", "-q"]  # fmt: skip
    files = {name: tmp_path / f"{name}.json" for name in ("one", "two", "seeded", "again")}
    with sim_in_thread(settings) as url:
        for name in ("one", "two"):
            code, _, stderr = bench("latency", "--url", url, *common, "-o", str(files[name]))
            assert code == 0, stderr
        for name in ("seeded", "again"):
            code, shown, stderr = bench(
                "latency", "--url", url, *common, "--seed", "5", "-o", str(files[name])
            )
            assert code == 0, stderr
    one, two = (json.loads(files[n].read_text()) for n in ("one", "two"))
    assert one["load"]["nonce"] != two["load"]["nonce"]
    for data in (one, two):  # the second identical run found nothing of the first in the cache
        summary = data["runs"][0]["summary"]
        assert summary["cache"]["first_seen"]["hit_rate"] == 0
        assert summary["cache"]["first_seen"]["requests"] == 20
        assert summary["warnings"] == []
    code, stdout, stderr = bench("compare", str(files["one"]), str(files["two"]), "--json")
    assert code == 0, stderr
    changes = {c["metric"]: c for c in json.loads(stdout)["runs"][0]["changes"]}
    for metric in ("TTFT median ms", "TTFT mean ms"):
        assert changes[metric]["beyond_spread"] is False and changes[metric]["better"] is None
    # the same --seed repeats a run exactly, and the repeat says it ran on a warm cache
    again = json.loads(files["again"].read_text())
    assert again["load"]["nonce"] == json.loads(files["seeded"].read_text())["load"]["nonce"]
    assert again["runs"][0]["summary"]["cache"]["first_seen"]["hit_rate"] > 0.8
    assert "already cached" in again["runs"][0]["summary"]["warnings"][0]
    assert "warning:" in shown and "already cached" in shown  # the repeat's own report
    code, stdout, _ = bench("compare", str(files["seeded"]), str(files["again"]), "--json")
    data = json.loads(stdout)
    assert any("same prompts (same --seed)" in w for w in data["warnings"])
    ttft = {c["metric"]: c for c in data["runs"][0]["changes"]}["TTFT median ms"]
    assert ttft["beyond_spread"] is True and ttft["better"] is True  # a warm cache shows


def test_compare_refuses_different_workloads_unless_forced(sim_url: str, tmp_path: Path) -> None:
    latency, sweep = tmp_path / "latency.json", tmp_path / "sweep.json"
    code, _, stderr = bench(
        "latency", "--url", sim_url, "-n", "3", "--input-len", "20", "--output-len", "4",
        "-q", "-o", str(latency),
    )  # fmt: skip
    assert code == 0, stderr
    code, _, stderr = bench(
        "random", "--url", sim_url, "-n", "3", "--input-len", "40", "--output-len", "2",
        "-c", "1,2", "-q", "-o", str(sweep),
    )  # fmt: skip
    assert code == 0, stderr
    code, stdout, stderr = bench("compare", str(latency), str(sweep))
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1
    assert "measured different things (workload latency vs random, input_len 20 vs 40" in stderr
    assert "--force" in stderr
    assert "input_len" in stdout and "≠ differs" in stdout  # the settings, side by side
    code, stdout, stderr = bench("compare", str(latency), str(sweep), "--force")
    assert code == 0, stderr
    assert "levels left out: c=2 (only in b)" in stdout
    assert "warning: the runs differ in workload latency vs random" in stdout
    code, stdout, _ = bench("compare", str(latency), str(sweep), "--force", "--json")
    data = json.loads(stdout)
    assert data["forced"] is True and data["levels_left_out"] == ["c=2 (only in b)"]
    assert "input_len" in data["differences"]


@pytest.mark.parametrize("workload", sorted(OWN_OPTIONS))
def test_help_shows_the_defaults_of_the_workloads_spec(workload: str) -> None:
    from infer_cli.bench.spec import defaults, flag

    result = CliRunner().invoke(app, ["bench", workload, "--help"], env={"COLUMNS": "200"})
    lines = result.stdout.splitlines()
    shown = 0
    for name, value in defaults(workload).items():
        if value is None or isinstance(value, bool) or flag(name) not in OWN_OPTIONS[workload]:
            continue
        line = next(line for line in lines if f" {flag(name)} " in line)
        assert f"[default: {value}]" in line, line
        shown += 1
    assert shown == (0 if workload == "file" else len(OWN_OPTIONS[workload]))  # file's: none


def test_every_client_command_has_the_one_url_option() -> None:
    import typer.main

    group = typer.main.get_command(app)
    commands = {name: group.commands[name] for name in ("chat", "models", "status")}  # type: ignore[attr-defined]
    bench_group = group.commands["bench"]  # type: ignore[attr-defined]
    commands |= {f"bench {n}": bench_group.commands[n] for n in OWN_OPTIONS}
    seen = set()
    for name, command in commands.items():
        (url,) = [p for p in command.params if p.name == "url"]
        assert url.opts == ["--url", "-u"] and url.envvar == "INFER_URL", name
        seen.add(url.help)
        (key,) = [p for p in command.params if p.name == "api_key"]
        assert key.opts == ["--api-key"] and key.envvar == "INFER_API_KEY", name
    assert len(seen) == 1  # declared once, in cli/options.py


def test_bench_takes_the_model_from_infer_model_as_every_client(sim_url: str) -> None:
    result = CliRunner().invoke(
        app, ["bench", "random", "-u", sim_url, "-q"], env={"INFER_MODEL": "other"}
    )
    assert result.exit_code == 2 and "does not serve 'other'" in result.stderr


def test_eos_flags_reach_the_requests(sim_url: str, tmp_path: Path) -> None:
    runs = {"default": [], "no": ["--no-ignore-eos"]}
    seen = {}
    for name, extra in runs.items():
        out = tmp_path / f"{name}.json"
        code, _, stderr = bench(
            "latency", "-u", sim_url, "-n", "2", "--input-len", "5", "--output-len", "2",
            "-q", "-o", str(out), *extra,
        )  # fmt: skip
        assert code == 0, stderr
        seen[name] = json.loads(out.read_text())["load"]["ignore_eos"]
    assert seen == {"default": True, "no": False}
