"""Scale-out figures (issue 12): cache hits across replicas, TTFT cold and warm, router policy,
start-up time, for one replica against two, with and without a shared LMCache server.

Each configuration is its own ``infer serve`` (a temporary ``INFER_HOME``, the shared engine and
models, ``--no-install``, a free port), measured the same way:

    cpu              one replica (``--profile cpu``)
    2x-shared        ``--profile cpu-2x``: two replicas, one LMCache server, cache_aware routing
    2x-unshared      ``cpu-2x --set lmcache.shared=false``: one LMCache server per replica
    2x-shared-rr     ``cpu-2x --set replicas.policy=round_robin``
    2x-unshared-rr   both settings: round robin without sharing, what sharing buys

1. Wait until no ``vllm serve`` of anyone else runs (``pgrep -f "vllm serve"`` every 10 s, up to
   ``--quiet-wait`` seconds); the report says when a measurement ran with others anyway.
2. Start ``infer serve``; start-up is the seconds from launch to the proxy's ``/health`` 200 (with
   replicas: every one ready, which ``min_ready``'s default asks before the proxy opens).
3. ``infer bench shared-prefix`` (``--prefixes`` x ``--suffixes`` prompts, round-robin over the
   prefixes, so request k of a prefix comes ``--prefixes`` requests after request k-1; an odd
   count of prefixes makes a round-robin router alternate each prefix's requests between the two
   replicas). The bench reports the hit rate from usage (cached / prompt tokens), TTFT of cold
   requests (the first of a prefix) and warm ones (those after), and the engine's counters.
4. ``/metrics`` before and after, per replica (``replica="vllm-N"``): requests served, vLLM's own
   prefix-cache hits and the KV connector's (LMCache's) external hits, in tokens.
5. SIGINT, as a user stops it; then every process seen under ``infer serve`` during the run (its
   tree is sampled twice a second) must be gone, with no ``/dev/shm/lmcache_kv_<pid>_*`` left.

The table shows ratios: warm / cold median TTFT within each configuration, each configuration's
cold TTFT and start-up against the one replica's, measured in the same run of this script
(medians over ``--rounds``, leaving out rounds measured while someone else's ``vllm serve`` ran
when there are others). The JSON keeps the times, the per-replica counters, the bench summaries
and every request's cache group, TTFT and cached tokens.

    .venv/bin/python benchmarks/scale_out.py --rounds 2 --output scale_out.json
    .venv/bin/python benchmarks/scale_out.py --table scale_out.json   # the table again

Needs the CPU engine with vllm-router and the model (``infer engine install``, ``infer pull``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from _bench_common import PYTHON, ROOT, free_port, infer_bench, process_tree, shared_homes, wait_ok

from infer_cli.client.metrics import Samples


@dataclass(frozen=True)
class Config:
    name: str
    profile: str
    settings: tuple[str, ...]
    what: str


CONFIGS = {
    c.name: c
    for c in (
        Config("cpu", "cpu", (), "one replica"),
        Config("2x-shared", "cpu-2x", (), "two replicas, shared LMCache, cache_aware"),
        Config("2x-unshared", "cpu-2x", ("lmcache.shared=false",),
               "two, LMCache each, cache_aware"),
        Config("2x-shared-rr", "cpu-2x", ("replicas.policy=round_robin",),
               "two, shared LMCache, round_robin"),
        Config("2x-unshared-rr", "cpu-2x", ("lmcache.shared=false", "replicas.policy=round_robin"),
               "two, LMCache each, round_robin"),
    )
}  # fmt: skip
BASELINE = "cpu"

COUNTERS = {
    "requests": "vllm:request_success_total",
    "prompt_tokens": "vllm:prompt_tokens_total",
    "prefix_hits": "vllm:prefix_cache_hits_total",
    "prefix_queries": "vllm:prefix_cache_queries_total",
    "external_hits": "vllm:external_prefix_cache_hits_total",
    "external_queries": "vllm:external_prefix_cache_queries_total",
}
"""Per-replica counters read from the proxy's ``/metrics`` (in tokens, but for requests)."""

