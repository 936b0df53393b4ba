"""A stand-in for ``vllm serve`` / ``lmcache server`` in supervisor tests, driven by its arguments.

Run with ``sys.executable tests/stubs/engine.py ...``. It prints vLLM-like log lines, serves ``GET
/health`` (200) on ``--port`` after ``--delay`` seconds, and can crash, hang, ignore SIGTERM, spawn
a grandchild and hold shared-memory-like files named after its pid in a folder standing in for
``/dev/shm``.
"""

from __future__ import annotations

import argparse
import http.server
import mmap
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

PREFIX = "(APIServer pid={pid}) INFO 05-01 12:00:00 [stub.py:1] "


def log(message: str) -> None:
    print(PREFIX.format(pid=os.getpid()) + message, flush=True)


def error(message: str) -> None:
    print(f"(APIServer pid={os.getpid()}) ERROR 05-01 12:00:00 [stub.py:2] {message}", flush=True)


SMOKE_FAILS: Path | None = None
SEEN_READY = threading.Event()
"""Set once ``/health`` has answered 200: someone (the supervisor) has seen the engine ready."""


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 200 if self.path in ("/health", "/healthcheck") else 404
        body = b'{"status": "healthy"}' if code == 200 else b"{}"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if code == 200:
            SEEN_READY.set()

    def do_POST(self) -> None:  # a one-token completion: 500 while SMOKE_FAILS names a file
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        broken = SMOKE_FAILS is not None and SMOKE_FAILS.exists()
        code = 500 if broken else 200
        body = b'{"error": "not connected"}' if broken else b'{"choices": [{"text": "ok"}]}'
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep the log quiet
        pass


def serve_health(port: int) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def hold_shm(root: Path, name: str) -> list[object]:
    """Create ROOT/NAME (1 page), keep it open and mapped; return what must stay referenced."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    handle = open(path, "w+b")  # noqa: SIM115 - held open on purpose
    handle.truncate(mmap.PAGESIZE)
    mapping = mmap.mmap(handle.fileno(), mmap.PAGESIZE)
    mapping[:5] = b"stub!"
    return [handle, mapping]


def write_pid(pidfile: str | None) -> None:
    if pidfile:
        tmp = Path(pidfile + ".tmp")
        tmp.write_text(str(os.getpid()))
        tmp.replace(pidfile)


def count_run(path: Path) -> int:
    """Add one to the number in ``path`` (a run counter shared by restarts); the new count."""
    count = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(count))
    return count


def worker(args: argparse.Namespace) -> None:
    """The grandchild: like vLLM's worker, it names its KV segment after its own pid."""
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    keep: list[object] = []
    if args.shm_root:
        keep += hold_shm(Path(args.shm_root), f"lmcache_kv_{os.getpid()}_0")
    write_pid(args.pidfile)
    while True:
        time.sleep(60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before /health answers")
    parser.add_argument("--crash-at-start", metavar="MESSAGE")
    parser.add_argument("--crash-after", type=float, help="exit 7 so long after the 1st /health")
    parser.add_argument("--hang", action="store_true", help="never answer /health")
    parser.add_argument("--smoke-fails", help="POST answers 500 while this file exists")
    parser.add_argument(
        "--crash-runs", help="FILE: with --crash-after, crash only while FILE counts runs below 1"
    )
    parser.add_argument(
        "--fail-start-run", help="FILE:N: crash at start on the Nth run counted in FILE"
    )
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--grandchild-pidfile", help="spawn a grandchild and write its pid here")
    parser.add_argument("--shm-root", help="hold shared-memory-like files in this folder")
    parser.add_argument("--pidfile")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global SMOKE_FAILS
    SMOKE_FAILS = Path(args.smoke_fails) if args.smoke_fails else None
    if args.worker:
        worker(args)
        return

    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    write_pid(args.pidfile)
    log("vLLM server version 0.0.0-stub, serving model stub")
    keep: list[object] = []
    if args.shm_root:
        keep += hold_shm(Path(args.shm_root), f"psm_stub{os.getpid()}")
    if args.grandchild_pidfile:
        # The worker is a grandchild of the supervisor, as in vLLM.
        worker_argv = [sys.executable, __file__, "--worker", "--pidfile", args.grandchild_pidfile]
        if args.shm_root:
            worker_argv += ["--shm-root", args.shm_root]
        if args.ignore_sigterm:
            worker_argv.append("--ignore-sigterm")
        keep.append(subprocess.Popen(worker_argv))

    if args.fail_start_run:
        path, _, nth = args.fail_start_run.rpartition(":")
        if count_run(Path(path)) == int(nth):
            args.crash_at_start = "stub engine refused to start again"
    if args.crash_at_start is not None:
        log("Starting to load model stub...")
        print("Traceback (most recent call last):", flush=True)
        print('  File "/stub/engine.py", line 1, in <module>', flush=True)
        print("    raise_it()", flush=True)
        print(f"ValueError: {args.crash_at_start}", flush=True)
        error("EngineCore failed to start.")
        print("RuntimeError: Engine core initialization failed. See root cause above.", flush=True)
        sys.exit(3)

    steps = [
        "Starting to load model stub...",
        "Loading weights took 0.01 seconds",
        "CPU KV cache size: 1,000 tokens, Maximum concurrency for 100 tokens per request: 10.00x",
        f"Starting vLLM server on http://127.0.0.1:{args.port}",
    ]
    if args.hang:
        log(steps[0])
        while True:
            time.sleep(60)
    for index, step in enumerate(steps):
        log(step)
        time.sleep(args.delay / len(steps) if index < len(steps) else 0)
    serve_health(args.port)
    print(f"(APIServer pid={os.getpid()}) INFO:     Application startup complete.", flush=True)

    crash = args.crash_after is not None
    if crash and args.crash_runs:
        crash = count_run(Path(args.crash_runs)) <= 1  # only the first run crashes
    if crash:
        # Counted from the first health answer, not from serving: on a loaded machine the
        # supervisor's probe may come later than --crash-after, and a crash before anyone saw the
        # engine ready is a start failure, which is not what a crash-after test is about.
        SEEN_READY.wait()
        time.sleep(args.crash_after)
        error("Engine core died unexpectedly")
        print("RuntimeError: stub engine died after ready", flush=True)
        os._exit(7)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()
