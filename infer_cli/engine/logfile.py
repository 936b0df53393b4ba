"""An engine process's log file: infer's own marks in it, following it, its tail, its cause.

Each run appends to the log, after a line infer writes itself (``--- infer: starting ...``); the
tail and the cause read only this run's part and never infer's own lines.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

from infer_cli.engine import phases

MARK = "--- infer:"  # lines infer itself writes into a log; never a cause or a phase
_TAIL_BYTES = 64 * 1024
_CAUSE_CHARS = 300


def start_run(log: Path, name: str) -> int:
    """Append the line that opens a run of ``name``; where the run's own output begins."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as file:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        file.write(f"{MARK} starting {name} at {stamp} ---\n".encode())
        return file.tell()


def note(log: Path, text: str) -> None:
    """Append one line of infer's own (``--- infer: stopping vllm (SIGTERM) ---``)."""
    try:
        with open(log, "a", encoding="utf-8") as file:
            file.write(f"\n{MARK} {text} ---\n")
    except OSError:
        pass


class LogFollower:
    """The complete lines appended to a log since the last look (infer's own left out)."""

    def __init__(self, log: Path, start: int) -> None:
        self.log = log
        self._pos = start
        self._partial = ""

    def new_lines(self) -> list[str]:
        try:
            with open(self.log, "rb") as file:
                file.seek(self._pos)
                chunk = file.read()
        except OSError:
            return []
        if not chunk:
            return []
        self._pos += len(chunk)
        text = self._partial + chunk.decode("utf-8", errors="replace")
        *complete, self._partial = re.split(r"[\r\n]", text)
        return [line for line in complete if line.strip() and not line.startswith(MARK)]


def tail(log: Path, start: int, n: int = 20) -> list[str]:
    """The last ``n`` non-empty lines written after ``start`` (colours removed)."""
    try:
        with open(log, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(start, size - _TAIL_BYTES))
            text = file.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    lines = [
        phases.strip_colours(line).rstrip()
        for line in re.split(r"[\r\n]+", text)
        if line.strip() and not line.startswith(MARK)
    ]
    return lines[-n:] if n > 0 else []


# --- the cause of a failure -----------------------------------------------------------------------

_FRAME_STARTS = (
    'File "',
    "Traceback (most recent call last)",
    "During handling of the above exception",
    "The above exception was the direct cause",
    "raise ",
    "^",
    "~",
)
_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit|Interrupt)\b(?::|$)"
)
_ERRORISH = re.compile(r"\berror:|\bError\b|\bException\b|\bFATAL\b|\bfailed\b", re.IGNORECASE)
# Wrapper messages that only point elsewhere; a more specific line wins over them.
_GENERIC = (
    "see root cause above",
    "see stack trace for root cause",
    "engine core initialization failed",
    "enginecore failed to start",
    "initialization failed due to an exception in a background process",
    "application startup failed",
    "worker proc",
)
_ACCESS_LINE = re.compile(r'"(?:GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH) \S+ HTTP/[\d.]+" \d{3}')
"""An HTTP server's access-log line (vLLM's uvicorn logs every request): never a cause."""


def _is_generic(message: str) -> bool:
    lowered = message.lower()
    return any(word in lowered for word in _GENERIC)


def best_cause(lines: Iterable[str], *, errors_only: bool = False) -> str:
    """The most telling line of a log tail: the root exception, else an error, else the last
    (not with ``errors_only``: a process killed by a signal says nothing about why)."""
    exceptions: list[str] = []
    errors: list[str] = []
    others: list[str] = []
    after_frame = False
    for raw in lines:
        if raw.startswith(MARK):
            continue
        level, message = phases.parse(raw)
        if not message:
            continue
        if _ACCESS_LINE.search(message):
            continue
        if message.startswith(_FRAME_STARTS):
            after_frame = message.startswith('File "')
            continue
        is_exception = bool(_EXCEPTION_LINE.match(message))
        if after_frame and not is_exception:
            after_frame = False  # the source line under a frame
            continue
        after_frame = False
        if is_exception:
            exceptions.append(message)
        elif level in ("ERROR", "CRITICAL") or (level != "WARNING" and _ERRORISH.search(message)):
            errors.append(message)
        else:
            others.append(message)
    for group in (exceptions, errors):
        specific = [line for line in group if not _is_generic(line)]
        if specific:
            return _shorten(specific[-1])
    for group in (exceptions, errors) if errors_only else (exceptions, errors, others):
        if group:
            return _shorten(group[-1])
    return ""


def _shorten(message: str) -> str:
    return message if len(message) <= _CAUSE_CHARS else message[: _CAUSE_CHARS - 1] + "…"
