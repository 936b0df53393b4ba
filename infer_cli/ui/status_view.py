"""What ``infer status`` shows, once or live (``--watch``), from the client the command opened."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from infer_cli.client.status import CacheRate, Status, read_status
from infer_cli.client.status import watch as watch_statuses
from infer_cli.ui import console

if TYPE_CHECKING:
    from infer_cli.client.api import Client


async def show(client: Client, *, json_output: bool) -> bool:
    """Print the status once; returns whether the endpoint is up."""
    status = await read_status(client)
    if json_output:
        sys.stdout.write(json.dumps(status.to_json(), indent=2) + "\n")
    elif status.health_code is None:
        console.stderr.print(f"[bold red]error:[/] {console.escape(status.error or 'down')}")
    else:
        console.stdout.print(render(status))
    return status.up


async def watch(client: Client, interval: float, *, json_output: bool) -> None:
    """Refresh until Ctrl-C; a down endpoint is shown as down, and watched until it is back."""
    from rich.live import Live

    statuses = watch_statuses(client, interval)
    if json_output or not console.stdout.is_terminal:
        async for status in statuses:
            line = json.dumps(status.to_json()) if json_output else _plain(status)
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        return
    with Live(console=console.stdout, auto_refresh=False, transient=False) as live:
        async for status in statuses:
            live.update(render(status, watching=interval), refresh=True)


def render(status: Status, *, watching: float | None = None) -> RenderableType:
    head = Text.assemble(
        ("● ", "green" if status.up else ("yellow" if status.health_code else "red")),
        (_state(status), "bold"),
        "  ",
        status.url,
    )
    if status.latency is not None:
        head.append(f"  ({status.latency * 1000:.0f} ms)", style="dim")
    if watching is not None:
        head.append(f"  every {watching:g} s · Ctrl-C to stop", style="dim")
    if status.health_code is None:
        return Group(head, Text(f"  {status.error}", style="red"))
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for key, value in rows(status):
        table.add_row("  " + key, Text(value))
    return Group(head, table)


def rows(status: Status) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = [("model", status.model or "unknown")]
    engine = [status.engine or ("ready" if status.up else "unknown")]
    if status.uptime is not None:
        engine.append(f"up {duration(status.uptime)}")
    if status.version:
        engine.append(f"infer {status.version}")
    if status.detail:
        engine.append(status.detail)
    out.append(("engine", " · ".join(engine)))
    if status.workers_total:
        down = status.workers_unreachable
        text = f"{status.workers_total - len(down)} of {status.workers_total} reachable"
        out.append(("workers", text + (f" · unreachable: {', '.join(down)}" if down else "")))
    if status.restarts:
        restarts = [_counted(float(status.restarts), "restart")]
        if status.last_restart_at is not None:
            ago = duration(max(0.0, status.checked_at - status.last_restart_at))
            restarts.append(f"last {ago} ago")
        if status.last_restart:
            restarts.append(status.last_restart)
        out.append(("restarts", " · ".join(restarts)))
    if status.metrics_error:
        out.append(("metrics", f"unavailable: {status.metrics_error}"))
        return out
    if not status.engine_metrics:
        out.append(
            ("engine metrics", "none (the engine is not ready or exposes no vllm:* metrics)")
        )
    else:
        out.append(
            (
                "requests",
                f"{_count(status.running)} running · {_count(status.waiting)} waiting",
            )
        )
        out.append(("KV cache", f"{_percent(status.kv_cache_usage)} used"))
        out.append(("prefix cache", _cache(status.prefix_cache, status.recent_prefix_rate)))
        lmcache = (
            "off (no KV connector: the engine's own misses were not looked up)"
            if status.external_cache_off
            else _cache(status.external_cache, status.recent_external_rate)
        )
        out.append(("LMCache", lmcache))
        for replica in status.replicas:
            parts = [replica.state or "?"]
            parts.append(f"{_count(replica.running)} running · {_count(replica.waiting)} waiting")
            parts.append(f"KV {_percent(replica.kv_cache_usage)}")
            for word, rate in (
                ("prefix", replica.prefix_cache),
                ("LMCache", replica.external_cache),
            ):
                if rate is not None and rate.rate is not None:
                    parts.append(f"{word} {rate.rate:.0%}")
            out.append((replica.name, " · ".join(parts)))
        if status.router_requests is not None:
            out.append(("router", f"{_counted(status.router_requests, 'request')} routed"))
    if status.requests is not None:
        served = [_counted(status.requests, "request"), _counted(status.errors, "error")]
        if status.mid_stream_errors:
            served.append(f"{_count(status.mid_stream_errors)} failed mid-stream")
        if status.rate_limited is not None:
            served.append(f"{_count(status.rate_limited)} rate-limited")
        if status.cancelled is not None:
            served.append(f"{_count(status.cancelled)} cancelled")
        out.append(("served", " · ".join(served)))
    if status.prompt_tokens is not None:
        tokens = f"{_count(status.prompt_tokens)} prompt ({_count(status.cached_tokens)} cached)"
        tokens += f" · {_count(status.completion_tokens)} completion"
        if status.cost is not None:
            tokens += f" · ${status.cost:.6f}".rstrip("0").rstrip(".")
        out.append(("tokens", tokens))
    if status.request_rate is not None:
        out.append(
            (
                "rates",
                f"{status.request_rate:.1f} req/s · "
                f"{status.prompt_token_rate or 0:.0f} prompt tok/s · "
                f"{status.completion_token_rate or 0:.0f} completion tok/s",
            )
        )
    if status.mean_ttft is not None:
        out.append(("mean TTFT", f"{status.mean_ttft * 1000:.0f} ms (at the proxy)"))
    return out


def duration(seconds: float) -> str:
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


def _state(status: Status) -> str:
    if status.up:
        return "up"
    if status.health_code is None:
        return "down"
    return f"not ready ({status.health_code})"


def _plain(status: Status) -> str:
    if status.health_code is None:
        return f"{_state(status)} {status.url}: {status.error}"
    return f"{_state(status)} {status.url} " + " | ".join(f"{k}: {v}" for k, v in rows(status))


def _cache(rate: CacheRate | None, recent: float | None) -> str:
    if rate is None:
        return "not reported"
    if rate.rate is None:
        return "no lookups yet"
    text = f"{rate.rate:.1%} hit rate so far ({_count(rate.hits)} of {_count(rate.queries)} tokens)"
    if recent is not None:
        text += f" · {recent:.0%} since last refresh"
    return text


def _count(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:,.0f}"


def _counted(value: float | None, word: str) -> str:
    return f"{_count(value)} {word}{'' if value == 1 else 's'}"


def _percent(value: float | None) -> str:
    return "?" if value is None else f"{value:.1%}"
