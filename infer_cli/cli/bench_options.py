"""The options every ``infer bench`` workload shares, declared once, and how a workload gets them.

Each workload is a command of its own (``infer bench random``), so its help and its parsing hold
only the options it uses. :func:`workload_command` gives a workload function (its own options,
returning ``build(seed) -> Workload``) the shared ones: server, load (``sweep``: concurrency and
rate, which latency has not), run and output. An option of another workload is refused with a
line that names the workload it belongs to.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from infer_cli.errors import UsageError

DEFAULT_URL = "http://127.0.0.1:8080"

SERVER, LOAD, REQUESTS, OUTPUT = "Server", "Load", "Requests", "Results"
WORKLOAD = "Workload"
FLAG = ""
"""The metavar of an on/off flag: nothing."""


def _server(
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            "-u",
            envvar="INFER_URL",
            metavar="URL",
            help="Endpoint (server root or API base). Default: http://INFER_HOST:INFER_PORT "
            "(http://127.0.0.1:8080).",
            show_default=False,
            rich_help_panel=SERVER,
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="INFER_API_KEY",
            metavar="KEY",
            help="Sent as Authorization: Bearer.",
            show_default=False,
            rich_help_panel=SERVER,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            metavar="MODEL",
            help="Model id (default: the first the endpoint lists).",
            show_default=False,
            rich_help_panel=SERVER,
        ),
    ] = None,
    endpoint: Annotated[
        str,
        typer.Option(
            "--endpoint",
            metavar="chat|completions",
            help="chat (/chat/completions) or completions (/completions).",
            rich_help_panel=REQUESTS,
        ),
    ] = "chat",
    tokenize_url: Annotated[
        str | None,
        typer.Option(
            "--tokenize-url",
            metavar="URL",
            help="Server whose POST /tokenize fits prompt lengths exactly (default: the "
            "endpoint's own: vLLM, the simulator and the infer proxy have one).",
            show_default=False,
            rich_help_panel=SERVER,
        ),
    ] = None,
) -> None: ...


def _sweep(
    concurrency: Annotated[
        str | None,
        typer.Option(
            "--concurrency",
            "-c",
            metavar="N[,N...]",
            help="Requests in flight; a list (1,2,4,8) runs a sweep, each level on prompts of "
            "its own. Default: 1, or no limit with --rate.",
            show_default=False,
            rich_help_panel=LOAD,
        ),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate",
            "-r",
            metavar="PER_SECOND",
            help="Requests per second (default: as fast as --concurrency allows).",
            show_default=False,
            rich_help_panel=LOAD,
        ),
    ] = None,
    burstiness: Annotated[
        float,
        typer.Option(
            "--burstiness",
            metavar="SHAPE",
            help="Gamma shape of arrivals with --rate: 1 Poisson, <1 burstier.",
            rich_help_panel=LOAD,
        ),
    ] = 1.0,
) -> None: ...


def _run(
    num_requests: Annotated[
        int | None,
        typer.Option(
            "--num-requests",
            "-n",
            metavar="N",
            help="Requests to send (default: the workload's own count).",
            show_default=False,
            rich_help_panel=LOAD,
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            "-d",
            metavar="SECONDS",
            help="Stop sending after this long (the workload repeats if it runs out).",
            show_default=False,
            rich_help_panel=LOAD,
        ),
    ] = None,
    warmup: Annotated[
        int,
        typer.Option(
            "--warmup", metavar="N", help="Unmeasured requests first.", rich_help_panel=LOAD
        ),
    ] = 0,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            help="Longest one request may take.",
            rich_help_panel=REQUESTS,
        ),
    ] = 300.0,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            metavar="N",
            help="Repeat a run exactly: the same prompts, nonce included (default: a fresh "
            "nonce, so no run hits another's cache).",
            show_default=False,
            rich_help_panel=LOAD,
        ),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature",
            metavar="T",
            help="Sampling temperature (default: the server's).",
            show_default=False,
            rich_help_panel=REQUESTS,
        ),
    ] = None,
    slo: Annotated[
        str | None,
        typer.Option(
            "--slo",
            metavar="SLO",
            help="Objectives for goodput, e.g. ttft=500,tpot=50,e2e=2000 (milliseconds): "
            "requests that met them all, per second.",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    max_errors: Annotated[
        str,
        typer.Option(
            "--max-errors",
            metavar="N|N%",
            help="Failed requests allowed before exit code 1.",
            rich_help_panel=OUTPUT,
        ),
    ] = "0",
    no_engine_metrics: Annotated[
        bool,
        typer.Option(
            "--no-engine-metrics",
            metavar=FLAG,
            help="Do not read the engine's counters from /metrics before and after.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
) -> None: ...


def _synthetic(
    no_ignore_eos: Annotated[
        bool,
        typer.Option(
            "--no-ignore-eos",
            metavar=FLAG,
            help="Let answers end where the model ends them (default: exactly --output-len "
            "tokens).",
            rich_help_panel=REQUESTS,
        ),
    ] = False,
) -> None: ...


def _literal(
    ignore_eos: Annotated[
        bool,
        typer.Option(
            "--ignore-eos",
            metavar=FLAG,
            help="Generate exactly --output-len tokens (default: answers end where the model "
            "ends them).",
            rich_help_panel=REQUESTS,
        ),
    ] = False,
) -> None: ...


def _output(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write every request and the summary as JSON (for bench compare).",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    csv_path: Annotated[
        Path | None,
        typer.Option(
            "--csv",
            metavar="FILE",
            help="Write one CSV row per request.",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            metavar=FLAG,
            help="Print the summary as JSON instead of tables.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", metavar=FLAG, help="No progress on stderr.", rich_help_panel=OUTPUT
        ),
    ] = False,
) -> None: ...


def _parameters(*templates: Callable[..., Any]) -> list[inspect.Parameter]:
    return [
        parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for template in templates
        for parameter in inspect.signature(template, eval_str=True).parameters.values()
    ]


def _no_type(ctx: Any = None) -> None:
    return None


class BenchCommand(TyperCommand):
    """A bench command whose help shows plain names: ``A B`` for arguments (no braces, no
    type), nothing after a flag such as ``--help``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.param_type_name == "argument":
                setattr(param, "display_type_rich", _no_type)  # noqa: B010 (an instance's own)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar or (param.name or "").upper()
                pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = FLAG
        return option


