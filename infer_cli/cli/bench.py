"""``infer bench``: latency, throughput and KV-cache-hit benchmarks against an endpoint.

``infer bench WORKLOAD [options]`` runs one of latency, random, shared-prefix, multi-turn,
long-doc, file (each a command with its own options; the shared ones are declared once in
:mod:`infer_cli.cli.bench_options`); ``infer bench compare A B`` compares two saved results.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from infer_cli.cli.bench_options import FLAG, WORKLOAD, BenchCommand, Build, workload_command
from infer_cli.client import resolve_url

WORKLOADS = ("latency", "random", "shared-prefix", "multi-turn", "long-doc", "file")


class BenchGroup(TyperGroup):
    """Workloads and ``compare``; ``infer bench run WORKLOAD`` (the old spelling) still works."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if len(args) > 1 and args[0] == "run" and args[1] in WORKLOADS:
            args = args[1:]
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            from infer_cli.errors import UsageError

            raise UsageError(
                f"unknown workload or command {args[0]!r}",
                hint=f"workloads: {', '.join(WORKLOADS)}; or compare A B",
            )
        return super().resolve_command(ctx, args)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = FLAG  # a flag shows no type
        return option


app = typer.Typer(
    cls=BenchGroup,
    no_args_is_help=True,
    help="Benchmark an endpoint: latency, throughput and KV-cache hits. "
    "Each workload is a command with its own options: infer bench random --help.",
    epilog="Examples:\n\n"
    "infer bench latency\n\n"
    "infer bench shared-prefix -c 1,4 -o after.json\n\n"
    "infer bench compare before.json after.json",
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


def _run_workload(name: str, make: Build, o: dict[str, Any]) -> None:
    """Check the shared options, build the plan and run it (every workload ends here)."""
    from infer_cli.bench import stats
    from infer_cli.bench.service import BenchPlan
    from infer_cli.bench.text import run_nonce
    from infer_cli.errors import UsageError

    if o["endpoint"] not in ("chat", "completions"):
        raise UsageError(f"--endpoint must be chat or completions, got {o['endpoint']!r}")
    for flag, key in (("--rate", "rate"), ("--duration", "duration")):
        if o[key] is not None and o[key] <= 0:
            raise UsageError(f"{flag} must be positive, got {o[key]:g}")
    for flag, key in (("--burstiness", "burstiness"), ("--timeout", "timeout")):
        if o[key] <= 0:
            raise UsageError(f"{flag} must be positive, got {o[key]:g}")
    if o["warmup"] < 0:
        raise UsageError(f"--warmup must be 0 or more, got {o['warmup']}")
    if o["num_requests"] is not None and o["num_requests"] < 1:
        raise UsageError(f"--num-requests must be at least 1, got {o['num_requests']}")
    try:
        objectives = stats.parse_slo(o["slo"])
    except ValueError as exc:
        raise UsageError(f"--slo: {exc}") from None
    max_errors(o["max_errors"], 1)  # check the syntax now, before any request
    concurrency, rate = o["concurrency"], o["rate"]
    levels: list[int | None] = list(_int_list(concurrency, "--concurrency")) if concurrency else []
    if not levels:
        levels = [None] if rate is not None else [1]
    seed = 0 if o["seed"] is None else o["seed"]

    def build(seed: int) -> Any:
        return make(seed, o["num_requests"])

    build(seed)  # bad shapes and unreadable datasets fail here, before connecting
    plan = BenchPlan(
        url=resolve_url(o["url"]),  # None: INFER_HOST / INFER_PORT, as every client
        build=build,
        api_key=o["api_key"],
        model=o["model"],
        endpoint="chat" if o["endpoint"] == "chat" else "completions",
        tokenize_url=o["tokenize_url"],
        levels=tuple(levels),
        rate=rate if rate is not None else math.inf,
        burstiness=o["burstiness"],
        num_requests=o["num_requests"],
        duration=o["duration"],
        warmup=o["warmup"],
        timeout=o["timeout"],
        seed=seed,
        nonce=run_nonce(o["seed"]),
        seeded=o["seed"] is not None,
        temperature=o["temperature"],
        ignore_eos=o["ignore_eos"] if "ignore_eos" in o else not o["no_ignore_eos"],
        slo=objectives,
        engine_metrics=not o["no_engine_metrics"],
    )
    _execute(
        plan,
        output=o["output"],
        csv_path=o["csv_path"],
        json_output=o["json_output"],
        quiet=o["quiet"],
        allowed_errors=o["max_errors"],
    )


def _tokens(flag: str, help: str) -> Any:
    return typer.Option(flag, metavar="TOKENS", help=help, rich_help_panel=WORKLOAD)


def _count(flag: str, help: str) -> Any:
    return typer.Option(flag, metavar="N", help=help, rich_help_panel=WORKLOAD)


RangeRatio = Annotated[
    float,
    typer.Option(
        "--range-ratio",
        metavar="R",
        help="Lengths drawn from [L(1-R), L(1+R)].",
        rich_help_panel=WORKLOAD,
    ),
]


@workload_command(
    app,
    "latency",
    _run_workload,
    sweep=False,
    hint="latency sends one request at a time; `infer bench random -c N` puts load on the server",
    examples=(
        "infer bench latency",
        "infer bench latency --input-len 2048 --output-len 256 -o latency.json",
    ),
)
def latency(
    input_len: Annotated[int, _tokens("--input-len", "Prompt tokens.")] = 128,
    output_len: Annotated[int, _tokens("--output-len", "Tokens to generate.")] = 128,
    range_ratio: RangeRatio = 0.0,
) -> Build:
    """One request at a time: what a single user waits. Sends 10 requests unless -n or
    --duration says otherwise."""
    from infer_cli.bench.workloads import random_workload

    def build(seed: int, count: int | None) -> Any:
        return random_workload(
            num_requests=count or 10,
            input_len=input_len,
            output_len=output_len,
            range_ratio=range_ratio,
            seed=seed,
            name="latency",
        )

    return build


@workload_command(
    app,
    "random",
    _run_workload,
    examples=(
        "infer bench random -n 200 -c 1,4,16 -o run.json",
        "infer bench random --rate 8 --duration 60 --slo ttft=500,tpot=50",
    ),
)
def random_(
    input_len: Annotated[int, _tokens("--input-len", "Prompt tokens.")] = 1024,
    output_len: Annotated[int, _tokens("--output-len", "Tokens to generate.")] = 128,
    range_ratio: RangeRatio = 0.0,
) -> Build:
    """Independent prompts under load: throughput and latency at each concurrency or rate.
    Sends 100 requests per level unless -n or --duration says otherwise."""
    from infer_cli.bench.workloads import random_workload

    def build(seed: int, count: int | None) -> Any:
        return random_workload(
            num_requests=count or 100,
            input_len=input_len,
            output_len=output_len,
            range_ratio=range_ratio,
            seed=seed,
        )

    return build


@workload_command(
    app,
    "shared-prefix",
    _run_workload,
    examples=(
        "infer bench shared-prefix",
        "infer bench shared-prefix --prefixes 8 --prefix-len 4096 -c 1,4",
    ),
)
def shared_prefix(
    prefixes: Annotated[int, _count("--prefixes", "Distinct shared prefixes.")] = 4,
    suffixes: Annotated[int, _count("--suffixes", "Requests per prefix.")] = 8,
    prefix_len: Annotated[int, _tokens("--prefix-len", "Tokens of each prefix.")] = 1024,
    suffix_len: Annotated[int, _tokens("--suffix-len", "Tokens of each suffix.")] = 64,
    output_len: Annotated[int, _tokens("--output-len", "Tokens to generate.")] = 32,
) -> Build:
    """Prompts that share prefixes, sent round-robin over the prefixes: TTFT of the first
    request of each prefix (cold) against the others (warm), and hit rates."""
    from infer_cli.bench.workloads import shared_prefix_workload

    def build(seed: int, count: int | None) -> Any:
        return shared_prefix_workload(
            prefixes=prefixes,
            suffixes=suffixes,
            prefix_len=prefix_len,
            suffix_len=suffix_len,
            output_len=output_len,
            seed=seed,
        )

    return build


@workload_command(
    app,
    "multi-turn",
    _run_workload,
    examples=(
        "infer bench multi-turn",
        "infer bench multi-turn --users 20 --rounds 8 --system-len 2000 -c 4",
    ),
)
def multi_turn(
    users: Annotated[int, _count("--users", "Conversations.")] = 10,
    rounds: Annotated[int, _count("--rounds", "Turns per conversation.")] = 5,
    system_len: Annotated[
        int, _tokens("--system-len", "Tokens of the system prompt all users share.")
    ] = 1000,
    user_context_len: Annotated[
        int, _tokens("--user-context-len", "Tokens of each user's own context.")
    ] = 2000,
    question_len: Annotated[int, _tokens("--question-len", "Tokens of each question.")] = 50,
    output_len: Annotated[int, _tokens("--output-len", "Tokens of each answer.")] = 100,
) -> Build:
    """LMCache's multi-round QA: conversations whose every turn resends the whole history
    with the model's real answers."""
    from infer_cli.bench.workloads import multi_turn_workload

    def build(seed: int, count: int | None) -> Any:
        return multi_turn_workload(
            users=users,
            rounds=rounds,
            system_len=system_len,
            user_context_len=user_context_len,
            question_len=question_len,
            answer_len=output_len,
            seed=seed,
        )

    return build


@workload_command(
    app,
    "long-doc",
    _run_workload,
    examples=(
        "infer bench long-doc",
        "infer bench long-doc --document-len 8000 --repeat-mode interleave",
    ),
)
def long_doc(
    documents: Annotated[int, _count("--documents", "Documents.")] = 8,
    document_len: Annotated[int, _tokens("--document-len", "Tokens per document.")] = 3000,
    question_len: Annotated[int, _tokens("--question-len", "Tokens of each question.")] = 32,
    output_len: Annotated[int, _tokens("--output-len", "Tokens to generate.")] = 32,
    repeat_count: Annotated[
        int, _count("--repeat-count", "Queries per document in the query round.")
    ] = 2,
    repeat_mode: Annotated[
        str,
        typer.Option(
            "--repeat-mode",
            metavar="tile|interleave|random",
            help="Query order: tile (fewest hits), interleave (most) or random.",
            rich_help_panel=WORKLOAD,
        ),
    ] = "random",
) -> Build:
    """LMCache's long-document QA: a warm-up round that reads every document once, then a
    query round that asks about each document again."""
    from infer_cli.bench.workloads import long_doc_workload
    from infer_cli.errors import UsageError

    if repeat_mode not in ("tile", "interleave", "random"):
        raise UsageError(f"--repeat-mode must be tile, interleave or random, got {repeat_mode!r}")

    def build(seed: int, count: int | None) -> Any:
        return long_doc_workload(
            documents=documents,
            document_len=document_len,
            question_len=question_len,
            output_len=output_len,
            repeat_count=repeat_count,
            repeat_mode=repeat_mode,  # type: ignore[arg-type]
            seed=seed,
        )

    return build


@workload_command(
    app,
    "file",
    _run_workload,
    synthetic=False,
    examples=(
        "infer bench file --dataset prompts.jsonl",
        "infer bench file --dataset sharegpt.json -n 500 --shuffle -c 8",
    ),
)
def file(
    dataset: Annotated[
        Path | None,
        typer.Option(
            "--dataset",
            metavar="FILE",
            help="JSONL ({'prompt'|'messages', 'max_tokens'} per line) or ShareGPT JSON. Required.",
            show_default=False,
            rich_help_panel=WORKLOAD,
        ),
    ] = None,
    output_len: Annotated[
        int | None,
        typer.Option(
            "--output-len",
            metavar="TOKENS",
            help="Tokens to generate (default: each prompt's own from the file).",
            show_default=False,
            rich_help_panel=WORKLOAD,
        ),
    ] = None,
    shuffle: Annotated[
        bool,
        typer.Option(
            "--shuffle",
            metavar=FLAG,
            help="Shuffle the file's prompts (seeded).",
            rich_help_panel=WORKLOAD,
        ),
    ] = False,
) -> Build:
    """Prompts from a file: each line's prompt or messages, or ShareGPT conversations. Sends
    every prompt once unless -n or --duration says otherwise."""
    from infer_cli.bench.workloads import file_workload
    from infer_cli.errors import UsageError

    if dataset is None:
        raise UsageError("the file workload needs --dataset FILE (JSONL or ShareGPT JSON)")
    path = dataset

    def build(seed: int, count: int | None) -> Any:
        return file_workload(
            path, num_requests=count, output_len=output_len, seed=seed, shuffle=shuffle
        )

    return build


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


@app.command(
    "compare",
    cls=BenchCommand,
    help="Compare two saved results: their settings side by side, then each figure of A and B "
    "and the change, coloured only when it is beyond the runs' own spread.",
    epilog="Examples:\n\n"
    "infer bench compare before.json after.json\n\n"
    "infer bench compare latency.json random.json --force --json",
)
def compare(
    a: Annotated[
        Path,
        typer.Argument(
            metavar="A", help="Results of the baseline (--output of a run).", show_default=False
        ),
    ],
    b: Annotated[
        Path,
        typer.Argument(metavar="B", help="Results to compare with it.", show_default=False),
    ],
    force: Annotated[
        bool,
        typer.Option("--force", metavar=FLAG, help="Compare runs whose workload or load differ."),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", metavar=FLAG, help="Print the comparison as JSON.")
    ] = False,
) -> None:
    import json

    from infer_cli.bench import report
    from infer_cli.bench.compare import as_json
    from infer_cli.bench.compare import compare as compare_results
    from infer_cli.errors import UsageError

    result = compare_results(report.read(a), report.read(b))
    differences = result.differences
    if differences:
        what = ", ".join(f"{s.name} {_shown(s.a)} vs {_shown(s.b)}" for s in differences)
        if not force:
            if not json_output:
                from infer_cli.ui.bench_view import print_settings

                print_settings(str(a), str(b), result)
            raise UsageError(
                f"{a} and {b} measured different things ({what})",
                hint="--force compares them anyway",
            )
        result.warnings.insert(
            0, f"the runs differ in {what}: a change may come from that, not from the server"
        )
    if json_output:
        data = as_json(str(a), str(b), result, forced=force and bool(differences))
        typer.echo(json.dumps(data, indent=2))
        return
    from infer_cli.ui.bench_view import print_comparison

    print_comparison(str(a), str(b), result)


def _shown(value: Any) -> str:
    return "-" if value is None else str(value)
