"""The load generator: sends a workload's requests, streams the answers, records every chunk.

One asyncio task per request; a dispatcher starts them when they are due (a free slot under
``concurrency``, and the next arrival when ``rate`` is finite) and when their session is ready
(a conversation's next turn waits for the previous answer). Each answer is read into its record
by :func:`infer_cli.bench.stream.read_stream`. Progress is sampled by a separate ticker, not
reported per request.

The run stops early (and says why: the result is then *partial*) when asked to (Ctrl-C), when the
server stops accepting connections, or when ``duration`` has passed (which is not partial: the
requests in flight then finish and count).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infer_cli.bench.http import HTTPFailure, Pool
from infer_cli.bench.records import RequestRecord
from infer_cli.bench.schedule import intervals
from infer_cli.bench.stream import ChunkCounter, error_message, read_stream
from infer_cli.bench.tokens import Texts
from infer_cli.bench.workloads import (
    HEAD_KEY,
    Api,
    Phase,
    Session,
    Turn,
    Workload,
    first_seen,
)

CONNECT_FAILURES_TO_ABORT = 3
"""Consecutive connection failures (with nothing succeeding) that mean the server is gone."""


@dataclass(frozen=True)
class Target:
    api: str
    """API base, e.g. ``http://127.0.0.1:8080/v1``."""
    model: str
    api_key: str | None = None
    endpoint: Api = "chat"

    @property
    def path(self) -> str:
        from urllib.parse import urlsplit

        base = urlsplit(self.api).path.rstrip("/")
        return base + ("/chat/completions" if self.endpoint == "chat" else "/completions")


@dataclass(frozen=True)
class Load:
    concurrency: int | None = 1
    """Most requests in flight (``None``: no limit)."""
    rate: float = math.inf
    """Requests per second (``inf``: each as soon as a slot is free)."""
    burstiness: float = 1.0
    num_requests: int | None = None
    """Stop after this many requests (default: the workload's own count)."""
    duration: float | None = None
    """Stop sending after this many seconds; the workload repeats if it runs out first."""
    timeout: float = 300.0
    seed: int = 0
    temperature: float | None = None
    ignore_eos: bool | None = None
    """``None``: the workload decides."""


@dataclass(frozen=True)
class Progress:
    label: str
    phase: str
    done: int
    failed: int
    in_flight: int
    total: int | None
    elapsed: float
    ttft_p50: float | None
    tokens_per_s: float


@dataclass
class RunOutcome:
    records: list[RequestRecord]
    duration: float
    started: float
    """Wall-clock start (``time.time()``)."""
    stopped: str | None = None
    """Why the run ended early (then it is partial), or ``None``."""
    repeated: int = 0
    """Requests sent beyond the workload's own (it repeated to fill ``duration``)."""
    max_in_flight: int = 0
    phases: list[str] = field(default_factory=list)


class _SessionState:
    __slots__ = ("history", "index", "session")

    def __init__(self, index: int, session: Session) -> None:
        self.index = index
        self.session = session
        self.history: list[tuple[str, str]] = []


