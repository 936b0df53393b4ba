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
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from infer_cli import __version__
from infer_cli.bench import engine_metrics
from infer_cli.bench.report import BenchResult, RunResult
from infer_cli.bench.runner import Load, Progress, Runner, Target
from infer_cli.bench.spec import BenchSpec
from infer_cli.bench.stats import summarize
from infer_cli.bench.text import TextSource, run_nonce
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


def level_label(concurrency: int | None, rate: float) -> str:
    parts = []
    if concurrency is not None:
        parts.append(f"c={concurrency}")
    if math.isfinite(rate):
        parts.append(f"rate={rate:g}")
    return ",".join(parts) or "c=inf"


async def run_bench(spec: BenchSpec, events: Events, stop: asyncio.Event) -> BenchResult:
    """Run ``spec``: each of its levels on prompts of their own, all under one nonce."""
    spec.build(spec.shape_seed)  # an unreadable dataset fails here, before connecting
    nonce = run_nonce(spec.seed)
    rate, burstiness = spec.arrivals
    async with Client(spec.url, spec.api_key, timeout=30.0) as client:
        events.step(f"connecting to {client.endpoint.url}")
        listing = await client.list_models()
        model = spec.model or (listing.ids[0] if listing.ids else None)
        if model is None:
            raise ClientError(f"{client.endpoint.url} lists no model", hint="pass --model")
        if spec.model and listing.ids and spec.model not in listing.ids:
            raise ModelNotFoundError(
                f"{client.endpoint.url} does not serve {spec.model!r}",
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
            api=client.endpoint.api, model=model, api_key=spec.api_key, endpoint=spec.endpoint
        )
        headers = {"authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
        async with httpx.AsyncClient(timeout=30.0, headers=headers) as http:
            tokenizer = await _tokenizer(spec, client, http, model, events)
            result = BenchResult(
                server=server,
                workload={},
                load=_load_json(spec, nonce),
                lengths={
                    "exact": tokenizer is not None,
                    "source": tokenizer.url if tokenizer else "estimate",
                },
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                version=__version__,
            )
            if spec.warmup > 0 and not stop.is_set():
                result.warmup = await _warm_up(spec, nonce, target, tokenizer, events, stop)
            for index, concurrency in enumerate(spec.levels):
                if stop.is_set():
                    result.partial = True
                    result.reason = result.reason or "stopped before the end (interrupted)"
                    break
                seed = spec.shape_seed + index
                workload = with_head(spec.build(seed))
                if not result.workload:
                    result.workload = {"name": workload.name, **workload.params}
                label = level_label(concurrency, rate)
                events.step(f"preparing {workload.requests} prompts ({label})")
                texts = await _texts(workload, TextSource(seed, nonce), tokenizer, events)
                result.lengths["off_target"] = texts.off_target
                before = await _metrics(client, spec, events)
                load = Load(
                    concurrency=concurrency,
                    rate=rate,
                    burstiness=burstiness,
                    num_requests=spec.num_requests,
                    duration=spec.duration,
                    timeout=spec.timeout,
                    seed=seed,
                    temperature=spec.temperature,
                    ignore_eos=spec.ignore_eos,
                )
                total = spec.num_requests or (None if spec.duration else workload.requests)
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
                after = await _metrics(client, spec, events) if before is not None else None
                summary = summarize(outcome.records, duration=outcome.duration, slo=spec.slo)
                summary["concurrency"] = concurrency
                summary["max_in_flight"] = outcome.max_in_flight
                summary["seed"] = seed
                if outcome.repeated:
                    summary["repeated_requests"] = outcome.repeated
                run = RunResult(
                    label=label,
                    concurrency=concurrency,
                    rate=rate if math.isfinite(rate) else None,
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
    spec: BenchSpec, client: Client, http: httpx.AsyncClient, model: str, events: Events
) -> ServerTokenizer | None:
    roots = [spec.tokenize_url] if spec.tokenize_url else [client.endpoint.root]
    tokenizer = await find_tokenizer(http, [r for r in roots if r], model)
    if tokenizer is None:
        if spec.tokenize_url:
            events.note(
                f"{spec.tokenize_url}/tokenize did not answer: prompt lengths are estimates"
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


async def _metrics(client: Client, spec: BenchSpec, events: Events) -> dict[str, Any] | None:
    if not spec.engine_metrics:
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
    spec: BenchSpec,
    nonce: str,
    target: Target,
    tokenizer: ServerTokenizer | None,
    events: Events,
    stop: asyncio.Event,
) -> dict[str, Any]:
    """``spec.warmup`` requests of the workload's size, unmeasured, on prompts of their own."""
    shape = spec.build(spec.shape_seed)
    first = shape.phases[0].sessions[0].turns[0] if shape.phases[0].sessions else None
    input_len = max(1, first.target_tokens) if first else 128
    output_len = (first.max_tokens if first else None) or 16
    seed = spec.shape_seed + WARMUP_SEED_OFFSET
    workload = with_head(
        random_workload(
            num_requests=spec.warmup, input_len=input_len, output_len=output_len, seed=seed
        )
    )
    events.step(f"warming up with {spec.warmup} requests")
    texts = await _texts(workload, TextSource(seed, nonce), tokenizer, events)
    concurrency = min(spec.warmup, max(level or spec.warmup for level in spec.levels))
    load = Load(
        concurrency=concurrency,
        timeout=spec.timeout,
        seed=seed,
        temperature=spec.temperature,
        ignore_eos=spec.ignore_eos,
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


def _load_json(spec: BenchSpec, nonce: str) -> dict[str, Any]:
    """What the results file records about the load (``bench compare`` sets runs side by side)."""
    rate, burstiness = spec.arrivals
    return {
        "concurrency": list(spec.levels),
        "rate": rate if math.isfinite(rate) else None,
        "burstiness": burstiness,
        "num_requests": spec.num_requests,
        "duration": spec.duration,
        "warmup": spec.warmup,
        "timeout": spec.timeout,
        "seed": spec.shape_seed,
        "nonce": nonce,
        "seeded": spec.seed is not None,
        "endpoint": spec.endpoint,
        "temperature": spec.temperature,
        "ignore_eos": spec.ignore_eos,
        "slo_ms": {name: value * 1000 for name, value in spec.slo.items()},
    }
