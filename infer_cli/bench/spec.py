"""What one ``infer bench`` run is asked to do: a pydantic model per workload, validated once.

Each workload's model holds the options that workload takes and their defaults (the command line
shows these defaults in its help: they are declared nowhere else), refuses another workload's
options, and builds its :class:`~infer_cli.bench.workloads.Workload` for a seed. The models form
one union discriminated by ``workload``; :func:`parse` validates a run's options into it, and the
service runs that spec as it is.

A field is named after its option (``input_len`` is ``--input-len``), so a validation error names
the flag the user typed: :func:`parse` turns the first one into a one-line
:class:`~infer_cli.errors.UsageError`. On/off flags are stored positively (``--no-engine-metrics``
is ``engine_metrics=False``); the command line turns them around.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from infer_cli.bench import stats
from infer_cli.bench.workloads import (
    Api,
    RepeatMode,
    Workload,
    file_workload,
    long_doc_workload,
    multi_turn_workload,
    random_workload,
    shared_prefix_workload,
)
from infer_cli.client import default_url
from infer_cli.errors import UsageError

OWN_ERROR = "bench_option"
"""The type of the errors this module writes itself (their message needs no ``got ...``)."""


def _own(message: str) -> PydanticCustomError:
    return PydanticCustomError(OWN_ERROR, "{message}", {"message": message})


# --- values parsed from text -----------------------------------------------------------------


def _levels(value: Any) -> Any:
    """``--concurrency 1,2,4`` (commas or spaces) -> ``[1, 2, 4]``; each is checked as an int."""
    if not isinstance(value, str):
        return value
    parts = [part for part in value.replace(" ", ",").split(",") if part]
    if not parts:
        raise _own("is empty: give whole numbers such as 4 or 1,2,4")
    for part in parts:
        if not part.lstrip("-").isdigit():
            raise _own(f"takes whole numbers such as 4 or 1,2,4; got {value!r}")
    return [int(part) for part in parts]


def _slo(value: Any) -> Any:
    if value is None or isinstance(value, str):
        try:
            return stats.parse_slo(value)
        except ValueError as exc:
            raise _own(str(exc)) from None
    return value


@dataclass(frozen=True)
class ErrorBudget:
    """``--max-errors``: failed requests a run may have and still exit 0 (a count or a share)."""

    count: int = 0
    percent: float | None = None
    """A share of the requests sent, in percent (``5%``); ``None``: ``count`` is the budget."""

    def allows(self, total: int) -> int:
        """How many of ``total`` requests may fail."""
        if self.percent is None:
            return self.count
        return math.floor(self.percent / 100 * total + 1e-9)


def _budget(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if 0 <= percent <= 100:
                return ErrorBudget(percent=percent)
        elif int(text) >= 0:
            return ErrorBudget(count=int(text))
    except ValueError:
        pass
    raise _own(f"takes a count or a percentage (3, 5%); got {value!r}")


Count = Annotated[int, Field(ge=1)]
Tokens = Annotated[int, Field(ge=1)]
Ratio = Annotated[float, Field(ge=0, lt=1)]
Levels = Annotated[tuple[Annotated[int, Field(ge=1)], ...] | None, BeforeValidator(_levels)]
Slo = Annotated[dict[str, float], BeforeValidator(_slo)]
Budget = Annotated[ErrorBudget, BeforeValidator(_budget)]


# --- the shared options ----------------------------------------------------------------------


class _Spec(BaseModel, ABC):
    """The options every workload takes: server, requests, run, results."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # the server
    url: str = Field(default_factory=lambda: default_url())
    """Endpoint: server root or API base (``--url`` / ``INFER_URL``, else ``INFER_HOST`` /
    ``INFER_PORT`` as every client)."""
    api_key: str | None = None
    model: str | None = None
    """``None``: the first model the endpoint lists."""
    tokenize_url: str | None = None
    """Server whose ``/tokenize`` fits prompt lengths (``None``: the endpoint's own)."""
    # the requests
    endpoint: Api = "chat"
    timeout: float = Field(default=300.0, gt=0)
    temperature: float | None = Field(default=None, ge=0)
    """``None``: the server's."""
    ignore_eos: bool = True
    """Generate exactly ``max_tokens`` (synthetic workloads; the file workload's default is off)."""
    # the run
    num_requests: Count | None = None
    """Stop after this many requests, and size the workload by it (``None``: its own count)."""
    duration: float | None = Field(default=None, gt=0)
    warmup: int = Field(default=0, ge=0)
    seed: int | None = None
    """``None``: a fresh nonce, so no run hits another's cache (see ``bench.text.run_nonce``)."""
    # the results
    slo: Slo = Field(default_factory=dict)
    """Goodput objectives in seconds, by metric (ttft, tpot, e2e)."""
    max_errors: Budget = Field(default="0", validate_default=True)
    """The default is written as a user types it (the help shows it so), then validated."""
    engine_metrics: bool = True

    requests: ClassVar[int | None] = None
    """Requests the workload sends without ``--num-requests`` (``None``: its shape decides)."""

    @property
    def shape_seed(self) -> int:
        """Seed of the workload's shape (lengths, orders, arrivals); each level adds its index."""
        return 0 if self.seed is None else self.seed

    @property
    def levels(self) -> tuple[int | None, ...]:
        """Concurrency of each run (a sweep when there are several; ``None``: no limit)."""
        return (1,)

    @property
    def arrivals(self) -> tuple[float, float]:
        """Requests per second (``inf``: each as soon as a slot is free) and gamma shape."""
        return math.inf, 1.0

    @abstractmethod
    def build(self, seed: int) -> Workload:
        """The workload to send, shaped by ``seed``."""

    def _count(self) -> int:
        """Requests to build: ``--num-requests``, else the workload's own count."""
        return self.num_requests or self.requests or 1


