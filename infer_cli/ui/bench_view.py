"""What ``infer bench`` shows: live progress on stderr, then tables and charts on stdout."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.live import Live
from rich.table import Table
from rich.text import Text

from infer_cli.ui.console import escape, stderr, stdout

if TYPE_CHECKING:
    from infer_cli.bench.compare import CompareResult
    from infer_cli.bench.report import BenchResult, RunResult
    from infer_cli.bench.runner import Progress

PLAIN_PROGRESS_EVERY = 5.0
"""Seconds between progress lines when stderr is not a terminal."""

BAR = "█"
PARTS = " ▏▎▍▌▋▊▉"


class BenchView:
    """Progress for :func:`infer_cli.bench.service.run_bench` (its ``Events``)."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self._live: Live | None = None
        self._last_plain = 0.0

    def step(self, message: str) -> None:
        if not self.quiet:
            stderr.print(f"[dim]…[/] {escape(message)}")

    def note(self, message: str) -> None:
        self._stop_live()
        stderr.print(f"[yellow]note:[/] {escape(message)}")

    def level_started(self, label: str, requests: int | None) -> None:
        if self.quiet:
            return
        what = f"{requests} requests" if requests else "until the time is up"
        stderr.print(f"[bold]{escape(label)}[/]: {what}")
        self._last_plain = time.monotonic()
        if stderr.is_terminal:
            self._live = Live(Text(""), console=stderr, refresh_per_second=4, transient=True)
            self._live.start()

    def progress(self, progress: Progress) -> None:
        if self.quiet:
            return
        line = progress_line(progress)
        if self._live is not None:
            self._live.update(Text(line))
        elif time.monotonic() - self._last_plain >= PLAIN_PROGRESS_EVERY:
            self._last_plain = time.monotonic()
            stderr.print(escape(line))

    def level_done(self, run: RunResult) -> None:
        self._stop_live()
        if self.quiet:
            return
        summary = run.summary
        requests = summary.get("requests", {})
        mark = "[green]✓[/]" if not requests.get("failed") and not run.stopped else "[yellow]![/]"
        stderr.print(
            f"{mark} {escape(run.label)}: {requests.get('completed', 0)}/{requests.get('total', 0)}"
            f" requests in {summary.get('duration_s', 0):.1f}s, "
            f"{_num(summary.get('throughput', {}).get('requests_per_s'))} req/s"
        )

    def close(self) -> None:
        self._stop_live()

    def _stop_live(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def progress_line(p: Progress) -> str:
    total = f"/{p.total}" if p.total else ""
    failed = f" ({p.failed} failed)" if p.failed else ""
    ttft = f"{p.ttft_p50 * 1000:.0f} ms" if p.ttft_p50 is not None else "-"
    phase = f" {p.phase}" if p.phase and p.phase != "main" else ""
    return (
        f"  {p.label}{phase}: {p.done + p.failed}{total} done{failed}, {p.in_flight} in flight"
        f" · TTFT p50 {ttft} · {p.tokens_per_s:.0f} tok/s · {p.elapsed:.1f}s"
    )


# --- the final report ----------------------------------------------------------------------------


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _table(title: str | None = None) -> Table:
    return Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)


def print_result(result: BenchResult) -> None:
    server = result.server
    lengths = "exact (server /tokenize)" if result.lengths.get("exact") else "estimated"
    workload = result.workload
    params = ", ".join(f"{k}={v}" for k, v in workload.items() if k not in ("name",))
    stdout.print(
        f"[bold]infer bench {escape(str(workload.get('name', '')))}[/] against "
        f"{escape(str(server.get('url')))} — model {escape(str(server.get('model')))}"
        + (f", profile {escape(str(server['profile']))}" if server.get("profile") else "")
    )
    stdout.print(f"[dim]{escape(params)}; prompt lengths {lengths}[/]")
    load = result.load
    if load.get("nonce"):
        how = "from --seed" if load.get("seeded") else "fresh: shares no prompt with another run"
        stdout.print(f"[dim]nonce {escape(str(load['nonce']))} ({how})[/]")
    for run in result.runs:
        print_run(run, heading=len(result.runs) > 1)
    if len(result.runs) > 1:
        print_sweep(result.runs)
    if result.partial:
        stdout.print(f"[yellow]partial:[/] {escape(result.reason or 'the run stopped early')}")


