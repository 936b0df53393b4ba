"""Run ``infer`` (``python benchmarks/_proxy_probe.py serve ...``) with probes of where its event
loop loses time, written as JSON to ``$PROXY_PROBE_OUT`` when the process exits.

- GC: every collection's generation and pause (``gc.callbacks``).
- Loop lag: a thread asks the loop every ``$PROXY_PROBE_TICK_MS`` (5) ms to run a callback and
  records how long it waited in the queue: what any ready callback waits, e.g. a chunk to relay.
- Long callbacks: every callback the loop runs is timed (``asyncio.events.Handle._run``); those over
  ``$PROXY_PROBE_SLOW_MS`` (2) ms are counted by what they ran (a task's coroutine name).

The probes cost CPU themselves: use them to find stalls, not to report CPU per request.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import gc
import json
import os
import runpy
import sys
import threading
import time
from pathlib import Path
from typing import Any

OUT = os.environ.get("PROXY_PROBE_OUT")
TICK = float(os.environ.get("PROXY_PROBE_TICK_MS", "5")) / 1000
SLOW = float(os.environ.get("PROXY_PROBE_SLOW_MS", "2")) / 1000

gc_pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
full_collections: list[tuple[float, float, int]] = []
"""(seconds since start, pause, objects tracked after it) of every full collection."""
_gc_started = 0.0
_process_started = time.perf_counter()


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
        return
    pause = time.perf_counter() - _gc_started
    gc_pauses[info["generation"]].append(pause)
    if info["generation"] == 2:
        full_collections.append((_gc_started - _process_started, pause, len(gc.get_objects())))


if OUT:
    gc.callbacks.append(_on_gc)

lags: list[float] = []
slow: collections.Counter[str] = collections.Counter()
slow_time: collections.Counter[str] = collections.Counter()
longest: list[tuple[float, str]] = []
_run = asyncio.events.Handle._run


def _name(handle: asyncio.events.Handle) -> str:
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        return f"task {getattr(coro, '__qualname__', coro)}"
    return getattr(callback, "__qualname__", repr(callback))


def _timed_run(self: asyncio.events.Handle) -> None:
    started = time.perf_counter()
    _run(self)
    spent = time.perf_counter() - started
    if spent > SLOW:
        name = _name(self)
        slow[name] += 1
        slow_time[name] += spent
        longest.append((spent, name))
        if len(longest) > 200:
            longest.sort(reverse=True)
            del longest[50:]


if OUT:
    asyncio.events.Handle._run = _timed_run  # type: ignore[method-assign]

_new_loop = asyncio.new_event_loop


def _watch(loop: asyncio.AbstractEventLoop) -> None:
    def tick(sent: float) -> None:
        lags.append(time.perf_counter() - sent)

    while not loop.is_closed():
        time.sleep(TICK)
        try:
            loop.call_soon_threadsafe(tick, time.perf_counter())
        except RuntimeError:
            return


_Base: type[asyncio.AbstractEventLoopPolicy] = asyncio.DefaultEventLoopPolicy
if os.environ.get("PROXY_PROBE_UVLOOP"):  # the same proxy on uvloop's event loop
    import uvloop

    _Base = uvloop.EventLoopPolicy


class _Policy(_Base):  # type: ignore[valid-type,misc]
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = super().new_event_loop()
        if OUT:
            threading.Thread(target=_watch, args=(loop,), daemon=True).start()
        return loop


asyncio.set_event_loop_policy(_Policy())


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        "n": len(ordered),
        "median_ms": at(0.5),
        "p99_ms": at(0.99),
        "p999_ms": at(0.999),
        "max_ms": ordered[-1] * 1000,
        "total_s": sum(ordered),
    }


def _report() -> None:
    if not OUT:
        return
    longest.sort(reverse=True)
    document = {
        "gc": {str(generation): _quantiles(pauses) for generation, pauses in gc_pauses.items()},
        "full_collections": [
            {"at_s": round(at, 2), "pause_ms": round(pause * 1000, 2), "tracked": tracked}
            for at, pause, tracked in full_collections
        ],
        "frozen": gc.get_freeze_count(),
        "loop_lag": _quantiles(lags),
        "slow_callbacks": {
            name: {"count": count, "total_ms": slow_time[name] * 1000}
            for name, count in slow.most_common(30)
        },
        "longest_ms": [(round(spent * 1000, 2), name) for spent, name in longest[:30]],
    }
    Path(OUT).write_text(json.dumps(document, indent=2) + "\n")


atexit.register(_report)

if __name__ == "__main__":
    sys.argv = ["infer", *sys.argv[1:]]
    runpy.run_module("infer_cli", run_name="__main__", alter_sys=True)