LEGEND = (
    "hit: cached/prompt tokens from usage; warm/cold: median TTFT of warm over cold requests; "
    "cold vs cpu, start vs cpu: against one replica; vLLM hits / LMCache: prefix-cache and "
    "external (connector) hit tokens; left: processes or /dev/shm segments after Ctrl-C; "
    "others: rounds measured while someone else's vllm serve ran; used: the rounds the medians "
    "are of (those without others, when there are any)"
)

STACK = ("vllm serve", "lmcache server", "vllm-router")


# ---------------------------------------------------------------- processes on the machine


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_vllm_serve(argv: list[str]) -> bool:
    """``vllm serve ...`` itself (not a shell or a grep whose text mentions it)."""
    return any(
        Path(arg).name == "vllm" and following == "serve"
        for arg, following in itertools.pairwise(argv)
    )


def others_serving(mine: set[int]) -> list[int]:
    """PIDs of ``vllm serve`` processes this script did not start."""
    done = subprocess.run(["pgrep", "-f", "vllm serve"], capture_output=True, text=True)
    pids = [int(p) for p in done.stdout.split()]
    return [p for p in pids if p not in mine and _is_vllm_serve(_cmdline(p))]


def wait_quiet(limit: float, mine: set[int]) -> dict[str, Any]:
    """Until no one else's ``vllm serve`` runs, polling every 10 s, for at most ``limit`` s."""
    started = time.monotonic()
    others = others_serving(mine)
    announced = False
    while others and time.monotonic() - started < limit:
        if not announced:
            log(f"  waiting: {len(others)} other vllm serve running (pids {others})")
            announced = True
        time.sleep(10)
        others = others_serving(mine)
    waited = time.monotonic() - started
    if others:
        log(f"  still {len(others)} other vllm serve after {waited:.0f} s: measuring anyway")
    return {"waited_s": round(waited, 1), "others_at_start": len(others)}


class Tracker:
    """Every process seen under a root, sampled twice a second, with its command line."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[int, list[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> None:
        for pid in process_tree(self.root):
            if pid not in self.seen and (argv := _cmdline(pid)):
                self.seen[pid] = argv

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _alive(pid: int, argv: list[str]) -> bool:
    """``pid`` still runs the same command (not a zombie, not a reused PID)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and _cmdline(pid) == argv


def leftovers(seen: dict[int, list[str]]) -> dict[str, list[str]]:
    """Processes of the run still alive after it stopped, and LMCache segments left behind."""
    alive = [f"{pid} {' '.join(argv)[:120]}" for pid, argv in seen.items() if _alive(pid, argv)]
    segments = [str(path) for pid in seen for path in Path("/dev/shm").glob(f"lmcache_kv_{pid}_*")]
    return {"processes": alive, "shm_segments": segments}


# ---------------------------------------------------------------- the server's answers


def read_health(url: str) -> dict[str, Any]:
    with contextlib.suppress(httpx.HTTPError, ValueError):
        answer = httpx.get(url + "/health", timeout=5, trust_env=False)
        body: dict[str, Any] = answer.json()
        body["status_code"] = answer.status_code
        return body
    return {}


def per_replica(url: str) -> dict[str, dict[str, float]]:
    """The counters of :data:`COUNTERS` per ``replica`` label (``vllm-0`` for a lone engine)."""
    text = httpx.get(url + "/metrics", timeout=10, trust_env=False).text
    samples = Samples.from_text(text)
    out: dict[str, dict[str, float]] = {}
    for key, name in COUNTERS.items():
        for replica, value in samples.by_label(name, "replica").items():
            out.setdefault(replica or "vllm-0", {})[key] = value
    return out


