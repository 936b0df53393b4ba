"""What the proxy knows about its upstream: shared, mutable, updated by ``infer serve`` as the
engine moves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

EngineStatus = Literal["starting", "ready", "failed", "stopped"]


@dataclass
class UpstreamState:
    """The engine behind the proxy, as last reported by the serve composer.

    The proxy only reads it; the composer writes it (``url`` once vLLM listens, ``status`` as the
    engine starts, becomes ready, crashes or stops). Reads and writes happen on one event loop, so
    no lock is needed.
    """

    url: str | None
    """vLLM's base URL without ``/v1``, e.g. ``http://127.0.0.1:41234``; None while unknown."""
    api_key: str | None
    """The internal key sent upstream as ``Authorization: Bearer``; clients never see it."""
    model: str
    """The served model name."""
    status: EngineStatus = "starting"
    detail: str = ""
    """The current start-up phase, or why the engine failed."""
    started_at: float = field(default_factory=time.time)

    @property
    def ready(self) -> bool:
        return self.status == "ready" and bool(self.url)

    def uptime(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.started_at)
