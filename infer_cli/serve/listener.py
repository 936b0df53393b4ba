"""The supervisor's news, for ``infer serve`` and ``infer serve --worker`` alike.

One :class:`EngineListener` turns what the :class:`~infer_cli.engine.supervisor.Supervisor` says
(a process failed, restarts, is back) into the engine's state (``UpstreamState``: what ``/health``
and the proxy's 503s say; a worker keeps one too, read by nobody but this listener) and into the
console's lines.

With several replicas, a failure that leaves another replica serving is the router's to route
around: the state stays ``ready``, the replica is marked ``restarting`` and the line says the others
keep serving. A failure that takes every replica (the shared LMCache server, the router, the last
ready replica) takes the endpoint: ``restarting``, with a ``Retry-After`` guess from the last start.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from infer_cli.engine.supervisor import Failure
    from infer_cli.errors import EngineStartError
    from infer_cli.proxy.state import UpstreamState


class Console(Protocol):
    """Where the listener's lines go (``ServeReporter`` is one)."""

    def warning(self, message: str) -> None: ...


class EngineListener:
    """Keeps ``state`` and the console up to date as the supervisor restarts processes.

    ``restart_order`` names the processes a restart of one takes down (the stack's own rule);
    ``replicas`` are the engine copies (empty with one engine); ``on_ready`` is called with the
    seconds a restart took when the whole endpoint is back (default: a console line).
    """

    def __init__(
        self,
        state: UpstreamState,
        console: Console,
        restart_order: Callable[[str], list[str]],
        replicas: Sequence[str] = (),
        *,
        on_ready: Callable[[float], None] | None = None,
    ) -> None:
        self.state = state
        self.console = console
        self.restart_order = restart_order
        self.replicas = list(replicas)
        self.on_ready = on_ready
        self.start_seconds = 0.0
        """How long the engine took to be ready, last time (the ``Retry-After`` guess)."""

    # -- the first start and the end --------------------------------------------------------------

    def started(
        self,
        seconds: float,
        failures: Mapping[str, EngineStartError] | None = None,
        min_ready: int | None = None,
    ) -> None:
        """The stack is up after ``seconds``; ``failures``: replicas that did not start (the
        supervisor retries them)."""
        failures = failures or {}
        state = self.state
        state.replicas = {
            name: "restarting" if name in failures else "ready" for name in self.replicas
        }
        for name, failure in failures.items():
            self.console.warning(
                f"{failure.message}; serving with the other replicas "
                f"(replicas.min_ready = {min_ready}), retrying {name}"
            )
        state.status, state.detail = "ready", ""
        self.start_seconds = seconds

    def gave_up(self, message: str) -> None:
        """The supervisor stopped restarting: the engine has failed for good."""
        self.state.status, self.state.detail = "failed", in_words(message)
        self.state.retry_after = None

    # -- the supervisor's news --------------------------------------------------------------------

    def failed(self, failure: Failure, restart_in: float, attempt: int, allowed: int) -> None:
        state = self.state
        state.count_restart(failure.name, failure.kind, failure.text, failure.at)
        hit = self._replicas_hit(self.restart_order(failure.name))
        if hit is not None:
            state.replicas.update(dict.fromkeys(hit, "restarting"))
        else:
            state.status = "restarting"
            state.detail = in_words(f"{failure.summary}; restarting")
            state.retry_after = restart_in + self.start_seconds
        when = f"in {restart_in:g} s" if restart_in > 0 else "now"
        self.console.warning(
            f"{failure.text}; restarting {when} (restart {attempt} of {allowed} allowed "
            f"within the window)" + ("; the other replicas keep serving" if hit else "")
        )

    def restarting(self, names: list[str]) -> None:
        state = self.state
        hit = self._replicas_hit(names)
        if state.status == "ready" and (hit is None or state.replicas.get(hit[0]) == "ready"):
            # a requested restart (SIGHUP): not counted as a failure
            state.count_restart(names[0], "requested", "restart requested (SIGHUP)", time.time())
        if hit is not None:
            state.replicas.update(dict.fromkeys(hit, "restarting"))
            return
        state.status = "restarting"
        state.detail = f"restarting {', '.join(names)}"
        state.retry_after = self.start_seconds or None

    def restarted(self, names: list[str], seconds: float) -> None:
        state = self.state
        for name in names:
            if name in state.replicas:
                state.replicas[name] = "ready"
        if state.status == "ready":
            self.console.warning(f"{', '.join(names)} ready again after {seconds:.0f}s")
            return
        self.start_seconds = seconds
        state.status, state.detail, state.retry_after = "ready", "", None
        if self.on_ready is not None:
            self.on_ready(seconds)
        else:
            self.console.warning(f"{', '.join(names)} ready again after {seconds:.0f}s")

    def _replicas_hit(self, names: list[str]) -> list[str] | None:
        """The replicas a restart of ``names`` takes down, or None when it takes the endpoint."""
        if not self.replicas:
            return None
        hit: list[str] = []
        for name in names:
            prefix, _, number = name.partition("-")
            if name in self.replicas:
                hit.append(name)
            elif prefix == "lmcache" and number.isdigit() and f"vllm-{number}" in self.replicas:
                hit.append(f"vllm-{number}")  # its own cache server: that replica alone
            else:
                return None  # the shared cache server or the router: everyone
        others = [name for name, value in self.state.replicas.items() if value == "ready"]
        return hit if set(others) - set(hit) else None


def in_words(message: str) -> str:
    """``message`` as ``/health`` may show it: no internal address or port."""
    from infer_cli.proxy.state import scrub

    return scrub(message)
