"""What ``infer serve`` shows: install steps, engine start-up phases, the ready banner."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.status import Status

from infer_cli.ui.console import escape, is_verbose, stderr, stdout

if TYPE_CHECKING:
    from infer_cli.engine.process import StartProgress
    from infer_cli.proxy.openrouter.generations import GenerationRecord
    from infer_cli.serve.plan import ServePlan


class ServeView:
    def __init__(self) -> None:
        self._status: Status | None = None
        self._starting: dict[str, str] = {}  # name -> its live progress text
        self._announced: set[str] = set()  # processes whose "ready" line was printed

    def step(self, name: str, state: str, elapsed: float) -> None:
        marks = {"done": "[green]✓[/]", "skipped": "[dim]·[/]", "failed": "[red]✗[/]"}
        if state in marks:
            stderr.print(f"{marks[state]} {escape(name)} [dim]{elapsed:.0f}s[/]")
        elif state == "started":
            stderr.print(f"[dim]…[/] {escape(name)}")

    def proxy_listening(self, url: str) -> None:
        stderr.print(f"[dim]proxy listening on {url} (503 until the engine is ready)[/]")

    def engine_progress(self, progress: StartProgress) -> None:
        """One live line for every process starting (replicas start side by side), and a
        ``✓ name ready`` line once for each as it becomes ready."""
        from infer_cli.engine import phases

        if progress.phase == phases.READY:
            self._starting.pop(progress.name, None)
            if progress.name not in self._announced:
                self._announced.add(progress.name)
                if self._status is not None:
                    self._status.console.print(f"[green]✓[/] {escape(progress.name)} ready")
                else:
                    stderr.print(f"[green]✓[/] {escape(progress.name)} ready")
        else:
            self._announced.discard(progress.name)  # starting (again): announce when ready
            self._starting[progress.name] = (
                f"{escape(progress.name)}: {escape(progress.phase)} "
                f"[dim]{progress.elapsed:.0f}s / {progress.timeout:.0f}s[/]"
            )
        if not stderr.is_terminal:
            return
        text = " · ".join(self._starting.values())
        if not text:
            self._stop_status()
        elif self._status is None:
            self._status = Status(text, console=stderr)
            self._status.start()
        else:
            self._status.update(text)

    def ready(
        self, url: str, model: str, seconds: float, run_dir: Path | None, simulated: bool = False
    ) -> None:
        self._stop_status()
        if run_dir is None:
            stderr.print("[green]✓[/] upstream ready")
        else:
            stderr.print(f"[green]✓[/] engine ready in {seconds:.0f}s — logs in {run_dir}")
        stderr.print(
            f"[bold]infer[/] serving [bold]{escape(model)}[/]"
            + (" [yellow](simulated engine: not a real model)[/]" if simulated else "")
            + f" at [bold]{url}[/]  (Ctrl-C to stop)"
        )
        stderr.print(
            f"[dim]  try: curl {url}/v1/chat/completions -H 'Content-Type: application/json' "
            f'-d \'{{"model": "{escape(model)}", "messages": [{{"role": "user", '
            f'"content": "Hello"}}]}}\'[/]'
        )
        hint = client_hint(url)
        if hint:
            stderr.print(f"[dim]  clients: {escape(hint)}[/]")

    def warning(self, message: str) -> None:
        self._stop_status()
        stderr.print(f"[yellow]![/] {escape(message)}")

    def generation(self, record: GenerationRecord) -> None:
        """One line per finished request at ``-v`` (as vLLM and ollama log them)."""
        if not is_verbose():
            return
        self._stop_status()
        stderr.print(f"[dim]{escape(request_line(record))}[/]")

    def stopping(self, reason: str) -> None:
        self._stop_status()
        stderr.print(f"stopping ({reason})…")

    def stopped(self) -> None:
        self._stop_status()
        stderr.print("[dim]stopped[/]")

    def dry_run(self, plan: ServePlan, needs: list[str], *, real_values: bool = False) -> None:
        from infer_cli.ui.dry_run import dry_run_text

        stdout.out(dry_run_text(plan, needs, real_values=real_values))

    def dry_run_front(self, profile: str, upstream: str, host: str, port: int) -> None:
        stdout.out(f"# infer serve --profile {profile} --upstream {upstream}: proxy only")
        stdout.out(f"# no engine is started; http://{host}:{port} forwards to {upstream}")

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def client_hint(url: str) -> str | None:
    """How a client finds a proxy serving at ``url`` when that is not the default address."""
    from urllib.parse import urlsplit

    from infer_cli.client import DEFAULT_URL, server_url

    parts = urlsplit(url)
    client = server_url(parts.hostname, parts.port)
    if client == DEFAULT_URL:
        return None
    return f"infer chat -u {client}  (or export INFER_URL={client} for every client command)"


def request_line(record: GenerationRecord) -> str:
    """``POST /v1/chat/completions 200 model 31+12 tok (8 cached) ttft 0.12s 0.84s stop``."""
    parts = [f"{record.route} {record.status}", record.model]
    parts.append(f"{record.prompt_tokens}+{record.completion_tokens} tok")
    if record.cached_tokens:
        parts.append(f"({record.cached_tokens} cached)")
    if record.ttft is not None:
        parts.append(f"ttft {record.ttft:.2f}s")
    parts.append(f"{record.latency:.2f}s")
    ending = "cancelled" if record.cancelled else (record.finish_reason or "")
    if record.error:
        ending = f"error: {record.error}"
    if ending:
        parts.append(ending)
    if record.key_id:
        parts.append(f"key {record.key_id}")
    return " ".join(parts)