class Runner:
    def __init__(
        self,
        target: Target,
        load: Load,
        workload: Workload,
        texts: Texts,
        *,
        label: str = "run",
        on_progress: Callable[[Progress], None] | None = None,
        progress_interval: float = 0.25,
        stop: asyncio.Event | None = None,
        warmup: bool = False,
    ) -> None:
        self.target = target
        self.load = load
        self.workload = workload
        self.texts = texts
        self.label = label
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self.stop = stop or asyncio.Event()
        self.warmup = warmup
        self.chat = target.endpoint == "chat"
        headers = {"Accept": "text/event-stream"}
        if target.api_key:
            headers["Authorization"] = f"Bearer {target.api_key}"
        self.pool = Pool(target.api, size=max(1, load.concurrency or 64), headers=headers)
        ignore_eos = workload.ignore_eos if load.ignore_eos is None else load.ignore_eos
        self._extra: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}
        if ignore_eos:
            self._extra["ignore_eos"] = True
        if load.temperature is not None:
            self._extra["temperature"] = load.temperature
        self._records: list[RequestRecord] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._done = 0
        self._failed = 0
        self._chunks_seen = ChunkCounter()
        self._recent_ttft: deque[float] = deque(maxlen=256)
        self._window: deque[tuple[float, int]] = deque()
        self._connect_failures = 0
        self._warm_groups: set[str] = set()
        self._sent_keys: set[str] = set()
        self._stopped: str | None = None
        self._origin = 0.0
        self._phase = ""

    # --- building requests ------------------------------------------------------------------

    def body(self, state: _SessionState, turn: Turn) -> bytes:
        session = state.session
        payload: dict[str, Any] = {"model": self.target.model}
        system = self.texts.join(session.system) if session.system else ""
        question = self.texts.join(turn.prompt)
        if self.chat:
            if turn.messages is not None:
                messages = [dict(m) for m in turn.messages]
                head = (
                    self.texts.by_key.get(HEAD_KEY)
                    if turn.prompt and turn.prompt[0].key == HEAD_KEY
                    else None
                )
                if head and messages and isinstance(messages[0].get("content"), str):
                    messages[0]["content"] = head.strip() + "\n\n" + messages[0]["content"]
            else:
                messages = [{"role": "system", "content": system}] if system else []
                for asked, answer in state.history:
                    messages.append({"role": "user", "content": asked})
                    messages.append({"role": "assistant", "content": answer})
                messages.append({"role": "user", "content": question})
            payload["messages"] = messages
        else:
            payload["prompt"] = system + "".join(a + b for a, b in state.history) + question
        if turn.max_tokens is not None:
            payload["max_tokens"] = turn.max_tokens
        payload.update(self._extra)
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

    # --- running ----------------------------------------------------------------------------

    async def run(self) -> RunOutcome:
        started = time.time()
        self._origin = time.perf_counter()
        ticker = asyncio.create_task(self._tick()) if self.on_progress else None
        phases: list[str] = []
        sent = 0
        try:
            for phase in self.workload.phases:
                if self._stopped or self._out_of_time():
                    break
                phases.append(phase.name)
                self._phase = phase.name
                last = phase is self.workload.phases[-1]
                sent = await self._run_phase(phase, sent, repeat=last)
        finally:
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
            self.pool.close()
        end = time.perf_counter() - self._origin
        if self.on_progress:
            self.on_progress(self._snapshot(end))
        records = sorted(self._records, key=lambda r: r.index)
        finish = max((r.sent + (r.end or 0.0) for r in records), default=0.0)
        first = min((r.sent for r in records), default=0.0)
        own = self.workload.requests
        return RunOutcome(
            records=records,
            duration=max(0.0, finish - first),
            started=started,
            stopped=self._stopped,
            repeated=max(0, len(records) - own),
            max_in_flight=self._max_in_flight,
            phases=phases,
        )

    def _out_of_time(self) -> bool:
        duration = self.load.duration
        return duration is not None and time.perf_counter() - self._origin >= duration

    async def _run_phase(self, phase: Phase, sent: int, *, repeat: bool) -> int:
        load = self.load
        states = [_SessionState(i, s) for i, s in enumerate(phase.sessions)]
        flow = _Flow(deque((state, 0) for state in states))
        slots = asyncio.Semaphore(load.concurrency) if load.concurrency else None
        paced = math.isfinite(load.rate)
        gaps = intervals(load.rate, load.burstiness, load.seed) if paced else None
        phase_start = time.perf_counter()
        due = 0.0
        stopping = asyncio.ensure_future(self.stop.wait())
        try:
            while True:
                if self.stop.is_set():
                    self._stopped = self._stopped or "stopped before the end (interrupted)"
                    break
                if self._stopped or self._capped(sent) or self._out_of_time():
                    break
                if gaps is not None:
                    if sent:
                        due += next(gaps)
                    delay = phase_start + due - time.perf_counter()
                    if delay > 0:
                        await asyncio.wait({stopping}, timeout=delay)
                        if self.stop.is_set():
                            continue
                if slots is not None:
                    if slots.locked():
                        acquire = asyncio.ensure_future(slots.acquire())
                        await asyncio.wait({acquire, stopping}, return_when=asyncio.FIRST_COMPLETED)
                        if not acquire.done():
                            acquire.cancel()
                            continue
                        if self.stop.is_set():
                            slots.release()
                            continue
                    else:
                        await slots.acquire()
                while not flow.ready and flow.live > 0 and not self.stop.is_set():
                    flow.wake.clear()
                    waiter = asyncio.ensure_future(flow.wake.wait())
                    await asyncio.wait({waiter, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                if (
                    not flow.ready
                    and not self.stop.is_set()
                    and load.duration is not None
                    and repeat
                    and not self._out_of_time()
                ):  # repeat the phase to fill the time
                    for state in states:
                        state.history = []
                    flow.ready.extend((state, 0) for state in states)
                if not flow.ready or self.stop.is_set():
                    if slots is not None:
                        slots.release()
                    if self.stop.is_set():
                        continue
                    break
                state, turn = flow.ready.popleft()
                if turn == 0:
                    flow.live += 1
                now = time.perf_counter()
                scheduled = phase_start + due if gaps is not None else now
                record = self._new_record(sent, state, turn, scheduled - self._origin)
                sent += 1
                task = asyncio.create_task(self._one(record, state, turn, flow, slots))
                flow.running.add(task)
                task.add_done_callback(flow.running.discard)
        finally:
            if flow.running:
                if self.stop.is_set():
                    for task in list(flow.running):
                        task.cancel()
                await asyncio.gather(*list(flow.running), return_exceptions=True)
            stopping.cancel()
        return sent

    def _capped(self, sent: int) -> bool:
        return self.load.num_requests is not None and sent >= self.load.num_requests

    def _new_record(
        self, index: int, state: _SessionState, turn: int, scheduled: float
    ) -> RequestRecord:
        session = state.session
        step = session.turns[turn]
        group = session.group
        cache = None if group is None else ("warm" if group in self._warm_groups else "cold")
        system = sum(s.tokens for s in session.system)
        history = sum(
            sum(s.tokens for s in session.turns[t].prompt) + (session.turns[t].max_tokens or 0)
            for t in range(turn)
        )
        sequence = (*session.system, *step.prompt)
        new = first_seen(sequence, self._sent_keys)
        self._sent_keys.update(segment.key for segment in sequence)
        return RequestRecord(
            index=index,
            phase=self._phase,
            session=state.index,
            turn=turn,
            group=group,
            cache=cache,
            target_input=system + history + step.target_tokens,
            first_seen=new,
            max_tokens=step.max_tokens,
            scheduled=scheduled,
            warmup=self.warmup,
        )

    async def _one(
        self,
        record: RequestRecord,
        state: _SessionState,
        turn: int,
        flow: _Flow,
        slots: asyncio.Semaphore | None,
    ) -> None:
        step = state.session.turns[turn]
        collect: list[str] | None = [] if state.session.history else None
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            body = self.body(state, step)
            await self._exchange(record, body, collect)
        except asyncio.CancelledError:
            record.error = "cancelled"
            record.error_message = "the run was stopped while this request was in flight"
        finally:
            self._in_flight -= 1
            self._records.append(record)
            if record.ok:
                self._done += 1
                self._connect_failures = 0
                if record.ttft is not None:
                    self._recent_ttft.append(record.ttft)
                if record.group is not None:
                    self._warm_groups.add(record.group)
            else:
                self._failed += 1
                if record.error == "connect":
                    self._connect_failures += 1
                    if self._connect_failures >= CONNECT_FAILURES_TO_ABORT and not self._stopped:
                        self._stopped = (
                            f"the server stopped accepting connections ({record.error_message})"
                        )
            if slots is not None:
                slots.release()
            if record.ok and collect is not None and turn + 1 < len(state.session.turns):
                state.history.append((self.texts.join(step.prompt), "".join(collect)))
                flow.ready.append((state, turn + 1))
            else:
                flow.live -= 1
            flow.wake.set()

    async def _exchange(
        self, record: RequestRecord, body: bytes, collect: list[str] | None
    ) -> None:
        pool = self.pool
        head = pool.head("POST", self.target.path, "application/json", len(body))
        started = time.perf_counter()
        record.sent = started - self._origin
        try:
            async with asyncio.timeout(self.load.timeout):
                response = await pool.request(head, body)
                try:
                    record.status = response.status
                    if response.status != 200:
                        raw = await response.read()
                        record.error = f"http_{response.status}"
                        record.error_message = error_message(raw, response.status)
                        return
                    await read_stream(
                        record,
                        response,
                        started,
                        chat=self.chat,
                        collect=collect,
                        counter=self._chunks_seen,
                    )
                finally:
                    response.release()
        except TimeoutError:
            record.error = "timeout"
            record.error_message = f"no complete answer within {self.load.timeout:g} s"
        except HTTPFailure as failure:
            record.error = failure.kind
            record.error_message = str(failure)
        finally:
            if record.end is None:
                record.end = time.perf_counter() - started
            if record.chunks:
                record.ttft = record.chunks[0]

    # --- progress ---------------------------------------------------------------------------

    async def _tick(self) -> None:
        assert self.on_progress is not None
        while True:
            await asyncio.sleep(self.progress_interval)
            self.on_progress(self._snapshot(time.perf_counter() - self._origin))

    def _snapshot(self, elapsed: float) -> Progress:
        recent = sorted(self._recent_ttft)
        p50 = recent[len(recent) // 2] if recent else None
        now = time.perf_counter()
        window = self._window
        window.append((now, self._chunks_seen.count))
        while len(window) > 2 and now - window[0][0] > 3.0:
            window.popleft()
        (t0, c0), (t1, c1) = window[0], window[-1]
        rate = (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0
        total: int | None = self.load.num_requests or self.workload.requests
        if self.load.duration is not None and self.load.num_requests is None:
            total = None
        return Progress(
            label=self.label,
            phase=self._phase,
            done=self._done,
            failed=self._failed,
            in_flight=self._in_flight,
            total=total,
            elapsed=elapsed,
            ttft_p50=p50,
            tokens_per_s=rate,
        )


class _Flow:
    """The sessions of one phase: turns ready to send, and how many sessions are under way."""

    __slots__ = ("live", "ready", "running", "wake")

    def __init__(self, ready: deque[tuple[_SessionState, int]]) -> None:
        self.ready = ready
        self.live = 0
        self.wake = asyncio.Event()
        self.running: set[asyncio.Task[None]] = set()


__all__ = ["Load", "Progress", "RunOutcome", "Runner", "Target"]
