"""The simulated engine's core: admission, prefix cache, timing and token generation.

No web framework here. A route turns a request into a :class:`Job`, starts a :class:`Generation`
and iterates its :meth:`Generation.steps`; each step is the text of the tokens that became due since
the last one (usually one token; several when the event loop fell behind, as vLLM merges outputs
that pile up). Closing the iterator (a client that went away) aborts the generation and frees its
slot at once.

Timing follows settings: after a free slot is found (at most ``max_num_seqs`` generate at once),
``first_token_ms + stall_ms + prefill_ms_per_token * uncached prompt tokens`` pass before the first
token, then ``ms_per_output_token`` between tokens, on a fixed schedule so a busy loop catches up
instead of drifting. Every sleep is an asyncio sleep.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Literal

from infer_cli.config.sim import SimSettings
from infer_cli.sim import metrics as metrics_text
from infer_cli.sim.filler import filler_tokens
from infer_cli.sim.metrics import SimMetrics
from infer_cli.sim.prefix_cache import PrefixCache
from infer_cli.sim.tokenizer import token_id

FinishReason = Literal["stop", "length"]
State = Literal["new", "waiting", "running", "finished", "failed", "cancelled"]


@dataclass(frozen=True)
class Job:
    """What to generate: validated, tokenized, with ``max_tokens`` already fitted to the context."""

    prompt: Sequence[int]
    max_tokens: int
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Step:
    text: str
    """New text; may be empty while a possible stop string is held back."""
    tokens: int
    """Tokens generated in this step."""
    finish_reason: FinishReason | None = None
    """Set on the last step only."""


class EngineFailure(Exception):
    """The simulated engine broke in the middle of a generation (``fail_after_tokens``)."""

    status = 500


class EngineStopped(EngineFailure):
    """The engine is stopping: every generation ends at once."""

    status = 503

    def __init__(self) -> None:
        super().__init__("the simulated engine is shutting down")


class SimEngine:
    """One simulated model: its slots, its prefix cache and its counters."""

    def __init__(self, settings: SimSettings | None = None) -> None:
        self.settings = settings or SimSettings()
        self.cache = PrefixCache(self.settings.block_size, self.settings.cache_blocks)
        self.metrics = SimMetrics()
        self.created = int(time.time())
        self.running: set[Generation] = set()
        self.stopping = False
        self._free = self.settings.max_num_seqs
        self._queue: deque[asyncio.Future[None]] = deque()  # waiting for a slot, first come first
        self._errors = random.Random(self.settings.seed)

    def start(self, job: Job) -> Generation:
        return Generation(self, job)

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._queue if not waiter.done())

    def stop(self) -> None:
        """End every generation, waiting or running, with :class:`EngineStopped`; admit no more.

        Called before the server shuts down, so that answers in flight end cleanly (an error
        event and ``[DONE]``, or a 503) instead of being cut off.
        """
        self.stopping = True
        for waiter in self._queue:
            if not waiter.done():
                waiter.set_exception(EngineStopped())
        self._queue.clear()
        for generation in list(self.running):
            generation._interrupt(EngineStopped())

    async def _admit(self) -> None:
        if self.stopping:
            raise EngineStopped()
        if self._free > 0 and not self._queue:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release()  # handed a slot just as it was cancelled: pass it on
            elif waiter in self._queue:
                self._queue.remove(waiter)
            raise

    def _release(self) -> None:
        while self._queue:
            waiter = self._queue.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes straight to the next in line
                return
        self._free += 1

    def draw_error(self) -> bool:
        """Whether this request is one of the ``error_rate`` answered with 500 (and count it)."""
        rate = self.settings.error_rate
        if rate <= 0 or self._errors.random() >= rate:
            return False
        self.metrics.injected_errors += 1
        return True

    def kv_cache_usage(self) -> float:
        """Blocks held by running requests over the cache's capacity, as vLLM reports it."""
        capacity = self.settings.cache_blocks
        if capacity <= 0:
            return 0.0
        size = self.settings.block_size
        used = sum(-(-(g.prompt_tokens + g.completion_tokens) // size) for g in self.running)
        return min(1.0, used / capacity)

    def render_metrics(self) -> str:
        return metrics_text.render(
            self.metrics,
            model=self.settings.model,
            running=len(self.running),
            waiting=self.waiting,
            kv_usage=self.kv_cache_usage(),
        )


class Generation:
    """One request inside the engine, from its arrival to its last token."""

    def __init__(self, engine: SimEngine, job: Job) -> None:
        self._engine = engine
        self.job = job
        self.prompt_tokens = len(job.prompt)
        self.cached_tokens = 0
        self.completion_tokens = 0
        self.finish_reason: FinishReason | None = None
        self.stop_reason: str | None = None
        self.state: State = "new"
        self._wake: asyncio.Future[None] | None = None

    async def steps(self) -> AsyncGenerator[Step, None]:
        """Wait for a slot, prefill, then yield the generated text as it becomes due.

        Raises :class:`EngineFailure` after ``fail_after_tokens`` tokens. Iterate it inside
        ``contextlib.aclosing`` so that an abandoned generation frees its slot at once.
        """
        if self.state != "new":
            raise RuntimeError("a generation runs once")
        engine = self._engine
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        self.state = "waiting"
        try:
            await engine._admit()
        except BaseException:
            self._cancelled()
            raise
        self.state = "running"
        engine.running.add(self)
        try:
            async for step in self._generate(loop, arrived):
                yield step
        finally:
            engine.running.discard(self)
            engine._release()
            if self.state == "running":
                self._cancelled()

    async def _sleep(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        """``asyncio.sleep(delay)`` that :meth:`_interrupt` can end with an exception."""
        if self._engine.stopping:
            raise EngineStopped()
        wake: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(delay, _set_done, wake)
        self._wake = wake
        try:
            await wake
        finally:
            timer.cancel()
            self._wake = None

    def _interrupt(self, error: BaseException) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_exception(error)

    async def _generate(
        self, loop: asyncio.AbstractEventLoop, arrived: float
    ) -> AsyncGenerator[Step, None]:
        engine = self._engine
        settings = engine.settings
        counters = engine.metrics
        job = self.job
        prompt = job.prompt

        self.cached_tokens = cached = engine.cache.lookup(prompt)
        counters.prompt_tokens += len(prompt)
        counters.prefix_cache_queries += len(prompt)
        counters.prefix_cache_hits += cached
        delay = (
            settings.first_token_ms
            + settings.stall_ms
            + settings.prefill_ms_per_token * (len(prompt) - cached)
        ) / 1000
        await self._sleep(loop, delay)
        engine.cache.insert(prompt)
        first_at = loop.time()
        counters.ttft.observe(first_at - arrived)

        words = filler_tokens(hash((settings.seed, job.seed, tuple(prompt))))
        output: list[int] = []
        interval = settings.ms_per_output_token / 1000
        limit = job.max_tokens
        fail_at = settings.fail_after_tokens
        stops = job.stop
        holdback = max((len(stop) for stop in stops), default=1) - 1
        buffer = ""
        emitted = 0
        produced = 0
        while True:
            if fail_at is not None and produced >= fail_at:
                self.state = "failed"
                counters.failed += 1
                counters.request_success["error"] += 1
                raise EngineFailure(f"the simulated engine failed after {produced} tokens")
            due = 1
            if interval > 0:
                due = max(1, int((loop.time() - first_at) / interval) + 1 - produced)
            due = min(due, limit - produced)
            if fail_at is not None:
                due = min(due, fail_at - produced)
            pieces = [next(words) for _ in range(due)]
            output.extend(map(token_id, pieces))
            produced += due
            self.completion_tokens = produced
            counters.generation_tokens += due
            text = "".join(pieces)
            finish: FinishReason | None = None
            if stops:
                buffer += text
                found = _find_stop(buffer, stops, emitted)
                if found is not None:
                    at, self.stop_reason = found
                    text, finish = buffer[emitted:at], "stop"
                else:
                    safe = len(buffer) if produced >= limit else len(buffer) - holdback
                    safe = max(emitted, safe)
                    text, emitted = buffer[emitted:safe], safe
            if finish is None and produced >= limit:
                finish = "length"
            if finish is not None:
                self._finished(finish, loop.time() - arrived, output)
                yield Step(text, due, finish)
                return
            yield Step(text, due)
            if interval > 0:
                await self._sleep(loop, first_at + produced * interval - loop.time())
            elif engine.stopping:
                raise EngineStopped()
            else:
                await asyncio.sleep(0)

    def _finished(self, reason: FinishReason, elapsed: float, output: list[int]) -> None:
        engine = self._engine
        self.state = "finished"
        self.finish_reason = reason
        engine.metrics.request_success[reason] += 1
        engine.metrics.e2e.observe(elapsed)
        # Like vLLM, the blocks a request computed stay cached, its answer's included: the next
        # turn of a conversation hits through the previous answer.
        engine.cache.insert([*self.job.prompt, *output])

    def _cancelled(self) -> None:
        self.state = "cancelled"
        counters = self._engine.metrics
        counters.cancelled += 1
        counters.request_success["abort"] += 1


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _find_stop(text: str, stops: tuple[str, ...], start: int) -> tuple[int, str] | None:
    """The earliest stop string in ``text`` at or after ``start``: (position, stop)."""
    best: tuple[int, str] | None = None
    for stop in stops:
        at = text.find(stop, start)
        if at >= 0 and (best is None or at < best[0]):
            best = (at, stop)
    return best