def print_run(run: RunResult, *, heading: bool) -> None:
    s = run.summary
    if heading:
        stdout.print(f"\n[bold]{escape(run.label)}[/]")
    else:
        stdout.print()
    req = s.get("requests", {})
    thr = s.get("throughput", {})
    tok = s.get("tokens", {})
    top = _table()
    top.add_column("")
    top.add_column("", justify="right")
    rows = [
        ("requests ok / failed", f"{req.get('completed', 0)} / {req.get('failed', 0)}"),
        ("duration", f"{s.get('duration_s', 0):.2f} s"),
        ("request throughput", f"{_num(thr.get('requests_per_s'))} req/s"),
        ("output token throughput", f"{_num(thr.get('output_tokens_per_s'), 1)} tok/s"),
        ("total token throughput", f"{_num(thr.get('total_tokens_per_s'), 1)} tok/s"),
        ("input / output tokens", f"{tok.get('input', 0)} / {tok.get('output', 0)}"),
        ("max in flight", _num(s.get("max_in_flight"))),
    ]
    goodput = s.get("goodput")
    if goodput:
        slo = ", ".join(f"{k}≤{v:g}ms" for k, v in goodput.get("slo_ms", {}).items())
        rows.append(
            (
                f"goodput ({slo})",
                f"{_num(goodput.get('requests_per_s'))} req/s ({_pct(goodput.get('fraction'))})",
            )
        )
    for name, value in rows:
        top.add_row(name, value)
    stdout.print(top)

    latency = _table()
    latency.add_column("ms")
    for column in ("mean", "median", "p90", "p99", "std", "max"):
        latency.add_column(column, justify="right")
    for metric in ("ttft", "tpot", "itl", "e2e"):
        dist = s.get("latency_ms", {}).get(metric)
        if not dist:
            latency.add_row(metric.upper(), *["-"] * 6)
            continue
        latency.add_row(
            metric.upper(),
            *(_num(dist.get(c), 1) for c in ("mean", "median", "p90", "p99", "std", "max")),
        )
    stdout.print()
    stdout.print(latency)
    print_engine_timing(s.get("latency_ms") or {}, (run.engine or {}).get("latency_ms") or {})
    print_cache(s.get("cache") or {}, run.engine)
    phases = s.get("phases")
    if phases:
        table = _table("rounds")
        for column in ("round", "requests", "time s", "TTFT mean ms", "hit rate"):
            table.add_column(column, justify="left" if column == "round" else "right")
        for name, phase in phases.items():
            ttft = (phase.get("ttft_ms") or {}).get("mean")
            table.add_row(
                name,
                str(phase.get("requests")),
                _num(phase.get("duration_s")),
                _num(ttft, 1),
                _pct(phase.get("hit_rate")),
            )
        stdout.print()
        stdout.print(table)
    errors = s.get("errors") or {}
    if errors:
        stdout.print()
        stdout.print("[red]errors:[/] " + ", ".join(f"{escape(k)} {v}" for k, v in errors.items()))
        messages = [r.error_message for r in run.records if r.error and r.error_message]
        if messages:
            stdout.print(f"[dim]  first: {escape(messages[0])}[/]")
    lag = (s.get("generator") or {}).get("send_lag_ms")
    if lag and lag.get("p99", 0) > 10:
        stdout.print(
            f"[yellow]note:[/] requests went out up to {lag['p99']:.0f} ms (p99) late: "
            "the load generator or a concurrency limit held them back"
        )
    for warning in s.get("warnings") or ():
        stdout.print(f"[yellow]warning:[/] {escape(str(warning))}")
    ttfts = [r.ttft * 1000 for r in run.records if r.ok and r.ttft is not None and not r.warmup]
    if len(ttfts) >= 2:
        stdout.print()
        stdout.print("[bold]TTFT distribution[/] (ms)")
        stdout.print(histogram(ttfts))


ENGINE_TIMINGS = (("ttft", "TTFT"), ("tpot", "TPOT"), ("queue", "queued"), ("prefill", "prefill"))