def replica_deltas(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """What each replica's counters moved by over the workload (a restarted replica starts at 0)."""
    out: dict[str, dict[str, float]] = {}
    for replica, values in sorted(after.items()):
        old = before.get(replica, {})
        out[replica] = {
            key: value - old.get(key, 0.0) if value >= old.get(key, 0.0) else value
            for key, value in values.items()
        }
    return out


# ---------------------------------------------------------------- one configuration


def serve_argv(config: Config, port: int) -> list[str]:
    argv = [PYTHON, "-m", "infer_cli", "serve", "--profile", config.profile, "--port", str(port),
            "--no-install"]  # fmt: skip
    for setting in config.settings:
        argv += ["--set", setting]
    return argv


def wait_all_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    """``/health`` once every replica it lists is ready (at once for a lone engine)."""
    deadline = time.monotonic() + timeout
    while True:
        health = read_health(url)
        replicas = health.get("replicas") or {}
        if health.get("status_code") == 200 and replicas.get("ready") == replicas.get("total"):
            return health
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"not every replica ready in {timeout:.0f} s: {health}")
        time.sleep(0.2)


def bench_args(url: str, options: argparse.Namespace) -> list[str]:
    return [
        "shared-prefix", "--url", url,
        "--prefixes", str(options.prefixes), "--suffixes", str(options.suffixes),
        "--prefix-len", str(options.prefix_len), "--suffix-len", str(options.suffix_len),
        "--output-len", str(options.output_len), "-c", str(options.concurrency),
        "--max-errors", "100%",
    ]  # fmt: skip


def measure(config: Config, options: argparse.Namespace, mine: set[int]) -> dict[str, Any]:
    result: dict[str, Any] = {"config": config.name, "profile": config.profile,
                              "settings": list(config.settings)}  # fmt: skip
    result["quiet"] = wait_quiet(options.quiet_wait, mine)
    home = Path(tempfile.mkdtemp(prefix=f"infer-scale-out-{config.name}-"))
    env = {**os.environ, **shared_homes(), "INFER_HOME": str(home), "NO_COLOR": "1"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = serve_argv(config, port)
    result["command"] = " ".join(argv[2:])
    log(f"  {' '.join(argv[1:])}")
    started = time.monotonic()
    with open(home / "serve.log", "wb") as serve_log:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=serve_log
        )
    tracker = Tracker(process.pid)
    try:
        try:
            wait_ok(url + "/health", process, options.start_timeout)
            result["startup_s"] = round(time.monotonic() - started, 2)
            result["health"] = wait_all_ready(url, process, options.start_timeout)
            result["all_ready_s"] = round(time.monotonic() - started, 2)
            tracker.sample()
            mine.update(tracker.seen)
            result["others_at_ready"] = len(others_serving(mine))
            log(f"  ready in {result['startup_s']:.1f} s; running the workload")
            before = per_replica(url)
            run = infer_bench(bench_args(url, options), env=env)
            after = per_replica(url)
            result["others_during"] = len(others_serving(mine | set(tracker.seen)))
            result["health_after"] = read_health(url)
            result["replicas"] = replica_deltas(before, after)
            result["bench"] = {"summary": run["summary"], "engine": run.get("engine"),
                               "lengths": run["lengths"]}  # fmt: skip
            result["requests"] = [
                {key: record.get(key) for key in ("index", "group", "cache", "prompt_tokens",
                                                  "cached_tokens", "ttft", "error")}
                for record in run.get("requests", [])
            ]  # fmt: skip
        except SystemExit as failure:  # wait_ok / infer_bench / wait_all_ready stop this way
            result["error"] = str(failure)
            tail = (home / "serve.log").read_text(errors="replace").splitlines()[-15:]
            result["serve_log_tail"] = tail
            log(f"  FAILED: {failure}")
    finally:
        stopping = time.monotonic()
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(options.stop_timeout)
            except subprocess.TimeoutExpired:
                result["stop_timed_out"] = True
                process.kill()
                process.wait()
        result["stop_s"] = round(time.monotonic() - stopping, 2)
        result["exit_code"] = process.returncode
        tracker.stop()
        time.sleep(2)  # a moment for grandchildren reparented to init to finish exiting
        result["left"] = leftovers(tracker.seen)
        result["processes_seen"] = sum(
            1 for argv in tracker.seen.values() if any(s in " ".join(argv) for s in STACK)
        )
        result["home"] = str(home)
    return result


