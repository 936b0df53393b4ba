"""``infer bench``: latency, throughput and KV-cache-hit benchmarks against an endpoint.

``infer bench WORKLOAD [options]`` runs one of latency, random, shared-prefix, multi-turn,
long-doc, file (each a command with its own options; the shared ones are declared once in
:mod:`infer_cli.cli.bench_options`); ``infer bench compare A B`` compares two saved results.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from infer_cli.cli.bench_options import (
    FLAG,
    WORKLOAD,
    BenchCommand,
    Results,
    WorkloadCommand,
    workload_command,
)

if TYPE_CHECKING:
    from infer_cli.bench.spec import BenchSpec


class BenchGroup(TyperGroup):
    """Workloads and ``compare``; ``infer bench run WORKLOAD`` (the old spelling) still works."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        workloads = [
            name for name, command in self.commands.items() if isinstance(command, WorkloadCommand)
        ]
        if len(args) > 1 and args[0] == "run" and args[1] in workloads:
            args = args[1:]
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            from infer_cli.errors import UsageError

            raise UsageError(
                f"unknown workload or command {args[0]!r}",
                hint=f"workloads: {', '.join(workloads)}; or compare A B",
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


def _run_workload(spec: BenchSpec, results: Results) -> None:
    """Run a validated spec and show or write its results (every workload ends here)."""
    import asyncio
    import json
    import signal

    from infer_cli.bench import report
    from infer_cli.bench.service import run_bench
    from infer_cli.errors import InferError
    from infer_cli.ui import console
    from infer_cli.ui.bench_view import BenchView, print_result

    view = BenchView(quiet=results.quiet)

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
            return await run_bench(spec, view, stop)
        finally:
            view.close()
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGINT)

    result = asyncio.run(main())
    saved = []
    if results.output is not None:
        report.write_json(result, results.output)
        saved.append(str(results.output))
    if results.csv_path is not None:
        report.write_csv(result, results.csv_path)
        saved.append(str(results.csv_path))
    if results.json_output:
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
    if failed > spec.max_errors.allows(total):
        kinds: dict[str, int] = {}
        for run_result in result.runs:
            for kind, count in (run_result.summary.get("errors") or {}).items():
                kinds[kind] = kinds.get(kind, 0) + int(count)
        detail = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
        raise InferError(
            f"{failed} of {total} requests failed ({detail})",
            hint="--max-errors N or N% allows some",
        )


def _tokens(flag: str, help: str) -> Any:
    return typer.Option(flag, metavar="TOKENS", help=help, rich_help_panel=WORKLOAD)


def _count(flag: str, help: str) -> Any:
    return typer.Option(flag, metavar="N", help=help, rich_help_panel=WORKLOAD)


InputLen = Annotated[int, _tokens("--input-len", "Prompt tokens.")]
OutputLen = Annotated[int, _tokens("--output-len", "Tokens to generate.")]
QuestionLen = Annotated[int, _tokens("--question-len", "Tokens of each question.")]
RangeRatio = Annotated[
    float,
    typer.Option(
        "--range-ratio",
        metavar="R",
        help="Lengths drawn from [L(1-R), L(1+R)].",
        rich_help_panel=WORKLOAD,
    ),
]

# Each function below declares a workload's own options (their defaults live in its model in
# infer_cli.bench.spec) and, as its docstring, the command's help.


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
def latency(*, input_len: InputLen, output_len: OutputLen, range_ratio: RangeRatio) -> None:
    """One request at a time: what a single user waits. Sends 10 requests unless -n or
    --duration says otherwise."""


@workload_command(
    app,
    "random",
    _run_workload,
    examples=(
        "infer bench random -n 200 -c 1,4,16 -o run.json",
        "infer bench random --rate 8 --duration 60 --slo ttft=500,tpot=50",
    ),
)
def random_(*, input_len: InputLen, output_len: OutputLen, range_ratio: RangeRatio) -> None:
    """Independent prompts under load: throughput and latency at each concurrency or rate.
    Sends 100 requests per level unless -n or --duration says otherwise."""


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
    *,
    prefixes: Annotated[int, _count("--prefixes", "Distinct shared prefixes.")],
    suffixes: Annotated[int, _count("--suffixes", "Requests per prefix.")],
    prefix_len: Annotated[int, _tokens("--prefix-len", "Tokens of each prefix.")],
    suffix_len: Annotated[int, _tokens("--suffix-len", "Tokens of each suffix.")],
    output_len: OutputLen,
) -> None:
    """Prompts that share prefixes, sent round-robin over the prefixes: TTFT of the first
    request of each prefix (cold) against the others (warm), and hit rates."""


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
    *,
    users: Annotated[int, _count("--users", "Conversations.")],
    rounds: Annotated[int, _count("--rounds", "Turns per conversation.")],
    system_len: Annotated[
        int, _tokens("--system-len", "Tokens of the system prompt all users share.")
    ],
    user_context_len: Annotated[
        int, _tokens("--user-context-len", "Tokens of each user's own context.")
    ],
    question_len: QuestionLen,
    output_len: Annotated[int, _tokens("--output-len", "Tokens of each answer.")],
) -> None:
    """LMCache's multi-round QA: conversations whose every turn resends the whole history
    with the model's real answers."""


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
    *,
    documents: Annotated[int, _count("--documents", "Documents.")],
    document_len: Annotated[int, _tokens("--document-len", "Tokens per document.")],
    question_len: QuestionLen,
    output_len: OutputLen,
    repeat_count: Annotated[
        int, _count("--repeat-count", "Queries per document in the query round.")
    ],
    repeat_mode: Annotated[
        str,
        typer.Option(
            "--repeat-mode",
            metavar="tile|interleave|random",
            help="Query order: tile (fewest hits), interleave (most) or random.",
            rich_help_panel=WORKLOAD,
        ),
    ],
) -> None:
    """LMCache's long-document QA: a warm-up round that reads every document once, then a
    query round that asks about each document again."""


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
    *,
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
    ],
) -> None:
    """Prompts from a file: each line's prompt or messages, or ShareGPT conversations. Sends
    every prompt once unless -n or --duration says otherwise."""


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