def print_engine_timing(client: dict[str, Any], engine: dict[str, Any]) -> None:
    """The engine's own means over the run next to the measured ones (what HTTP and a proxy add)."""
    parts = []
    for key, label in ENGINE_TIMINGS:
        mean = (engine.get(key) or {}).get("mean")
        if mean is None:
            continue
        measured = (client.get(key) or {}).get("mean")
        versus = f" (measured {_num(measured, 1)})" if measured is not None else ""
        parts.append(f"{label} {_num(mean, 1)}{versus}")
    if parts:
        stdout.print(f"[dim]engine's own means, ms: {' · '.join(parts)}[/]")


def print_cache(cache: dict[str, Any], engine: dict[str, Any] | None) -> None:
    rows: list[tuple[str, str]] = []
    if cache.get("prompt_tokens"):
        rows.append(
            (
                "hit rate from usage",
                f"{_pct(cache.get('hit_rate'))}  "
                f"({cache.get('cached_tokens')} of {cache.get('prompt_tokens')} prompt tokens "
                "cached)",
            )
        )
    for kind in ("cold", "warm"):
        part = cache.get(kind)
        if part:
            ttft = part.get("ttft_ms") or {}
            rows.append(
                (
                    f"{kind} TTFT median / mean",
                    f"{_num(ttft.get('median'), 1)} / {_num(ttft.get('mean'), 1)} ms  "
                    f"(n={part.get('requests')}, hit rate {_pct(part.get('hit_rate'))})",
                )
            )
    seen = cache.get("first_seen")
    if seen:
        rows.append(
            (
                "first-seen tokens cached",
                f"{_pct(seen.get('hit_rate'))}  ({seen.get('cached_tokens')} of "
                f"{seen.get('tokens')} tokens)",
            )
        )
    if cache.get("warm_over_cold_ttft") is not None:
        rows.append(("warm / cold TTFT (median)", f"{cache['warm_over_cold_ttft']:.2f}x"))
    if engine:
        if engine.get("prefix_cache_queries"):
            rows.append(
                (
                    "engine prefix cache (vLLM)",
                    f"{_pct(engine.get('prefix_cache_hit_rate'))}  "
                    f"({engine.get('prefix_cache_hits')} / {engine.get('prefix_cache_queries')})",
                )
            )
        if engine.get("external_prefix_cache_queries"):
            rows.append(
                (
                    "engine external cache (LMCache)",
                    f"{_pct(engine.get('external_hit_rate'))}  "
                    f"({engine.get('external_prefix_cache_hits')} / "
                    f"{engine.get('external_prefix_cache_queries')})",
                )
            )
    if not rows:
        return
    table = _table()
    table.add_column("cache")
    table.add_column("", justify="left")
    for name, value in rows:
        table.add_row(name, value)
    stdout.print()
    stdout.print(table)


def print_sweep(runs: Sequence[RunResult]) -> None:
    table = _table("sweep")
    columns = ("level", "req/s", "out tok/s", "TTFT p50", "TTFT p99", "TPOT p50", "E2E p50", "fail")
    for column in columns:
        table.add_column(column, justify="left" if column == "level" else "right")
    for run in runs:
        s = run.summary
        lat = s.get("latency_ms", {})

        def get(metric: str, stat: str, lat: dict[str, Any] = lat) -> str:
            return _num((lat.get(metric) or {}).get(stat), 1)

        table.add_row(
            run.label,
            _num(s.get("throughput", {}).get("requests_per_s")),
            _num(s.get("throughput", {}).get("output_tokens_per_s"), 1),
            get("ttft", "median"),
            get("ttft", "p99"),
            get("tpot", "median"),
            get("e2e", "median"),
            str(s.get("requests", {}).get("failed", 0)),
        )
    stdout.print()
    stdout.print(table)
    points = []
    for run in runs:
        lat = run.summary.get("latency_ms", {})
        ttft = (lat.get("ttft") or {}).get("median")
        e2e = (lat.get("e2e") or {}).get("median")
        points.append((run.label, ttft, e2e))
    stdout.print()
    stdout.print(
        "[bold]latency against concurrency[/] (median ms: TTFT [cyan]█[/], E2E [magenta]█[/])"
    )
    stdout.print(sweep_chart(points))


# --- charts ------------------------------------------------------------------------------------


