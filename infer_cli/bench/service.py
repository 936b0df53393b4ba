"""One call for the command line: connect, prepare prompts, warm up, run each level, collect.

Progress reaches the caller through :class:`Events` (the terminal view implements it); nothing
here prints. Errors before the first request (no server, unknown model) are raised as
:mod:`infer_cli.errors` exceptions; problems during the run end up in the result instead, which
is *partial* when the run stopped early.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from infer_cli import __version__
from infer_cli.bench import engine_metrics
from infer_cli.bench.report import BenchResult, RunResult
from infer_cli.bench.runner import Endpoint, Load, Progress, Runner, Target
from infer_cli.bench.stats import summarize
from infer_cli.bench.text import TextSource
from infer_cli.bench.tokens import ServerTokenizer, Texts, find_tokenizer, materialize
from infer_cli.bench.workloads import Workload, random_workload, with_head
from infer_cli.client.api import Client
from infer_cli.errors import ClientError, ModelNotFoundError

WARMUP_SEED_OFFSET = 1_000_003


class Events(Protocol):
    def step(self, message: str) -> None: ...
    def note(self, message: str) -> None: ...
    def progress(self, progress: Progress) -> None: ...
    def level_started(self, label: str, requests: int | None) -> None: ...
    def level_done(self, run: RunResult) -> None: ...


@dataclass(frozen=True)
class BenchPlan:
    url: str
    build: Callable[[int], Workload]
    """The workload for a seed (each level of a sweep gets ``seed + level``)."""
    api_key: str | None = None
    model: str | None = None
    endpoint: Endpoint = "chat"
    tokenize_url: str | None = None
    levels: tuple[int | None, ...] = (1,)
    """Concurrency of each run (a sweep when there are several; ``None``: unlimited)."""
    rate: float = math.inf
    burstiness: float = 1.0
    num_requests: int | None = None
    duration: float | None = None
    warmup: int = 0
    timeout: float = 300.0
    seed: int = 0
    """Seed of the workload's shape: lengths, orders, arrivals (each level adds its index)."""
    nonce: str = ""
    """The run's nonce: the head of every prompt and the seed of its text (see bench.text)."""
    seeded: bool = False
    """The nonce came from ``--seed`` (the run repeats one exactly) rather than chance."""
    temperature: float | None = None
    ignore_eos: bool | None = None
    slo: dict[str, float] = field(default_factory=dict)
    engine_metrics: bool = True


def level_label(concurrency: int | None, rate: float) -> str:
    parts = []
    if concurrency is not None:
        parts.append(f"c={concurrency}")
    if math.isfinite(rate):
        parts.append(f"rate={rate:g}")
    return ",".join(parts) or "c=inf"


async def run_bench(plan: BenchPlan, events: Events, stop: asyncio.Event) -> BenchResult:
    async with Client(plan.url, plan.api_key, timeout=30.0) as client:
        events.step(f"connecting to {client.endpoint.url}")
        listing = await client.list_models()
        model = plan.model or (listing.ids[0] if listing.ids else None)
        if model is None:
            raise ClientError(f"{client.endpoint.url} lists no model", hint="pass --model")
        if plan.model and listing.ids and plan.model not in listing.ids:
            raise ModelNotFoundError(
                f"{client.endpoint.url} does not serve {plan.model!r}",
                hint=f"it serves: {', '.join(listing.ids)}",
            )
        entry = next((m for m in listing.models if m.get("id") == model), {})
        server: dict[str, Any] = {
            "url": client.endpoint.url,
            "api": client.endpoint.api,
            "model": model,
            "listing": entry,
        }
        try:
            health = await client.health()
            server["health"] = health.body or {"status_code": health.status_code}
            if isinstance(health.body, dict) and isinstance(health.body.get("profile"), str):
                server["profile"] = health.body["profile"]
        except ClientError:
            server["health"] = None
        target = Target(
            api=client.endpoint.api, model=model, api_key=plan.api_key, endpoint=plan.endpoint
        )
        headers = {"authorization": f"Bearer {plan.api_key}"} if plan.api_key else {}
        async with httpx.AsyncClient(timeout=30.0, headers=headers) as http:
            tokenizer = await _tokenizer(plan, client, http, model, events)
            result = BenchResult(
                server=server,
                workload={},
                load=_load_json(plan),
                lengths={
                    "exact": tokenizer is not None,
                    "source": tokenizer.url if tokenizer else "estimate",
                },
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                version=__version__,
            )
            if plan.warmup > 0 and not stop.is_set():
                result.warmup = await _warm_up(plan, target, tokenizer, events, stop)
            for index, concurrency in enumerate(plan.levels):
                if stop.is_set():
                    result.partial = True
                    result.reason = result.reason or "stopped before the end (interrupted)"
                    break
                seed = plan.seed + index
                workload = with_head(plan.build(seed))
                if not result.workload:
                    result.workload = {"name": workload.name, **workload.params}
                label = level_label(concurrency, plan.rate)
                events.step(f"preparing {workload.requests} prompts ({label})")
                texts = await _texts(workload, TextSource(seed, plan.nonce), tokenizer, events)
                result.lengths["off_target"] = texts.off_target
                before = await _metrics(client, plan, events)
                load = Load(
                    concurrency=concurrency,
                    rate=plan.rate,
                    burstiness=plan.burstiness,
                    num_requests=plan.num_requests,
                    duration=plan.duration,
                    timeout=plan.timeout,
                    seed=seed,
                    temperature=plan.temperature,
                    ignore_eos=plan.ignore_eos,
                )
                total = plan.num_requests or (None if plan.duration else workload.requests)
                events.level_started(label, total)
                runner = Runner(
                    target,
                    load,
                    workload,
                    texts,
                    label=label,
                    on_progress=events.progress,
                    stop=stop,
                )
                outcome = await runner.run()
                after = await _metrics(client, plan, events) if before is not None else None
                summary = summarize(outcome.records, duration=outcome.duration, slo=plan.slo)
                summary["concurrency"] = concurrency
                summary["max_in_flight"] = outcome.max_in_flight
                summary["seed"] = seed
                if outcome.repeated:
                    summary["repeated_requests"] = outcome.repeated
                run = RunResult(
                    label=label,
                    concurrency=concurrency,
                    rate=plan.rate if math.isfinite(plan.rate) else None,
                    summary=summary,
                    records=outcome.records,
                    engine=engine_metrics.delta(before, after),
                    stopped=outcome.stopped,
                    started=outcome.started,
                )
                result.runs.append(run)
                events.level_done(run)
                if outcome.stopped:
                    result.partial = True
                    result.reason = outcome.stopped
                    break
            return result