# ---------------------------------------------------------------- figures


def figures(result: dict[str, Any]) -> dict[str, Any]:
    """The row of one configuration: hit rates, TTFT ratio, where requests went."""
    if "bench" not in result:
        return {}
    cache = result["bench"]["summary"]["cache"]
    replicas = result["replicas"]
    total = {key: sum(r.get(key, 0.0) for r in replicas.values()) for key in COUNTERS}
    cold, warm = cache.get("cold") or {}, cache.get("warm") or {}

    def median(part: dict[str, Any]) -> float | None:
        return (part.get("ttft_ms") or {}).get("median")

    requests = result["bench"]["summary"]["requests"]
    return {
        "ok": f"{requests['completed']}/{requests['total']}",
        "hit_rate": cache.get("hit_rate"),
        "warm_hit_rate": warm.get("hit_rate"),
        "cold_ttft_ms": median(cold),
        "warm_ttft_ms": median(warm),
        "warm_over_cold": cache.get("warm_over_cold_ttft"),
        "prefix_hit_tokens": int(total["prefix_hits"]),
        "external_hit_tokens": int(total["external_hits"]),
        "external_share": (
            round(total["external_hits"] / (total["prefix_hits"] + total["external_hits"]), 4)
            if total["prefix_hits"] + total["external_hits"]
            else 0.0
        ),
        "per_replica_requests": "/".join(str(int(r.get("requests", 0))) for r in replicas.values()),
    }


def _with_others(result: dict[str, Any]) -> bool:
    """Someone else's ``vllm serve`` ran at the start, at ready or at the end of the workload."""
    return bool(
        result["quiet"]["others_at_start"]
        or result.get("others_at_ready")
        or result.get("others_during")
    )


