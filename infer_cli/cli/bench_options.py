"""The options every ``infer bench`` workload shares, declared once, and how a workload gets them.

Each workload is a command of its own (``infer bench random``), so its help and its parsing hold
only the options it uses. :func:`workload_command` gives a workload's options (a function whose
parameters are its own options) the shared ones: server, load (``sweep``: concurrency and rate,
which latency has not), run and results. An option of another workload is refused with a line that
names the workload it belongs to.

The values are checked in one place, the workload's model in :mod:`infer_cli.bench.spec`, and so
are the defaults: an option the spec gives a default is declared here without one, and its
command fills it in from the spec when it runs or shows its help (importing pydantic only then,
so ``infer --help`` stays fast).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args

import typer
from typer.core import TyperCommand

from infer_cli.cli.options import ApiKeyOption, ModelOption, UrlOption, in_panel
from infer_cli.errors import UsageError

if TYPE_CHECKING:
    from infer_cli.bench.spec import BenchSpec

SERVER, LOAD, REQUESTS, OUTPUT = "Server", "Load", "Requests", "Results"
WORKLOAD = "Workload"
FLAG = ""
"""The metavar of an on/off flag: nothing."""

NEGATED = {"no_engine_metrics": "engine_metrics", "no_ignore_eos": "ignore_eos"}
"""Flags that turn a spec's setting off: ``--no-engine-metrics`` is ``engine_metrics=False``."""


def _server(
    *,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    model: ModelOption = None,
    endpoint: Annotated[
        str,
        typer.Option(
            "--endpoint",
            metavar="chat|completions",
            help="chat (/chat/completions) or completions (/completions).",
            rich_help_panel=REQUESTS,
        ),
    ],
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
    *,
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
    ],
) -> None: ...


def _run(
    *,
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
    ],
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            help="Longest one request may take.",
            rich_help_panel=REQUESTS,
        ),
    ],
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
    ],
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
    *,
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
    *,
    ignore_eos: Annotated[
        bool,
        typer.Option(
            "--ignore-eos",
            metavar=FLAG,
            help="Generate exactly --output-len tokens (default: answers end where the model "
            "ends them).",
            rich_help_panel=REQUESTS,
        ),
    ],
) -> None: ...


def _output(
    *,
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


@dataclass(frozen=True)
class Results:
    """Where a run's results go (``--output``, ``--csv``, ``--json``, ``--quiet``)."""

    output: Path | None = None
    csv_path: Path | None = None
    json_output: bool = False
    quiet: bool = False


RESULTS = frozenset(Results.__dataclass_fields__)


def _parameters(*templates: Callable[..., Any]) -> list[inspect.Parameter]:
    return [
        parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for template in templates
        for parameter in inspect.signature(template, eval_str=True).parameters.values()
    ]


def _panelled(parameter: inspect.Parameter, panel: str) -> inspect.Parameter:
    """``parameter`` shown under ``panel`` unless its option names a panel of its own."""
    info = get_args(parameter.annotation)[1]
    if info.rich_help_panel is not None:
        return parameter
    return parameter.replace(annotation=in_panel(parameter.annotation, panel))


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
    """A workload's command: its defaults come from the workload's spec, and an option of
    another workload is an error that names its owner."""

    hint: str | None = None
    _filled = False

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        self._fill_defaults()
        return super().make_context(*args, **kwargs)

    def _fill_defaults(self) -> None:
        """Give each option the spec declares a default for that default (shown in the help)."""
        if self._filled:
            return
        from infer_cli.bench.spec import defaults

        known = defaults(self.name or "")
        for param in self.params:
            if param.name in known:
                param.default = known[param.name]
                param.required = False
        self._filled = True

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


def spec_options(workload: str, values: dict[str, Any]) -> dict[str, Any]:
    """A workload command's values as the spec's fields: negated flags turned around, options
    not given (``None``) left out so that the spec's default applies."""
    options: dict[str, Any] = {"workload": workload}
    for name, value in values.items():
        if name in NEGATED:
            options[NEGATED[name]] = not value
        elif value is not None:
            options[name] = value
    return options


Run = Callable[["BenchSpec", Results], None]


def workload_command(
    app: typer.Typer,
    name: str,
    run: Run,
    *,
    examples: tuple[str, ...],
    sweep: bool = True,
    synthetic: bool = True,
    hint: str | None = None,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``infer bench NAME``: the decorated function's parameters are the workload's own
    options and its docstring the command's help; ``run(spec, results)`` does the rest."""

    def register(own: Callable[..., None]) -> Callable[..., None]:
        shared = [_panelled(p, SERVER) for p in _parameters(_server)]
        templates: list[Callable[..., None]] = [*([_sweep] if sweep else []), _run]
        templates += [_synthetic if synthetic else _literal, _output]
        shared += _parameters(*templates)

        def command(**values: Any) -> None:
            from infer_cli.bench.spec import parse

            results = Results(**{key: values.pop(key) for key in RESULTS})
            run(parse(spec_options(name, values)), results)

        command.__signature__ = inspect.Signature([*_parameters(own), *shared])  # type: ignore[attr-defined]
        doc = " ".join((inspect.getdoc(own) or "").split())
        epilog = "Examples:\n\n" + "\n\n".join(examples)
        cls = type(f"{own.__name__}_command", (WorkloadCommand,), {"hint": hint})
        app.command(name, help=doc, epilog=epilog, cls=cls)(command)
        return own

    return register
