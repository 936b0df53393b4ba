"""``infer bench``: latency, throughput and KV-cache-hit benchmarks against an endpoint.

``infer bench WORKLOAD [options]`` (short for ``infer bench run WORKLOAD``) runs one of
latency, random, shared-prefix, multi-turn, long-doc, file; ``infer bench compare A B``
compares two saved results.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from infer_cli.cli.options import JsonOption

WORKLOADS = ("latency", "random", "shared-prefix", "multi-turn", "long-doc", "file")
DEFAULT_URL = "http://127.0.0.1:8080"

_LOAD = "Load"
_SERVER = "Server"
_OUT = "Output"
_RANDOM = "random, latency"
_PREFIX = "shared-prefix"
_TURNS = "multi-turn"
_DOCS = "long-doc"
_FILE = "file"


class BenchGroup(TyperGroup):
    """``infer bench WORKLOAD ...`` is ``infer bench run WORKLOAD ...``."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] in WORKLOADS:
            args = ["run", *args]
        elif args and not args[0].startswith("-") and args[0] not in self.commands:
            from infer_cli.errors import UsageError

            raise UsageError(
                f"unknown workload or command {args[0]!r}",
                hint=f"workloads: {', '.join(WORKLOADS)}; commands: run, compare",
            )
        return super().resolve_command(ctx, args)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)


app = typer.Typer(
    cls=BenchGroup,
    no_args_is_help=True,
    help="Benchmark an endpoint: latency, throughput and KV-cache hits "
    f"(workloads: {', '.join(WORKLOADS)}). Try: infer bench shared-prefix -c 1,4.",
)


def _int_list(text: str, flag: str) -> list[int]:
    from infer_cli.errors import UsageError

    values = []
    for part in text.replace(" ", ",").split(","):
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise UsageError(
                f"{flag} takes whole numbers such as 4 or 1,2,4; got {text!r}"
            ) from None
        if value < 1:
            raise UsageError(f"{flag} values must be at least 1, got {value}")
        values.append(value)
    if not values:
        raise UsageError(f"{flag} is empty")
    return values


def max_errors(text: str, total: int) -> int:
    """How many failed requests ``--max-errors`` allows out of ``total`` (``3`` or ``5%``)."""
    from infer_cli.errors import UsageError

    value = text.strip()
    try:
        if value.endswith("%"):
            fraction = float(value[:-1]) / 100
            if not 0 <= fraction <= 1:
                raise ValueError
            return math.floor(fraction * total + 1e-9)
        count = int(value)
        if count < 0:
            raise ValueError
        return count
    except ValueError:
        raise UsageError(
            f"--max-errors takes a count or a percentage (3, 5%), got {text!r}"
        ) from None