class _Swept(_Spec):
    """The options of a workload that can load the server: concurrency levels or a rate."""

    concurrency: Levels = None
    """``None``: 1, or no limit with a rate."""
    rate: float | None = Field(default=None, gt=0)
    burstiness: float = Field(default=1.0, gt=0)

    @property
    def levels(self) -> tuple[int | None, ...]:
        if self.concurrency:
            return self.concurrency
        return (None,) if self.rate is not None else (1,)

    @property
    def arrivals(self) -> tuple[float, float]:
        return (math.inf if self.rate is None else self.rate), self.burstiness


# --- one model per workload ------------------------------------------------------------------


class LatencySpec(_Spec):
    """One request at a time: what a single user waits."""

    workload: Literal["latency"] = "latency"
    input_len: Tokens = 128
    output_len: Tokens = 128
    range_ratio: Ratio = 0.0
    requests: ClassVar[int | None] = 10

    def build(self, seed: int) -> Workload:
        return random_workload(
            num_requests=self._count(),
            input_len=self.input_len,
            output_len=self.output_len,
            range_ratio=self.range_ratio,
            seed=seed,
            name="latency",
        )


class RandomSpec(_Swept):
    """Independent prompts under load."""

    workload: Literal["random"] = "random"
    input_len: Tokens = 1024
    output_len: Tokens = 128
    range_ratio: Ratio = 0.0
    requests: ClassVar[int | None] = 100

    def build(self, seed: int) -> Workload:
        return random_workload(
            num_requests=self._count(),
            input_len=self.input_len,
            output_len=self.output_len,
            range_ratio=self.range_ratio,
            seed=seed,
        )


class SharedPrefixSpec(_Swept):
    """Prompts that share prefixes: cold against warm TTFT."""

    workload: Literal["shared-prefix"] = "shared-prefix"
    prefixes: Count = 4
    suffixes: Count = 8
    prefix_len: Tokens = 1024
    suffix_len: Tokens = 64
    output_len: Tokens = 32

    def build(self, seed: int) -> Workload:
        return shared_prefix_workload(
            prefixes=self.prefixes,
            suffixes=self.suffixes,
            prefix_len=self.prefix_len,
            suffix_len=self.suffix_len,
            output_len=self.output_len,
            seed=seed,
        )


class MultiTurnSpec(_Swept):
    """LMCache's multi-round QA."""

    workload: Literal["multi-turn"] = "multi-turn"
    users: Count = 10
    rounds: Count = 5
    system_len: int = Field(default=1000, ge=0)
    user_context_len: int = Field(default=2000, ge=0)
    question_len: Tokens = 50
    output_len: Tokens = 100

    def build(self, seed: int) -> Workload:
        return multi_turn_workload(
            users=self.users,
            rounds=self.rounds,
            system_len=self.system_len,
            user_context_len=self.user_context_len,
            question_len=self.question_len,
            answer_len=self.output_len,
            seed=seed,
        )


class LongDocSpec(_Swept):
    """LMCache's long-document QA."""

    workload: Literal["long-doc"] = "long-doc"
    documents: Count = 8
    document_len: Tokens = 3000
    question_len: Tokens = 32
    output_len: Tokens = 32
    repeat_count: Count = 2
    repeat_mode: RepeatMode = "random"

    def build(self, seed: int) -> Workload:
        return long_doc_workload(
            documents=self.documents,
            document_len=self.document_len,
            question_len=self.question_len,
            output_len=self.output_len,
            repeat_count=self.repeat_count,
            repeat_mode=self.repeat_mode,
            seed=seed,
        )


