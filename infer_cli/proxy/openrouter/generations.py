"""One record per finished generation, and the bounded store behind ``/api/v1/generation``.

The relay builds a :class:`GenerationRecord` when a completion ends (normally, with an error, or
because the client went away) and hands it to every observer on the proxy context; the
:class:`GenerationStore` is one observer, metrics and token-rate limiters are others.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from decimal import Decimal


@dataclass(frozen=True)
class GenerationRecord:
    id: str
    """The completion id the client received (``chatcmpl-...`` / ``cmpl-...``)."""
    model: str
    route: str
    """The request path, e.g. ``/api/v1/chat/completions``."""
    key_id: str | None
    """Set by the auth middleware (``request.state.key_id``), else None."""
    streamed: bool
    cancelled: bool
    """The client disconnected before the generation ended."""
    status: int
    """HTTP status the client got (200 for a stream that later failed mid-way)."""
    finish_reason: str | None
    native_finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost: Decimal
    created: float
    """Unix time the request arrived."""
    ttft: float | None
    """Seconds from arrival to the first token (first content chunk, or the whole body)."""
    latency: float
    """Seconds from arrival to the end."""
    error: str | None
    itl: tuple[float, ...] = ()
    """Seconds between consecutive content chunks of a stream (inter-token latency); empty
    when not streamed. Observers get it; the store drops it."""
    charged: bool = False
    """The tokens were counted against the key's tokens per minute already (reserved at
    admission, settled at the end): the rate limiter's observer skips the record."""


class GenerationStore:
    """The most recent generations by id, least recently written evicted first."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: OrderedDict[str, GenerationRecord] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, record: GenerationRecord) -> None:
        """Observer entry point: store the record."""
        self.add(record)

    def add(self, record: GenerationRecord) -> None:
        if record.itl:
            record = replace(record, itl=())  # thousands of floats each: not worth keeping
        with self._lock:
            self._items[record.id] = record
            self._items.move_to_end(record.id)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, generation_id: str) -> GenerationRecord | None:
        with self._lock:
            return self._items.get(generation_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