def summarize(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per configuration: the median of each figure over its rounds, ratios to the baseline.

    Rounds measured while someone else's ``vllm serve`` ran are left out of the medians when the
    configuration has a round without (``used`` says which rounds count).
    """
    by_config: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_config.setdefault(result["config"], []).append(result)
    rows: dict[str, dict[str, Any]] = {}
    for name, runs in by_config.items():
        row: dict[str, Any] = {"rounds": len(runs), "failed": sum(1 for r in runs if "error" in r)}
        rows[name] = row
        row["with_others"] = sum(1 for r in runs if _with_others(r))
        clean = [r for r in runs if not _with_others(r)]
        used = clean or runs
        row["used"] = [r.get("round") for r in used]
        measured = [figures(r) for r in used if "bench" in r]
        for key in ("hit_rate", "warm_hit_rate", "cold_ttft_ms", "warm_ttft_ms", "warm_over_cold",
                    "prefix_hit_tokens", "external_hit_tokens", "external_share"):  # fmt: skip
            values = [m[key] for m in measured if m.get(key) is not None]
            row[key] = round(statistics.median(values), 4) if values else None
        done = [int(n) for m in measured for n in m["ok"].split("/")]
        row["ok"] = f"{sum(done[0::2])}/{sum(done[1::2])}"
        row["per_replica_requests"] = " ".join(m["per_replica_requests"] for m in measured)
        startups = [r["startup_s"] for r in used if "startup_s" in r]
        row["startup_s"] = round(statistics.median(startups), 2) if startups else None
        row["left"] = sum(
            len(r["left"]["processes"]) + len(r["left"]["shm_segments"]) for r in runs
        )
    base = rows.get(BASELINE, {})
    for row in rows.values():
        row["startup_vs_cpu"] = _ratio(row["startup_s"], base.get("startup_s"))
        row["cold_ttft_vs_cpu"] = _ratio(row["cold_ttft_ms"], base.get("cold_ttft_ms"))
    return rows


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _cell(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec) if spec else str(value)


def table(rows: dict[str, dict[str, Any]]) -> str:
    header = (f"{'config':15}{'ok':>6}{'hit':>7}{'warm hit':>9}{'warm/cold':>10}"
              f"{'cold vs cpu':>12}{'vLLM hits':>10}{'LMCache':>8}{'ext share':>10}"
              f"{'req/replica':>13}{'start vs cpu':>13}{'left':>5}{'others':>7}"
              f"{'used':>6}")  # fmt: skip
    lines = [header]
    for name, row in rows.items():
        lines.append(
            f"{name:15}{row['ok']:>6}{_cell(row['hit_rate'], '.1%'):>7}"
            f"{_cell(row['warm_hit_rate'], '.1%'):>9}{_cell(row['warm_over_cold'], '.3f'):>10}"
            f"{_cell(row['cold_ttft_vs_cpu'], '.2f'):>12}"
            f"{_cell(row['prefix_hit_tokens'], '.0f'):>10}"
            f"{_cell(row['external_hit_tokens'], '.0f'):>8}"
            f"{_cell(row['external_share'], '.1%'):>10}{row['per_replica_requests']:>13}"
            f"{_cell(row['startup_vs_cpu'], '.2f'):>13}{row['left']:>5}{row['with_others']:>7}"
            f"{','.join(str(r) for r in row['used']):>6}"
        )
    return "\n".join(lines)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated, from: {', '.join(CONFIGS)}")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1, help="times to measure every config")
    parser.add_argument("--prefixes", type=int, default=5, help="odd: round robin alternates")
    parser.add_argument("--suffixes", type=int, default=4)
    parser.add_argument("--prefix-len", type=int, default=1024)
    parser.add_argument("--suffix-len", type=int, default=32)
    parser.add_argument("--output-len", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--start-timeout", type=float, default=600)
    parser.add_argument("--stop-timeout", type=float, default=120)
    parser.add_argument("--quiet-wait", type=float, default=900,
                        help="seconds to wait for others' vllm serve to end")  # fmt: skip
    parser.add_argument("--output", type=Path)
    parser.add_argument("--table", type=Path, help="print the table of a saved --output and stop")
    options = parser.parse_args()
    if options.table:
        rows = summarize(json.loads(options.table.read_text())["runs"])
        print(table(rows))
        print(LEGEND)
        return
    names = [name.strip() for name in options.configs.split(",") if name.strip()]
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        parser.error(f"unknown config {', '.join(unknown)} (known: {', '.join(CONFIGS)})")

    os.environ.update(shared_homes())
    mine: set[int] = set()
    results: list[dict[str, Any]] = []
    for round_index in range(options.rounds):
        for name in names:
            log(f"round {round_index + 1}/{options.rounds}: {name} ({CONFIGS[name].what})")
            result = measure(CONFIGS[name], options, mine)
            result["round"] = round_index + 1
            results.append(result)
            row = figures(result)
            if row:
                log(f"  hit {row['hit_rate']}, warm/cold TTFT {row['warm_over_cold']}, "
                    f"external hits {row['external_hit_tokens']}, requests per replica "
                    f"{row['per_replica_requests']}, left {result['left']}")  # fmt: skip
            if options.output:  # written as it goes: a long run keeps what it measured
                write(options.output, options, results)
    rows = summarize(results)
    print(table(rows))
    print(LEGEND)
    if options.output:
        write(options.output, options, results, rows)


def write(
    path: Path,
    options: argparse.Namespace,
    results: list[dict[str, Any]],
    rows: dict[str, dict[str, Any]] | None = None,
) -> None:
    document = {
        "options": {key: str(value) for key, value in vars(options).items()},
        "cpus": os.cpu_count(),
        "summary": rows if rows is not None else summarize(results),
        "runs": results,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