class FileSpec(_Swept):
    """Prompts from a JSONL or ShareGPT file."""

    workload: Literal["file"] = "file"
    dataset: Path
    output_len: Tokens | None = None
    """``None``: each prompt's own length from the file."""
    shuffle: bool = False
    ignore_eos: bool = False

    def build(self, seed: int) -> Workload:
        return file_workload(
            self.dataset,
            num_requests=self.num_requests,
            output_len=self.output_len,
            seed=seed,
            shuffle=self.shuffle,
        )


BenchSpec = Annotated[
    LatencySpec | RandomSpec | SharedPrefixSpec | MultiTurnSpec | LongDocSpec | FileSpec,
    Field(discriminator="workload"),
]
"""A run of one workload, its options validated."""

SPECS: tuple[type[_Spec], ...] = get_args(get_args(BenchSpec)[0])
WORKLOADS: tuple[str, ...] = tuple(str(spec.model_fields["workload"].default) for spec in SPECS)

_ADAPTER: TypeAdapter[BenchSpec] = TypeAdapter(BenchSpec)


def parse(options: Mapping[str, Any]) -> BenchSpec:
    """Validate a run's options (``workload`` and field names) into its spec.

    Raises :class:`UsageError` naming the first bad option's flag, what is wrong and where to
    look; an option that is not given takes the workload's default.
    """
    workload = str(options.get("workload"))
    try:
        spec = _ADAPTER.validate_python(dict(options))
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise _usage_error(workload, errors[0], more) from None
    return spec


def defaults(workload: str) -> dict[str, Any]:
    """The options of ``workload`` that have a fixed default, by field name (for help)."""
    for spec in SPECS:
        if spec.model_fields["workload"].default == workload:
            return {
                name: field.default
                for name, field in spec.model_fields.items()
                if not field.is_required() and field.default_factory is None
            }
    raise UsageError(f"unknown workload {workload!r}", hint=f"workloads: {', '.join(WORKLOADS)}")


def flag(name: str) -> str:
    """The option a field comes from: ``input_len`` -> ``--input-len``."""
    return "--" + name.replace("_", "-")


def _usage_error(workload: str, error: Mapping[str, Any], more: str = "") -> UsageError:
    kind = error["type"]
    where = f"infer bench {workload}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return UsageError(
            f"unknown workload {workload!r}", hint=f"workloads: {', '.join(WORKLOADS)}"
        )
    loc = tuple(error["loc"])
    if loc and loc[0] == workload:
        loc = loc[1:]
    option = flag(str(loc[0])) if loc else "an option"
    help_hint = f"`{where} --help` describes {option}"
    if kind == "missing":
        return UsageError(f"{where} needs {option}{more}", hint=help_hint)
    if kind == "extra_forbidden":
        return UsageError(f"{option} is not an option of {workload}{more}", hint=help_hint)
    if kind == OWN_ERROR:
        return UsageError(f"{option}: {error['msg']}{more}", hint=help_hint)
    subject = f"{option} values" if len(loc) > 1 else option
    message = (
        f"{_rule(kind, error.get('ctx') or {}, str(error['msg']))}, got {error.get('input')!r}"
    )
    return UsageError(f"{subject} {message}{more}", hint=help_hint)


def _rule(kind: str, ctx: Mapping[str, Any], message: str) -> str:
    """A pydantic error's rule, to follow an option's name (``must be at least 1``)."""
    if kind == "greater_than_equal":
        return "must be 0 or more" if ctx["ge"] == 0 else f"must be at least {ctx['ge']:g}"
    if kind == "greater_than":
        return "must be positive" if ctx["gt"] == 0 else f"must be more than {ctx['gt']:g}"
    if kind == "less_than":
        return f"must be less than {ctx['lt']:g}"
    if kind == "literal_error":
        return f"must be {ctx['expected']}"
    return message.removeprefix("Value error, ").removeprefix("Input ")


__all__ = [
    "SPECS",
    "WORKLOADS",
    "BenchSpec",
    "ErrorBudget",
    "FileSpec",
    "LatencySpec",
    "LongDocSpec",
    "MultiTurnSpec",
    "RandomSpec",
    "SharedPrefixSpec",
    "defaults",
    "flag",
    "parse",
]
