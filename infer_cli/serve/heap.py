"""The garbage collector of the ``infer serve`` process, set once the proxy is up.

Measured (issue 14 section 1): once the app is built, the process holds some 70,000 tracked objects
(FastAPI, pydantic, httpx, the profile, the OpenAPI schemas), all of them there for good. A full
collection walks every one of them: 70-200 ms with the event loop stopped, several times a minute
under load, and every stream the proxy relays waits it out (the p99 time to first token). Those
objects are never garbage, so :func:`settle` moves them out of the collector's sight
(``gc.freeze``): a full collection then walks only what was made since, requests in flight and the
generation store, a few milliseconds.

The young generation's threshold goes up as well: a streamed chunk allocates a few short-lived
dicts, and at the default of 700 allocations the collector ran every few milliseconds, each time
promoting the objects of every stream in flight, which then made full collections come sooner.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
"""Allocations (less deallocations) of tracked objects between two young collections."""


def settle() -> None:
    """Collect once, then keep what is alive now (the process's start-up heap) out of every later
    collection, and collect the young generation less often. Call it once the server is up; calling
    it again freezes what was made meanwhile."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
