"""Start-up time and memory of ``infer serve --profile cpu`` against bare ``lmcache server`` +
``vllm serve`` with the same flags, on this machine.

Runs alternate (infer, bare, infer, bare, ...) so that drift on a shared machine hits both sides
alike, and reports medians and their ratio. "Ready" means: for infer, its public ``/health``
answers 200; for the bare engine, vLLM's ``/health`` answers 200 (LMCache having started first, as
infer does it). Memory is the peak, over the run, of the summed PSS (proportional set size, so
shared pages count once) of the whole process tree, sampled every 0.25 s.

    .venv/bin/python benchmarks/startup.py --runs 3 --output startup.json

Needs the CPU engine and the model (``infer engine install``, ``infer pull``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _bench_common import free_port, process_tree, shared_homes, stop_group, wait_ok

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


class PeakMemory:
    """Samples the PSS of the trees under some roots until stopped; keeps the peak."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = [pid for root in self.roots for pid in process_tree(root)]
            self.peak = max(self.peak, pss_bytes(pids))
            self._stop.wait(0.25)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def remove_segments(pids: list[int]) -> None:
    for pid in pids:
        for segment in Path("/dev/shm").glob(f"lmcache_kv_{pid}_*"):
            segment.unlink(missing_ok=True)


def run_infer(home: Path, timeout: float) -> dict[str, float]:
    port = free_port()
    env = {**os.environ, "INFER_HOME": str(home), "NO_COLOR": "1"}
    started = time.monotonic()
    with open(home / "serve.stderr", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "infer_cli", "serve", "--profile", "cpu", "--port", str(port),
             "--no-install"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    memory = PeakMemory([process.pid])
    try:
        wait_ok(f"http://127.0.0.1:{port}/health", process, started + timeout - time.monotonic())
        ready = time.monotonic() - started
        time.sleep(2)  # let memory settle after ready
    finally:
        peak = memory.stop()
        process.send_signal(signal.SIGINT)  # as a user stops it; infer cleans up itself
        process.wait(60)
    return {"ready_s": ready, "peak_pss_gib": peak / 2**30}


def bare_commands(home: Path) -> list[dict[str, object]]:
    """The exact commands infer would run, from its own launch planner."""
    os.environ["INFER_HOME"] = str(home)
    from infer_cli import serve
    from infer_cli.config import loader

    plan = serve.prepare(loader.load("cpu"), install=False)
    return [
        {"argv": c.argv, "env": c.env, "health": c.health_url, "timeout": c.startup_timeout}
        for c in plan.commands
    ]


def run_bare(home: Path, timeout: float) -> dict[str, float]:
    commands = bare_commands(home)
    started = time.monotonic()
    processes: list[subprocess.Popen[bytes]] = []
    memory = PeakMemory([])
    try:
        for command in commands:
            process = subprocess.Popen(
                command["argv"],  # type: ignore[arg-type]
                env={**os.environ, **command["env"]},  # type: ignore[dict-item]
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            processes.append(process)
            memory.roots.append(process.pid)
            wait_ok(str(command["health"]), process, started + timeout - time.monotonic())
        ready = time.monotonic() - started
        time.sleep(2)
    finally:
        peak = memory.stop()
        pids = [pid for process in processes for pid in process_tree(process.pid)]
        for process in reversed(processes):
            stop_group(process)
        remove_segments(pids)
    return {"ready_s": ready, "peak_pss_gib": peak / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each side")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--output", type=Path)
    options = parser.parse_args()

    results: dict[str, list[dict[str, float]]] = {"infer": [], "bare": []}
    os.environ.update(shared_homes())
    with tempfile.TemporaryDirectory(prefix="infer-startup-") as tmp:
        home = Path(tmp)
        for index in range(options.runs):
            for side, run in (("infer", run_infer), ("bare", run_bare)):
                result = run(home, options.timeout)
                results[side].append(result)
                print(
                    f"run {index + 1} {side:5}: ready {result['ready_s']:.1f} s, "
                    f"peak PSS {result['peak_pss_gib']:.2f} GiB",
                    file=sys.stderr,
                    flush=True,
                )
    summary = {
        side: {
            "ready_s_median": statistics.median(r["ready_s"] for r in runs),
            "peak_pss_gib_median": statistics.median(r["peak_pss_gib"] for r in runs),
        }
        for side, runs in results.items()
    }
    ratio = summary["infer"]["ready_s_median"] / summary["bare"]["ready_s_median"]
    memory_ratio = summary["infer"]["peak_pss_gib_median"] / summary["bare"]["peak_pss_gib_median"]
    print(f"{'':8}{'ready (median)':>16}{'peak PSS (median)':>20}")
    for side, values in summary.items():
        print(
            f"{side:8}{values['ready_s_median']:>14.1f} s{values['peak_pss_gib_median']:>16.2f} GiB"
        )
    print(f"infer / bare: start-up x{ratio:.3f}, memory x{memory_ratio:.3f}")
    if options.output:
        document = {"runs": results, "summary": summary, "ready_ratio": ratio,
                    "memory_ratio": memory_ratio}  # fmt: skip
        options.output.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