class WorkloadCommand(BenchCommand):
    """A workload's command: an option of another workload is an error that names its owner."""

    hint: str | None = None

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except Exception as exc:
            name = getattr(exc, "option_name", None)
            if not isinstance(name, str) or type(exc).__name__ != "NoSuchOption":
                raise
            raise self._foreign(ctx, name) from None

    def _foreign(self, ctx: Any, name: str) -> UsageError:
        siblings = getattr(ctx.parent.command, "commands", {}) if ctx.parent else {}
        owners = [
            command_name
            for command_name, command in siblings.items()
            if isinstance(command, WorkloadCommand)
            and any(name in (*p.opts, *p.secondary_opts) for p in command.params)
        ]
        where = f"infer bench {self.name}"
        if not owners:
            return UsageError(
                f"{where} has no option {name}", hint=f"`{where} --help` lists its options"
            )
        if len(owners) == 1:
            have = f"{owners[0]} has it"
        else:
            have = ", ".join(owners[:-1]) + f" and {owners[-1]} have it"
        return UsageError(
            f"{name} is not an option of {self.name} ({have})",
            hint=self.hint or f"`{where} --help` lists {self.name}'s options",
        )


Build = Callable[[int, int | None], Any]
"""A workload's ``build(seed, --num-requests) -> Workload``."""
Runner = Callable[[str, Build, dict[str, Any]], None]


def workload_command(
    app: typer.Typer,
    name: str,
    run: Runner,
    *,
    examples: tuple[str, ...],
    sweep: bool = True,
    synthetic: bool = True,
    hint: str | None = None,
) -> Callable[[Callable[..., Build]], Callable[..., Build]]:
    """Register ``infer bench NAME``: the decorated function takes the workload's own options and
    returns ``build(seed)``; ``run(name, build, shared options)`` does the rest."""

    def register(own: Callable[..., Build]) -> Callable[..., Build]:
        mine = _parameters(own)
        templates: list[Callable[..., None]] = [_server, *([_sweep] if sweep else []), _run]
        templates += [_synthetic if synthetic else _literal, _output]
        shared = _parameters(*templates)

        def command(**values: Any) -> None:
            build = own(**{p.name: values.pop(p.name) for p in mine})
            values.setdefault("concurrency", None)
            values.setdefault("rate", None)
            values.setdefault("burstiness", 1.0)
            run(name, build, values)

        command.__signature__ = inspect.Signature([*mine, *shared])  # type: ignore[attr-defined]
        doc = " ".join((inspect.getdoc(own) or "").split())
        epilog = "Examples:\n\n" + "\n\n".join(examples)
        cls = type(f"{own.__name__}_command", (WorkloadCommand,), {"hint": hint})
        app.command(name, help=doc, epilog=epilog, cls=cls)(command)
        return own

    return register
