"""What the proxy knows about its upstream: shared, mutable, updated by ``infer serve`` as the
engine moves.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Literal

EngineStatus = Literal["starting", "ready", "restarting", "failed", "stopped"]


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
    restarts: dict[tuple[str, ...], int] = field(default_factory=dict)
    """Restarts so far by (process, kind): ``("vllm", "exited")``, ``("lmcache", "unhealthy")``."""
    last_failure: str = ""
    """Why the last restart happened, in words (no internal addresses); "" before any."""
    last_failure_at: float | None = None
    """When it happened (Unix time)."""
    retry_after: float | None = None
    """Seconds until the engine is expected back, while it is down; None: unknown."""

    replicas: dict[str, str] = field(default_factory=dict)
    """With several engine replicas: each one's state (``starting``, ``ready``, ``restarting``,
    ``failed``) by name (``vllm-0``, ...); empty with one engine."""
    workers: list[bool] = field(default_factory=list)
    """Other machines' engines behind the router (``replicas.workers``, in order): reachable?"""
    metrics_sources: list[tuple[str, str]] = field(default_factory=list)
    """More Prometheus texts for ``/metrics``: (``replica`` label, base URL), e.g. each replica
    behind the router (``("vllm-0", "http://127.0.0.1:41234")``), and the router's own (label
    ``""``: its metrics are appended unlabelled). Empty: the engine at ``url``."""
    metrics_aliases: dict[str, str] = field(default_factory=dict)
    """Internal URLs in those texts and the names shown instead (the router labels each
    replica by its loopback URL: ``http://127.0.0.1:41234`` -> ``vllm-0``)."""

    @property
    def restart_count(self) -> int:
        return sum(self.restarts.values())

    def count_restart(self, process: str, kind: str, why: str, at: float) -> None:
        key = (process, kind)
        self.restarts[key] = self.restarts.get(key, 0) + 1
        self.last_failure, self.last_failure_at = scrub(why), at

    @property
    def ready(self) -> bool:
        return self.status == "ready" and bool(self.url)

    def uptime(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.started_at)


_ADDRESS = re.compile(
    r"\b[a-z][a-z0-9+.-]*://[^\s'\"),]+"  # URLs: http://127.0.0.1:41234/v1, tcp://..., redis://...
    r"|\(?'?\d{1,3}(?:\.\d{1,3}){3}'?(?:(?::|,\s*)\d{1,5})?\)?"  # 127.0.0.1:5555, ('10.0.0.2', 80)
    r"|\[[0-9a-f:]+\](?::\d{1,5})?"  # [::1]:8000
    r"|\b(?:localhost|0\.0\.0\.0)(?::\d{1,5})?"
    r"|\bport \d{2,5}\b",
    re.IGNORECASE,
)


def scrub(text: str) -> str:
    """``text`` without network addresses, URLs or port numbers (for what ``/health`` shows)."""
    return _ADDRESS.sub("<internal>", text)
