"""Step progress on stderr for long jobs (engine install, model preparation).

On a terminal: a live line with a spinner, the running step and its elapsed seconds; each finished
step then stays as one line (✓ done, · already done, ✗ failed) with its time. Elsewhere (CI logs,
pipes): one line when a step starts and one when it ends, no animation.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from infer_cli.ui.console import escape, stderr


class StepLike(Protocol):
    """What a service reports (``infer_cli.engine.build.Step`` fits)."""

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def elapsed(self) -> float: ...


_MARKS = {"done": "[green]✓[/]", "skipped": "[dim]·[/]", "failed": "[red]✗[/]"}


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


class StepProgress:
    """Context manager; pass :meth:`update` as the ``on_step`` callback."""

    def __init__(self, console: Console | None = None, *, title: str | None = None):
        self.console = console or stderr
        self.title = title
        self._running: dict[str, float] = {}  # step name -> monotonic start
        self._live: Live | None = None
        self.started = time.monotonic()
        self.failed = False

    def __enter__(self) -> StepProgress:
        self.started = time.monotonic()
        if self.title:
            self.console.print(f"[bold]{escape(self.title)}[/]")
        if self.console.is_terminal:
            self._live = Live(
                console=self.console,
                get_renderable=self._render,
                refresh_per_second=4,
                transient=True,
            )
            self._live.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def update(self, step: StepLike) -> None:
        name, state = step.name, step.state
        if state == "started":
            self._running[name] = time.monotonic()
            if self._live is None:
                self.console.print(f"[dim]…[/] {escape(name)}")
            return
        self._running.pop(name, None)
        if state == "failed":
            self.failed = True
        mark = _MARKS.get(state, "[dim]?[/]")
        when = "already done" if state == "skipped" else format_seconds(step.elapsed)
        self.console.print(f"{mark} {escape(name)} [dim]{when}[/]")

    def _render(self) -> RenderableType:
        now = time.monotonic()
        lines: list[RenderableType] = []
        for name, since in self._running.items():
            label = Text.assemble(name, "  ", (format_seconds(now - since), "dim"))
            lines.append(Spinner("dots", text=label, style="cyan"))
        return Group(*lines)
