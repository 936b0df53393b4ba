"""How fast can the load generator go? ``infer bench`` and ``vllm bench serve`` against the
simulated engine, whose answers cost almost nothing, at rising request rates.

The simulator runs as its own process (``python -m infer_cli.sim``, one core) with no prefill or
decode delay and room for every request, so what limits a run is the server's own HTTP work and
the load generator's. For each rate both tools send the same number of requests (``--seconds`` x
rate) with Poisson arrivals and no concurrency limit: short prompts, ``--output-len`` streamed
tokens each. A tool *keeps* a rate when its achieved throughput is at least 90% of it with no
failed request. Per rate the script reports both tools' achieved requests/s and median TTFT; for
infer bench also the p99 delay between when a request was due and when it went out (its own lag).
Then both at an unlimited rate with ``--concurrency`` in flight: the most each pushes through.

    .venv/bin/python benchmarks/generator_ceiling.py --rates 100,200,400,800 --output ceiling.json
"""

from __future__ import annotations

import argparse
import json
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
    try:
        wait_health(url, sim, timeout=30)
        for rate in rates:
            n = min(args.max_requests, max(20, int(rate * args.seconds)))
            mine = achieved_infer(
                infer_bench([*common_infer, "-n", str(n), "--rate", f"{rate:g}", "--seed", "1"])
            )
            theirs = achieved_vllm(
                vllm_bench([*common_vllm, "--num-prompts", str(n), "--request-rate", f"{rate:g}",
                            "--seed", "1"])
            )  # fmt: skip
            row = {"rate": rate, "requests": n, "infer": mine, "vllm": theirs}
            for tool in ("infer", "vllm"):
                got = row[tool]
                got["keeps"] = got["achieved_rps"] >= KEEP * rate and not got["failed"]
            rows.append(row)
            print(json.dumps(row), flush=True)
        n = min(args.max_requests, 2000)
        unlimited = {
            "requests": n,
            "concurrency": args.concurrency,
            "infer": achieved_infer(
                infer_bench([*common_infer, "-n", str(n), "-c", str(args.concurrency)])
            ),
            "vllm": achieved_vllm(
                vllm_bench(
                    [
                        *common_vllm,
                        "--num-prompts",
                        str(n),
                        "--max-concurrency",
                        str(args.concurrency),
                    ]
                )
            ),
        }
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
        "highest_rate_kept": {"infer": ceiling("infer"), "vllm": ceiling("vllm")},
    }
    json.dump(summary, sys.stdout, indent=2)
    print()
    if args.output:
        args.output.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