@app.command("run")
def run(
    workload: Annotated[
        str,
        typer.Argument(
            metavar="WORKLOAD",
            help=f"One of: {', '.join(WORKLOADS)}.",
            show_default=False,
        ),
    ],
    url: Annotated[
        str,
        typer.Option(
            "--url",
            "-u",
            envvar="INFER_URL",
            help="Endpoint (server root or API base).",
            rich_help_panel=_SERVER,
        ),
    ] = DEFAULT_URL,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="INFER_API_KEY",
            help="Sent as Authorization: Bearer.",
            show_default=False,
            rich_help_panel=_SERVER,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Model id (default: the first the endpoint lists).",
            show_default=False,
            rich_help_panel=_SERVER,
        ),
    ] = None,
    endpoint: Annotated[
        str,
        typer.Option(
            "--endpoint",
            help="chat (/chat/completions) or completions (/completions).",
            rich_help_panel=_SERVER,
        ),
    ] = "chat",
    tokenize_url: Annotated[
        str | None,
        typer.Option(
            "--tokenize-url",
            help="Server whose POST /tokenize fits prompt lengths exactly (default: the "
            "endpoint's own: vLLM, the simulator and the infer proxy have one).",
            show_default=False,
            rich_help_panel=_SERVER,
        ),
    ] = None,
    concurrency: Annotated[
        str | None,
        typer.Option(
            "--concurrency",
            "-c",
            metavar="N[,N...]",
            help="Requests in flight; a list (1,2,4,8) runs a sweep. Default: 1, or no limit "
            "with --rate.",
            show_default=False,
            rich_help_panel=_LOAD,
        ),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate",
            "-r",
            help="Requests per second (default: as fast as --concurrency allows).",
            show_default=False,
            rich_help_panel=_LOAD,
        ),
    ] = None,
    burstiness: Annotated[
        float,
        typer.Option(
            "--burstiness",
            help="Gamma shape of arrivals with --rate: 1 Poisson, <1 burstier.",
            rich_help_panel=_LOAD,
        ),
    ] = 1.0,
    num_requests: Annotated[
        int | None,
        typer.Option(
            "--num-requests",
            "-n",
            help="Requests to send (default: the workload's own).",
            show_default=False,
            rich_help_panel=_LOAD,
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            "-d",
            help="Stop sending after this many seconds (the workload repeats if it runs out).",
            show_default=False,
            rich_help_panel=_LOAD,
        ),
    ] = None,
    warmup: Annotated[
        int, typer.Option("--warmup", help="Unmeasured requests first.", rich_help_panel=_LOAD)
    ] = 0,
    timeout: Annotated[
        float,
        typer.Option("--timeout", help="Seconds one request may take.", rich_help_panel=_LOAD),
    ] = 300.0,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of prompts and arrivals.", rich_help_panel=_LOAD)
    ] = 0,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature",
            help="Sampling temperature (default: the server's).",
            show_default=False,
            rich_help_panel=_LOAD,
        ),
    ] = None,
    ignore_eos: Annotated[
        bool | None,
        typer.Option(
            "--ignore-eos/--no-ignore-eos",
            help="Generate exactly --output-len tokens (default: on, off for file).",
            show_default=False,
            rich_help_panel=_LOAD,
        ),
    ] = None,
    slo: Annotated[
        str | None,
        typer.Option(
            "--slo",
            metavar="ttft=MS,tpot=MS,e2e=MS",
            help="Objectives for goodput (requests that met them all, per second).",
            show_default=False,
            rich_help_panel=_LOAD,
        ),
    ] = None,
    allowed_errors: Annotated[
        str,
        typer.Option(
            "--max-errors",
            help="Failed requests allowed before exit code 1 (3, or 5%).",
            rich_help_panel=_LOAD,
        ),
    ] = "0",
    engine_metrics: Annotated[
        bool,
        typer.Option(
            "--engine-metrics/--no-engine-metrics",
            help="Read the engine's counters from /metrics before and after.",
            rich_help_panel=_LOAD,
        ),
    ] = True,
    input_len: Annotated[
        int | None,
        typer.Option(
            "--input-len",
            help="Prompt tokens [1024; latency 128].",
            show_default=False,
            rich_help_panel=_RANDOM,
        ),
    ] = None,
    output_len: Annotated[
        int | None,
        typer.Option(
            "--output-len",
            help="Tokens to generate [128; shared-prefix, long-doc 32; "
            "multi-turn 100; file: from the file].",
            show_default=False,
            rich_help_panel=_RANDOM,
        ),
    ] = None,
    range_ratio: Annotated[
        float,
        typer.Option(
            "--range-ratio", help="Lengths drawn from [L(1-r), L(1+r)].", rich_help_panel=_RANDOM
        ),
    ] = 0.0,
    prefixes: Annotated[
        int, typer.Option("--prefixes", help="Distinct shared prefixes.", rich_help_panel=_PREFIX)
    ] = 4,
    suffixes: Annotated[
        int, typer.Option("--suffixes", help="Requests per prefix.", rich_help_panel=_PREFIX)
    ] = 8,
    prefix_len: Annotated[
        int, typer.Option("--prefix-len", help="Tokens of each prefix.", rich_help_panel=_PREFIX)
    ] = 1024,
    suffix_len: Annotated[
        int, typer.Option("--suffix-len", help="Tokens of each suffix.", rich_help_panel=_PREFIX)
    ] = 64,
    users: Annotated[
        int, typer.Option("--users", help="Conversations.", rich_help_panel=_TURNS)
    ] = 10,
    rounds: Annotated[
        int, typer.Option("--rounds", help="Turns per conversation.", rich_help_panel=_TURNS)
    ] = 5,
    system_len: Annotated[
        int,
        typer.Option(
            "--system-len", help="Tokens of the shared system prompt.", rich_help_panel=_TURNS
        ),
    ] = 1000,
    user_context_len: Annotated[
        int,
        typer.Option(
            "--user-context-len", help="Tokens of each user's own context.", rich_help_panel=_TURNS
        ),
    ] = 2000,
    question_len: Annotated[
        int | None,
        typer.Option(
            "--question-len",
            help="Tokens of each question \\[multi-turn 50; long-doc 32].",
            show_default=False,
            rich_help_panel=_TURNS,
        ),
    ] = None,
    documents: Annotated[
        int, typer.Option("--documents", help="Documents.", rich_help_panel=_DOCS)
    ] = 8,
    document_len: Annotated[
        int, typer.Option("--document-len", help="Tokens per document.", rich_help_panel=_DOCS)
    ] = 3000,
    repeat_count: Annotated[
        int,
        typer.Option(
            "--repeat-count", help="Queries per document in the query round.", rich_help_panel=_DOCS
        ),
    ] = 2,
    repeat_mode: Annotated[
        str,
        typer.Option(
            "--repeat-mode", help="Query order: tile, interleave or random.", rich_help_panel=_DOCS
        ),
    ] = "random",
    dataset: Annotated[
        Path | None,
        typer.Option(
            "--dataset",
            help="JSONL ({'prompt'|'messages', 'max_tokens'}) or ShareGPT.",
            show_default=False,
            rich_help_panel=_FILE,
        ),
    ] = None,
    shuffle: Annotated[
        bool,
        typer.Option(
            "--shuffle", help="Shuffle the file's prompts (seeded).", rich_help_panel=_FILE
        ),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write every request and the summary as JSON.",
            show_default=False,
            rich_help_panel=_OUT,
        ),
    ] = None,
    csv_path: Annotated[
        Path | None,
        typer.Option(
            "--csv", help="Write one CSV row per request.", show_default=False, rich_help_panel=_OUT
        ),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the summary as JSON instead of tables.", rich_help_panel=_OUT
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress on stderr.", rich_help_panel=_OUT)
    ] = False,
) -> None:
    """Run a workload against an endpoint and report latency, throughput and cache hits."""
    from infer_cli.bench import stats
    from infer_cli.bench.service import BenchPlan
    from infer_cli.errors import UsageError

    if workload not in WORKLOADS:
        raise UsageError(
            f"unknown workload {workload!r}", hint=f"choose one of {', '.join(WORKLOADS)}"
        )
    if endpoint not in ("chat", "completions"):
        raise UsageError(f"--endpoint must be chat or completions, got {endpoint!r}")
    if rate is not None and rate <= 0:
        raise UsageError(f"--rate must be positive, got {rate:g}")
    if burstiness <= 0:
        raise UsageError(f"--burstiness must be positive, got {burstiness:g}")
    if duration is not None and duration <= 0:
        raise UsageError(f"--duration must be positive, got {duration:g}")
    if timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {timeout:g}")
    if warmup < 0:
        raise UsageError(f"--warmup must be 0 or more, got {warmup}")
    if num_requests is not None and num_requests < 1:
        raise UsageError(f"--num-requests must be at least 1, got {num_requests}")
    if repeat_mode not in ("tile", "interleave", "random"):
        raise UsageError(f"--repeat-mode must be tile, interleave or random, got {repeat_mode!r}")
    try:
        objectives = stats.parse_slo(slo)
    except ValueError as exc:
        raise UsageError(f"--slo: {exc}") from None
    max_errors(allowed_errors, 1)  # check the syntax now, before any request
    levels: list[int | None] = list(_int_list(concurrency, "--concurrency")) if concurrency else []
    if workload == "latency":
        if any(level != 1 for level in levels) or rate is not None:
            raise UsageError(
                "latency runs one request at a time", hint="for load, use the random workload"
            )
        levels = [1]
    if not levels:
        levels = [None] if rate is not None else [1]
    from infer_cli.bench.presets import builder

    build = builder(
        workload,
        num_requests=num_requests,
        input_len=input_len,
        output_len=output_len,
        range_ratio=range_ratio,
        prefixes=prefixes,
        suffixes=suffixes,
        prefix_len=prefix_len,
        suffix_len=suffix_len,
        users=users,
        rounds=rounds,
        system_len=system_len,
        user_context_len=user_context_len,
        question_len=question_len,
        documents=documents,
        document_len=document_len,
        repeat_count=repeat_count,
        repeat_mode=repeat_mode,
        dataset=dataset,
        shuffle=shuffle,
    )
    build(seed)  # bad shapes and unreadable datasets fail here, before connecting
    plan = BenchPlan(
        url=url,
        build=build,
        api_key=api_key,
        model=model,
        endpoint="chat" if endpoint == "chat" else "completions",
        tokenize_url=tokenize_url,
        levels=tuple(levels),
        rate=rate if rate is not None else math.inf,
        burstiness=burstiness,
        num_requests=num_requests,
        duration=duration,
        warmup=warmup,
        timeout=timeout,
        seed=seed,
        temperature=temperature,
        ignore_eos=ignore_eos,
        slo=objectives,
        engine_metrics=engine_metrics,
    )
    _execute(
        plan,
        output=output,
        csv_path=csv_path,
        json_output=json_output,
        quiet=quiet,
        allowed_errors=allowed_errors,
    )