def _bar(value: float, scale: float, width: int) -> str:
    if scale <= 0 or value <= 0:
        return ""
    cells = value / scale * width
    whole = int(cells)
    part = int((cells - whole) * (len(PARTS) - 1))
    return BAR * whole + (PARTS[part] if part else "")


def histogram(values: Sequence[float], *, bins: int = 10, width: int = 40) -> Text:
    """A horizontal histogram of ``values``: one row per bin, its range and count."""
    low, high = min(values), max(values)
    if math.isclose(low, high):
        high = low + 1.0
    step = (high - low) / bins
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, int((value - low) / step))] += 1
    most = max(counts)
    text = Text()
    for index, count in enumerate(counts):
        start = low + index * step
        label = f"{start:9.1f} - {start + step:<9.1f}"
        text.append(label, style="dim")
        text.append(" " + _bar(count, most, width), style="cyan")
        text.append(f" {count}\n")
    return text


def sweep_chart(
    points: Sequence[tuple[str, float | None, float | None]], *, width: int = 40
) -> Text:
    scale = max((v for _, a, b in points for v in (a, b) if v is not None), default=0.0)
    text = Text()
    pad = max((len(label) for label, _, _ in points), default=0)
    for label, ttft, e2e in points:
        text.append(f"{label:<{pad}} ", style="bold")
        text.append(_bar(ttft or 0.0, scale, width), style="cyan")
        text.append(f" {_num(ttft, 1)}\n")
        text.append(" " * (pad + 1))
        text.append(_bar(e2e or 0.0, scale, width), style="magenta")
        text.append(f" {_num(e2e, 1)}\n")
    return text


def print_settings(a: str, b: str, result: CompareResult) -> None:
    """The two runs' workload, load and server side by side; ≠ marks a difference."""
    stdout.print(f"[bold]a[/] = {escape(a)}\n[bold]b[/] = {escape(b)}")
    table = _table()
    for column in ("setting", "a", "b", ""):
        table.add_column(column)
    for setting in result.settings:
        mark = ""
        if setting.differs:
            mark = "[yellow]≠ differs[/]" if setting.material else "[dim]≠[/]"
        table.add_row(
            escape(setting.name), escape(_value(setting.a)), escape(_value(setting.b)), mark
        )
    stdout.print()
    stdout.print(table)


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return (
            ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
            or "-"
        )
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def print_comparison(a: str, b: str, result: CompareResult) -> None:
    from infer_cli.bench.compare import CONFIDENCE, RESAMPLES

    print_settings(a, b, result)
    if result.levels_left_out:
        stdout.print("\n[yellow]levels left out:[/] " + escape(", ".join(result.levels_left_out)))
    for comparison in result.comparisons:
        table = _table(f"\n{comparison.label}" if len(result.comparisons) > 1 else None)
        table.add_column("figure")
        table.add_column("a", justify="right")
        table.add_column("b", justify="right")
        table.add_column("change", justify="right")
        table.add_column("vs spread")
        for change in comparison.changes:
            if change.change is None:
                delta = Text("-")
            else:
                style = "" if change.better is None else ("green" if change.better else "red")
                unit = " pp" if change.unit == "pp" else "%"
                delta = Text(f"{change.change:+.1f}{unit}", style=style)
            judged = {True: "beyond", False: "within", None: ""}[change.beyond_spread]
            rate = "rate" in change.metric
            table.add_row(
                change.metric,
                _pct(change.a) if rate else _num(change.a),
                _pct(change.b) if rate else _num(change.b),
                delta,
                Text(judged, style="dim" if change.beyond_spread is False else ""),
            )
        stdout.print()
        stdout.print(table)
        if comparison.left_out:
            stdout.print("[yellow]left out:[/] " + escape(", ".join(comparison.left_out)))
    stdout.print(
        "\n[dim]A change is coloured only when it is beyond the runs' own spread: when the\n"
        f"{CONFIDENCE:.0%} percentile-bootstrap interval of b - a ({RESAMPLES} resamples of each\n"
        "run's requests) leaves out 0. Throughput and engine figures, one number per run,\n"
        "are not judged.[/]"
    )
    for warning in result.warnings:
        stdout.print(f"[yellow]warning:[/] {escape(warning)}")
