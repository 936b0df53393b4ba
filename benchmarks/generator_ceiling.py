"""How fast can the load generator go? ``infer bench`` and ``vllm bench serve`` against the
simulated engine, whose answers cost almost nothing, at rising request rates.

The simulator runs as its own process (``python -m infer_cli.sim``, one core) with no prefill or
decode delay and room for every request, so what limits a run is the server's own HTTP work and
the load generator's. For each rate both tools send the same number of requests (``--seconds`` x
rate) with Poisson arrivals and no concurrency limit: short prompts, ``--output-len`` streamed
tokens each. A tool *keeps* a rate when its achieved throughput is at least 90% of it with no
failed request. Per rate the script reports both tools' achieved requests/s and median TTFT; for
infer bench also the p99 delay between when a request was due and when it went out (its own lag).
Then both at an unlimited rate with ``--concurrency`` in flight: the most each pushes through, and
infer bench's CPU per request there (the CPU of a run of ``N`` requests less that of a run of
``N / 10``, over the difference: start-up cancels out). ``--skip-vllm`` runs infer bench alone.

The issue 14 comparison of infer's HTTP/1.1 client with aiohttp's runs this script with
``benchmarks/aiohttp_variant`` on ``PYTHONPATH`` (see its ``sitecustomize.py``).

    .venv/bin/python benchmarks/generator_ceiling.py --rates 100,200,400,800 --output ceiling.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from _bench_common import PYTHON, free_port, infer_bench, model_dir, stop, vllm_bench, wait_health

KEEP = 0.9


def achieved_infer(run: dict[str, Any]) -> dict[str, Any]:
    s = run["summary"]
    return {
        "achieved_rps": s["throughput"]["requests_per_s"],
        "failed": s["requests"]["failed"],
        "ttft_median_ms": (s["latency_ms"]["ttft"] or {}).get("median"),
        "send_lag_p99_ms": (s["generator"]["send_lag_ms"] or {}).get("p99"),
    }


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def infer_cpu_per_request(args: list[str], n: int) -> tuple[dict[str, Any], float]:
    """One run of ``n`` requests and its CPU milliseconds per request, less start-up (see above)."""
    small = max(10, n // 10)
    before = child_cpu()
    infer_bench([*args, "-n", str(small)])
    middle = child_cpu()
    run = infer_bench([*args, "-n", str(n)])
    after = child_cpu()
    return run, ((after - middle) - (middle - before)) / (n - small) * 1000


def achieved_vllm(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "achieved_rps": round(result["request_throughput"], 2),
        "failed": result.get("failed", 0),
        "ttft_median_ms": round(result["median_ttft_ms"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="100,200,400,800")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--output-len", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-requests", type=int, default=4000)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--skip-vllm", action="store_true", help="measure infer bench alone")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]

    port = free_port()
    settings = {
        "ms_per_output_token": 0,
        "prefill_ms_per_token": 0,
        "max_num_seqs": 100000,
        "context_length": 100000,
    }
    sim = subprocess.Popen(
        [PYTHON, "-m", "infer_cli.sim", "--port", str(port), "--settings-json",
         json.dumps(settings)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    common_infer = ["random", "--url", url, "--endpoint", "completions", "--input-len", "32",
                    "--output-len", str(args.output_len), "--no-engine-metrics"]  # fmt: skip
    common_vllm = ["--backend", "openai", "--base-url", url, "--endpoint", "/v1/completions",
                   "--model", "sim-model", "--tokenizer", str(model_dir()), "--dataset-name",
                   "random", "--random-input-len", "32", "--random-output-len",
                   str(args.output_len), "--ignore-eos"]  # fmt: skip
    rows: list[dict[str, Any]] = []
    tools = ("infer",) if args.skip_vllm else ("infer", "vllm")
    try:
        wait_health(url, sim, timeout=30)
        for rate in rates:
            n = min(args.max_requests, max(20, int(rate * args.seconds)))
            mine = achieved_infer(
                infer_bench([*common_infer, "-n", str(n), "--rate", f"{rate:g}", "--seed", "1"])
            )
            row = {"rate": rate, "requests": n, "infer": mine}
            if not args.skip_vllm:
                row["vllm"] = achieved_vllm(
                    vllm_bench([*common_vllm, "--num-prompts", str(n), "--request-rate",
                                f"{rate:g}", "--seed", "1"])
                )  # fmt: skip
            for tool in tools:
                got = row[tool]
                got["keeps"] = got["achieved_rps"] >= KEEP * rate and not got["failed"]
            rows.append(row)
            print(json.dumps(row), flush=True)
        n = min(args.max_requests, 2000)
        run, cpu_ms = infer_cpu_per_request([*common_infer, "-c", str(args.concurrency)], n)
        unlimited: dict[str, Any] = {
            "requests": n,
            "concurrency": args.concurrency,
            "infer": {**achieved_infer(run), "cpu_ms_per_request": round(cpu_ms, 3)},
        }
        if not args.skip_vllm:
            unlimited["vllm"] = achieved_vllm(
                vllm_bench([*common_vllm, "--num-prompts", str(n), "--max-concurrency",
                            str(args.concurrency)])
            )  # fmt: skip
        print(json.dumps(unlimited), flush=True)
    finally:
        stop(sim)

    def ceiling(tool: str) -> float | None:
        kept = [row["rate"] for row in rows if row[tool]["keeps"]]
        return max(kept) if kept else None

    summary = {
        "output_len": args.output_len,
        "rates": rows,
        "unlimited": unlimited,
        "highest_rate_kept": {tool: ceiling(tool) for tool in tools},
    }
    json.dump(summary, sys.stdout, indent=2)
    print()
    if args.output:
        args.output.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