async def _tokenizer(
    plan: BenchPlan, client: Client, http: httpx.AsyncClient, model: str, events: Events
) -> ServerTokenizer | None:
    roots = [plan.tokenize_url] if plan.tokenize_url else [client.endpoint.root]
    tokenizer = await find_tokenizer(http, [r for r in roots if r], model)
    if tokenizer is None:
        if plan.tokenize_url:
            events.note(
                f"{plan.tokenize_url}/tokenize did not answer: prompt lengths are estimates"
            )
        else:
            events.note(
                f"{client.endpoint.root} has no /tokenize: prompt lengths are estimates (about "
                "one token per word); --tokenize-url URL fits them with a server that has one. "
                "Measured prompt tokens come from usage either way."
            )
    return tokenizer


async def _texts(
    workload: Workload, source: TextSource, tokenizer: ServerTokenizer | None, events: Events
) -> Texts:
    try:
        return await materialize(workload, source, tokenizer)
    except (httpx.HTTPError, ValueError) as exc:
        events.note(f"tokenizing failed ({exc}): prompt lengths are estimates")
        return await materialize(workload, source, None)


async def _metrics(client: Client, plan: BenchPlan, events: Events) -> dict[str, Any] | None:
    if not plan.engine_metrics:
        return None
    try:
        snapshot = engine_metrics.snapshot(await client.metrics_text())
    except ClientError as exc:
        events.note(f"engine metrics unavailable ({exc.message}): no engine cache deltas")
        return None
    if snapshot is None:
        events.note(f"{client.endpoint.root}/metrics has no vllm:* metrics: no engine deltas")
    return snapshot


async def _warm_up(
    plan: BenchPlan,
    target: Target,
    tokenizer: ServerTokenizer | None,
    events: Events,
    stop: asyncio.Event,
) -> dict[str, Any]:
    """``plan.warmup`` requests of the workload's size, unmeasured, on prompts of their own."""
    shape = plan.build(plan.seed)
    first = shape.phases[0].sessions[0].turns[0] if shape.phases[0].sessions else None
    input_len = max(1, first.target_tokens) if first else 128
    output_len = (first.max_tokens if first else None) or 16
    seed = plan.seed + WARMUP_SEED_OFFSET
    workload = with_head(
        random_workload(
            num_requests=plan.warmup, input_len=input_len, output_len=output_len, seed=seed
        )
    )
    events.step(f"warming up with {plan.warmup} requests")
    texts = await _texts(workload, TextSource(seed, plan.nonce), tokenizer, events)
    concurrency = min(plan.warmup, max(level or plan.warmup for level in plan.levels))
    load = Load(
        concurrency=concurrency,
        timeout=plan.timeout,
        seed=seed,
        temperature=plan.temperature,
        ignore_eos=plan.ignore_eos,
    )
    runner = Runner(target, load, workload, texts, label="warm-up", stop=stop, warmup=True)
    started = time.perf_counter()
    outcome = await runner.run()
    failed = sum(1 for r in outcome.records if not r.ok)
    if failed:
        events.note(f"{failed} of {len(outcome.records)} warm-up requests failed")
    return {
        "requests": len(outcome.records),
        "failed": failed,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _load_json(plan: BenchPlan) -> dict[str, Any]:
    return {
        "concurrency": list(plan.levels),
        "rate": plan.rate if math.isfinite(plan.rate) else None,
        "burstiness": plan.burstiness,
        "num_requests": plan.num_requests,
        "duration": plan.duration,
        "warmup": plan.warmup,
        "timeout": plan.timeout,
        "seed": plan.seed,
        "nonce": plan.nonce,
        "seeded": plan.seeded,
        "endpoint": plan.endpoint,
        "temperature": plan.temperature,
        "ignore_eos": plan.ignore_eos,
        "slo_ms": {name: value * 1000 for name, value in plan.slo.items()},
    }
