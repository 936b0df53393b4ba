"""``infer serve --profile cpu-2x`` for real: two vLLM replicas behind vllm-router, one LMCache.

The router runs round robin here, so that two requests in a row land on different replicas: a
prompt one replica computed must then be a cache hit on the other, which never saw it (LMCache's
server is shared). In file order: both replicas ready behind the proxy; the cross-replica hit and
the merged metrics; a shared-prefix benchmark over both; a replica SIGKILLed during a benchmark
(the run completes, at most the requests in flight on that replica fail, the endpoint stays up and
the replica comes back); Ctrl-C leaves nothing. Then the same profile without the shared server,
to show what sharing buys.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import MODEL, Served, serve_cpu
from tests.e2e.test_serve_cpu import LONG_PROMPT, chat
from tests.helpers import pid_alive, shm_segments_of

ROUND_ROBIN = ["--set", "replicas.policy=round_robin", "--set", "supervisor.backoff=0.5"]


@pytest.fixture(scope="module")
def served(cpu_engine: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("replicas-home")
    with serve_cpu(home, *ROUND_ROBIN, profile="cpu-2x", timeout=600) as running:
        yield running


def per_replica(url: str, name: str) -> dict[str, float]:
    """One of vLLM's counters from the proxy's ``/metrics``, summed by ``replica`` label."""
    totals: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{") and 'replica="' in line:
            replica = line.split('replica="', 1)[1].split('"', 1)[0]
            totals[replica] = totals.get(replica, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def replica_pid(served: Served, name: str) -> int:
    """The pid of the ``vllm serve`` process of replica ``name`` (by its port in the log)."""
    runs = list((served.home / "runs").iterdir())
    log = (runs[0] / f"{name}.log").read_text(errors="replace")
    port = log.split("Starting vLLM server on http://", 1)[1].split(":", 1)[1].split()[0]
    port = "".join(ch for ch in port if ch.isdigit())
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 2 and argv[2] == b"serve" and port.encode() in argv:
            return int(pid)
    raise AssertionError(f"no vllm serve process for {name} on port {port}")


def test_both_replicas_are_ready_behind_the_proxy(served: Served) -> None:
    health = httpx.get(f"{served.url}/health", timeout=5).json()
    assert health["status"] == "ok" and health["profile"] == "cpu-2x"
    assert health["replicas"] == {
        "ready": 2,
        "total": 2,
        "each": {"vllm-0": "ready", "vllm-1": "ready"},
    }
    log = served.stderr.read_text()
    for name in ("lmcache", "vllm-0", "vllm-1", "router"):
        assert f"✓ {name} ready" in log


def test_a_prompt_one_replica_computed_is_a_hit_on_the_other(served: Served) -> None:
    prompt = LONG_PROMPT.replace("quick brown fox", "patient blue heron") + " Summarise."
    before = per_replica(served.url, "vllm:request_success_total")
    hits_before = per_replica(served.url, "vllm:external_prefix_cache_hits_total")
    first = chat(served.url, prompt, max_tokens=4)["usage"]
    second = chat(served.url, prompt, max_tokens=4)["usage"]
    after = per_replica(served.url, "vllm:request_success_total")
    served_by = {name for name in after if after[name] > before.get(name, 0.0)}
    assert served_by == {"vllm-0", "vllm-1"}, "round robin: one request on each replica"
    assert first["prompt_tokens_details"]["cached_tokens"] == 0  # type: ignore[index]
    cached = second["prompt_tokens_details"]["cached_tokens"]  # type: ignore[index]
    assert cached >= 1024, f"the other replica should get the KV from LMCache: {second}"
    hits = per_replica(served.url, "vllm:external_prefix_cache_hits_total")
    gained = sum(hits.values()) - sum(hits_before.values())
    assert gained >= 1024, f"expected LMCache (external) hits, got {gained}"
    metrics = httpx.get(f"{served.url}/metrics", timeout=10).text
    assert "vllm_router_requests_total" in metrics  # the router's own, next to the engines'
    assert 'worker="vllm-0"' in metrics and "127.0.0.1:" not in metrics.split("vllm_router", 1)[1]


def test_a_shared_prefix_benchmark_over_both_replicas(served: Served, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    done = subprocess.run(
        [sys.executable, "-m", "infer_cli", "bench", "shared-prefix", "-u", served.url,
         "--prefixes", "3", "--suffixes", "2", "--prefix-len", "600", "--suffix-len", "20",
         "--output-len", "2", "-c", "1", "-q", "-o", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = json.loads(out.read_text())["runs"][0]
    cache, engine = run["summary"]["cache"], run["engine"]
    print(
        f"[replicas] shared-prefix over two replicas: warm hit rate {cache['warm']['hit_rate']}, "
        f"warm/cold TTFT {cache['warm_over_cold_ttft']}, LMCache hits "
        f"{engine['external_prefix_cache_hits']} of {engine['external_prefix_cache_queries']}"
    )
    # prefixes p0 p1 p2 p0 p1 p2 over replicas A B A B A B: each warm request is on the other
    # replica than its cold one, so its hit can only come from the shared LMCache server
    assert cache["warm"]["hit_rate"] > 0.5
    assert engine["external_prefix_cache_hits"] > 0


def test_a_replica_killed_mid_run_costs_at_most_its_requests(
    served: Served, tmp_path: Path
) -> None:
    out, log = tmp_path / "run.json", tmp_path / "bench.stderr"
    with log.open("wb") as sink:
        bench = subprocess.Popen(
            [sys.executable, "-m", "infer_cli", "bench", "random", "-u", served.url, "-n", "16",
             "-c", "2", "--input-len", "64", "--output-len", "24", "--max-errors", "2", "-q",
             "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=sink,
        )  # fmt: skip
    victim = replica_pid(served, "vllm-0")
    time.sleep(8)  # a few requests are done by now, some are in flight on each replica
    os.kill(victim, signal.SIGKILL)
    statuses = []
    while bench.poll() is None:
        statuses.append(httpx.get(f"{served.url}/health", timeout=10).status_code)
        time.sleep(0.5)
    err = log.read_text()
    data = json.loads(out.read_text())
    requests = data["runs"][0]["requests"]
    failed = [r for r in requests if r.get("error")]
    assert len(requests) == 16 and len(failed) <= 2, (failed, err)  # only those in flight on it
    assert bench.returncode == 0, err
    assert set(statuses) == {200}, "the other replica kept the endpoint up"
    deadline = time.monotonic() + 400
    while True:
        health = httpx.get(f"{served.url}/health", timeout=10).json()
        if health["replicas"]["ready"] == 2:
            break
        assert time.monotonic() < deadline, f"vllm-0 did not come back: {health}"
        assert health["status"] == "ok" and health["replicas"]["each"]["vllm-0"] == "restarting"
        time.sleep(2)
    assert health["restarts"] == 1
    assert str(health["last_restart"]["reason"]).startswith("vllm-0 exited with code -9")
    assert not pid_alive(victim)


def test_ctrl_c_stops_replicas_router_and_cache_and_leaves_nothing(served: Served) -> None:
    served.remember_pids()
    engine_pids = served.pids - {served.process.pid}
    segments = shm_segments_of(engine_pids)
    served.process.send_signal(signal.SIGINT)
    assert served.process.wait(timeout=90) == 0
    assert [pid for pid in engine_pids if pid_alive(pid)] == []
    assert [s for s in segments if s.exists()] == []


def test_without_the_shared_server_the_other_replica_computes_again(
    cpu_engine: Path, tmp_path: Path
) -> None:
    prompt = LONG_PROMPT.replace("quick brown fox", "quiet yellow finch") + " Summarise."
    unshared = [*ROUND_ROBIN, "--set", "lmcache.shared=false"]
    (tmp_path / "home").mkdir()
    with serve_cpu(tmp_path / "home", *unshared, profile="cpu-2x", timeout=600) as running:
        chat(running.url, prompt, max_tokens=4)
        second = chat(running.url, prompt, max_tokens=4)["usage"]
        health = httpx.get(f"{running.url}/health", timeout=5).json()
    assert health["replicas"]["total"] == 2
    # the other replica has its own LMCache server and its own prefix cache: nothing to reuse
    assert second["prompt_tokens_details"]["cached_tokens"] == 0, second  # type: ignore[index]
    assert MODEL == "smollm2-135m-instruct"
