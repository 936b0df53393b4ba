"""Small helpers shared by tests: ports, polling with a deadline, processes, shared memory."""

from __future__ import annotations

import asyncio
import inspect
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_until(
    check: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 5.0,
    interval: float = 0.01,
    what: str = "",
) -> None:
    """Poll ``check`` (sync or async) until it is true; fail the test after ``timeout`` seconds.

    Every polling loop in the tests goes through here, so none can spin forever: a condition that
    never comes true is an assertion that says what was awaited, not a hung suite.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {timeout:g} s: {what or _describe(check)}")
        await asyncio.sleep(interval)


def _describe(check: Callable[..., object]) -> str:
    try:
        return inspect.getsource(check).strip()
    except (OSError, TypeError):
        return repr(check)


def stop_process(
    process: subprocess.Popen[bytes] | subprocess.Popen[str],
    sig: int | None = signal.SIGTERM,
    timeout: float = 15,
) -> str:
    """Send ``sig`` (None: send nothing, it exits by itself), reap the process (SIGKILL after
    ``timeout`` seconds) and return what it wrote to a piped stderr, decoded ("" when not piped).

    ``communicate`` reads the pipes to the end and closes them: a test that only waits leaves them
    open (a ResourceWarning, an error under ``filterwarnings = error``), and one that waits before
    reading can block on a full pipe.
    """
    if sig is not None and process.poll() is None:
        process.send_signal(sig)
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    if isinstance(stderr, bytes):
        return stderr.decode(errors="replace")
    return stderr or ""


def pid_alive(pid: int) -> bool:
    """True while the pid exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False
    return state != "Z"


def descendants(root: int) -> list[int]:
    """The pid and every descendant, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def shm_segments_of(pids: Iterable[int], root: Path = Path("/dev/shm")) -> list[Path]:
    """LMCache MP mode's per-worker segments: /dev/shm/lmcache_kv_<pid>_*."""
    found: list[Path] = []
    for pid in pids:
        found.extend(root.glob(f"lmcache_kv_{pid}_*"))
    return found