def _execute(
    plan: Any,
    *,
    output: Path | None,
    csv_path: Path | None,
    json_output: bool,
    quiet: bool,
    allowed_errors: str,
) -> None:
    import asyncio
    import json
    import signal

    from infer_cli.bench import report
    from infer_cli.bench.service import run_bench
    from infer_cli.errors import InferError
    from infer_cli.ui import console
    from infer_cli.ui.bench_view import BenchView, print_result

    view = BenchView(quiet=quiet)

    async def main() -> report.BenchResult:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def interrupted() -> None:
            view.note("stopping: cancelling requests in flight (Ctrl-C again to quit at once)")
            stop.set()
            loop.remove_signal_handler(signal.SIGINT)

        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, interrupted)
        try:
            return await run_bench(plan, view, stop)
        finally:
            view.close()
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGINT)

    result = asyncio.run(main())
    saved = []
    if output is not None:
        report.write_json(result, output)
        saved.append(str(output))
    if csv_path is not None:
        report.write_csv(result, csv_path)
        saved.append(str(csv_path))
    if json_output:
        data = result.as_dict()
        for run_data in data["runs"]:
            run_data.pop("requests", None)
        typer.echo(json.dumps(report.finite(data), indent=2))
    else:
        print_result(result)
    if saved:
        console.info(
            ("partial results" if result.partial else "results")
            + " written to "
            + " and ".join(saved)
        )
    where = f"; partial results in {saved[0]}" if saved else " (pass --output to keep what ran)"
    if result.partial:
        raise InferError(f"the benchmark stopped early: {result.reason}{where}")
    failed, total = result.failed, result.total
    if failed > max_errors(allowed_errors, total):
        kinds: dict[str, int] = {}
        for run_result in result.runs:
            for kind, count in (run_result.summary.get("errors") or {}).items():
                kinds[kind] = kinds.get(kind, 0) + int(count)
        detail = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
        raise InferError(
            f"{failed} of {total} requests failed ({detail})",
            hint="--max-errors N or N% allows some",
        )


@app.command("compare")
def compare(
    a: Annotated[Path, typer.Argument(help="Results of the baseline (--output of a run).")],
    b: Annotated[Path, typer.Argument(help="Results to compare with it.")],
    json_output: JsonOption = False,
) -> None:
    """Compare two saved results: each figure of a and b, and the change in percent."""
    import json

    from infer_cli.bench import report

    first, second = report.read(a), report.read(b)
    comparisons = report.compare(first, second)
    if json_output:
        typer.echo(json.dumps(report.comparison_json(a, b, comparisons), indent=2))
        return
    from infer_cli.ui.bench_view import print_comparison

    print_comparison(str(a), str(b), comparisons)
