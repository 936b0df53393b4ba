"""Does ``infer bench`` agree with ``vllm bench serve``? Same server, same random workload.

Starts ``infer serve --profile cpu`` (real vLLM + LMCache + SmolLM2 behind the proxy), then runs
both tools against the proxy's ``/v1/completions`` in alternation (infer, vllm, infer, vllm, ...)
so that drift on a shared machine hits both alike: random prompts of ``--input-len`` tokens,
``--output-len`` tokens generated (ignore_eos), ``--concurrency`` in flight, a new seed each round
(so no round hits the prefix cache of an earlier one), two warm-up requests each. infer bench
fits its prompt lengths with the engine's own ``/tokenize`` (found from the process tree), as
vLLM's tool does with the tokenizer folder. Reports the median TTFT and TPOT of each tool per
round, their medians over the rounds, and the ratios infer / vllm.

    .venv/bin/python benchmarks/bench_vs_vllm.py --rounds 3 --output bench_vs_vllm.json

Needs the CPU engine and the model (``infer engine install``, ``infer pull``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from _bench_common import (
    PYTHON,
    engine_port,
    free_port,
    infer_bench,
    model_dir,
    shared_homes,
    stop,
    vllm_bench,
    wait_health,
)

MODEL = "smollm2-135m-instruct"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--num-prompts", type=int, default=12)
    parser.add_argument("--input-len", type=int, default=256)
    parser.add_argument("--output-len", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    port = free_port()
    home = Path(tempfile.mkdtemp(prefix="infer-bench-vs-vllm-"))
    env = {**os.environ, **shared_homes(), "INFER_HOME": str(home), "NO_COLOR": "1"}
    log = (home / "serve.log").open("wb")
    server = subprocess.Popen(
        [PYTHON, "-m", "infer_cli", "serve", "--profile", "cpu", "--port", str(port),
         "--no-install"],
        env=env, stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    rows: list[dict[str, Any]] = []
    try:
        wait_health(url, server, timeout=300)
        engine = engine_port(server.pid)
        tokenize = [f"--tokenize-url=http://127.0.0.1:{engine}"] if engine else []
        for round_index in range(args.rounds):
            seed = 1000 + round_index
            mine = infer_bench(
                ["random", "--url", url, "--endpoint", "completions", "--model", MODEL,
                 "-n", str(args.num_prompts), "--input-len", str(args.input_len),
                 "--output-len", str(args.output_len), "-c", str(args.concurrency),
                 "--seed", str(seed), "--warmup", "2", "--temperature", "0", *tokenize],
                env=env,
            )  # fmt: skip
            theirs = vllm_bench(
                ["--backend", "openai", "--base-url", url, "--endpoint", "/v1/completions",
                 "--model", MODEL, "--tokenizer", str(model_dir()), "--dataset-name", "random",
                 "--random-input-len", str(args.input_len),
                 "--random-output-len", str(args.output_len), "--num-prompts",
                 str(args.num_prompts), "--max-concurrency", str(args.concurrency),
                 "--seed", str(seed + 500), "--num-warmups", "2", "--ignore-eos",
                 "--temperature", "0"],
            )  # fmt: skip
            lat = mine["summary"]["latency_ms"]
            row = {
                "round": round_index,
                "infer_ttft_median_ms": lat["ttft"]["median"],
                "infer_tpot_median_ms": lat["tpot"]["median"],
                "infer_prompt_tokens_mean": mine["summary"]["tokens"]["input"] / args.num_prompts,
                "infer_failed": mine["summary"]["requests"]["failed"],
                "vllm_ttft_median_ms": round(theirs["median_ttft_ms"], 3),
                "vllm_tpot_median_ms": round(theirs["median_tpot_ms"], 3),
                "vllm_prompt_tokens_mean": theirs["total_input_tokens"] / args.num_prompts,
                "vllm_failed": theirs.get("failed", 0),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        stop(server)
        log.close()

    def median(key: str) -> float:
        return float(statistics.median(float(row[key]) for row in rows))

    medians = {
        key: median(key)
        for key in (
            "infer_ttft_median_ms",
            "vllm_ttft_median_ms",
            "infer_tpot_median_ms",
            "vllm_tpot_median_ms",
        )
    }
    summary: dict[str, Any] = {
        "workload": {
            "input_len": args.input_len,
            "output_len": args.output_len,
            "num_prompts": args.num_prompts,
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "lengths_exact": bool(engine),
        },
        "rounds": rows,
        **medians,
        "ttft_ratio": round(medians["infer_ttft_median_ms"] / medians["vllm_ttft_median_ms"], 3),
        "tpot_ratio": round(medians["infer_tpot_median_ms"] / medians["vllm_tpot_median_ms"], 3),
    }
    print(json.dumps(summary, indent=2))
    if args.output:
        args.output.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
