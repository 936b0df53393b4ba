"""Does ``infer bench`` agree with ``vllm bench serve``? Same server, same random workload.

Starts ``infer serve --profile cpu`` (real vLLM + LMCache + SmolLM2 behind the proxy), warms it
up, then runs both tools against the proxy's ``/v1/completions`` in alternation (infer, vllm,
infer, vllm, ...) so that drift on a shared machine hits both alike: random prompts of exactly
``--input-len`` tokens (both tools fit them with the model's tokenizer: infer bench through the
proxy's ``/tokenize``, vLLM's with the tokenizer folder), ``--output-len`` tokens generated
(ignore_eos), a new seed each round so that no round hits the prefix cache of an earlier one.
Neither tool warms up within a round: vLLM's warm-up and ready check resend the first prompt,
which would turn that request into a prefix-cache hit.

Each concurrency level (``--concurrency 1,2``) is a separate comparison. Per level the script
pools every request of every round and reports, per tool, the median TTFT and TPOT, the ratios
infer / vllm, and how far each tool's own round medians spread (max / min): the noise floor the
ratio should be read against.

Why levels above one draw lengths with ``--range-ratio`` (both tools, the same uniform range
for input and output): at one stream TTFT is the prefill alone. With several streams of equal
length, requests that start together finish together and the run settles into one of several
stable patterns (a pair sent together: the first is prefilled alone, the second waits for it;
or staggered: each prefill overlaps the other's decoding), with medians 30% apart. Which pattern
a run falls into depends on sub-millisecond timing, for either tool; varied lengths break the
lockstep, so what remains is the tools' measuring.

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
    free_port,
    infer_bench,
    model_dir,
    shared_homes,
    stop,
    vllm_bench,
    wait_health,
)

MODEL = "smollm2-135m-instruct"
AGREE = 0.10


def infer_samples(run: dict[str, Any]) -> dict[str, list[float]]:
    """Per-request TTFT and TPOT (ms) of an ``infer bench`` run."""
    ttft, tpot = [], []
    for record in run["requests"]:
        if record.get("warmup") or record.get("error") or record.get("ttft") is None:
            continue
        ttft.append(record["ttft"] * 1000)
        tokens = record.get("output_tokens") or 0
        if record["chunks"] and tokens > 1:
            tpot.append((record["chunks"][-1] - record["ttft"]) / (tokens - 1) * 1000)
    return {"ttft": ttft, "tpot": tpot}


def vllm_samples(result: dict[str, Any]) -> dict[str, list[float]]:
    """Per-request TTFT and TPOT (ms) of ``vllm bench serve --save-detailed`` (its definitions)."""
    ttft, tpot = [], []
    columns = ("ttfts", "latencies", "output_lens", "errors")
    for first, latency, tokens, error in zip(*(result[c] for c in columns), strict=True):
        if error or not first:
            continue
        ttft.append(first * 1000)
        if tokens and tokens > 1:
            tpot.append((latency - first) / (tokens - 1) * 1000)
    return {"ttft": ttft, "tpot": tpot}


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def spread(values: list[float | None]) -> float | None:
    known = [v for v in values if v]
    return round(max(known) / min(known), 3) if known else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--num-prompts", type=int, default=16)
    parser.add_argument("--input-len", type=int, default=256)
    parser.add_argument("--output-len", type=int, default=32)
    parser.add_argument("--concurrency", default="1,2", help="levels, compared separately")
    parser.add_argument(
        "--range-ratio", type=float, default=0.25, help="length spread for levels above one"
    )
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]

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
    common = ["--url", url, "--endpoint", "completions", "--model", MODEL, "--temperature", "0"]
    samples: dict[int, dict[str, dict[str, list[float]]]] = {}
    rounds: list[dict[str, Any]] = []
    lengths_exact = True
    try:
        wait_health(url, server, timeout=300)
        infer_bench(["random", *common, "-n", "4", "--input-len", str(args.input_len),
                     "--output-len", "8", "--seed", "7", "--warmup", "0"], env=env)  # fmt: skip
        for round_index in range(args.rounds):
            for level_index, level in enumerate(levels):
                seed = 1000 + 10 * round_index + level_index
                ratio = str(args.range_ratio if level > 1 else 0.0)
                mine = infer_bench(
                    ["random", *common, "-n", str(args.num_prompts),
                     "--input-len", str(args.input_len), "--output-len", str(args.output_len),
                     "--range-ratio", ratio, "-c", str(level), "--seed", str(seed),
                     "--warmup", "0"],
                    env=env,
                )  # fmt: skip
                lengths_exact = lengths_exact and bool(mine["lengths"].get("exact"))
                theirs = vllm_bench(
                    ["--backend", "openai", "--base-url", url, "--endpoint", "/v1/completions",
                     "--model", MODEL, "--tokenizer", str(model_dir()), "--dataset-name", "random",
                     "--random-input-len", str(args.input_len),
                     "--random-output-len", str(args.output_len), "--random-range-ratio", ratio,
                     "--num-prompts", str(args.num_prompts), "--max-concurrency", str(level),
                     "--seed", str(seed + 500), "--num-warmups", "0",
                     "--ready-check-timeout-sec", "0", "--ignore-eos", "--temperature", "0",
                     "--save-detailed"],
                )  # fmt: skip
                pair = {"infer": infer_samples(mine), "vllm": vllm_samples(theirs)}
                level_samples = samples.setdefault(level, {"infer": {}, "vllm": {}})
                for tool, found in pair.items():
                    for key, values in found.items():
                        level_samples[tool].setdefault(key, []).extend(values)
                row = {
                    "round": round_index,
                    "concurrency": level,
                    "range_ratio": float(ratio),
                    **{
                        f"{tool}_{key}_median_ms": median(found[key])
                        for tool, found in pair.items()
                        for key in ("ttft", "tpot")
                    },
                    "infer_prompt_tokens_mean": mine["summary"]["tokens"]["input"]
                    / max(1, mine["summary"]["requests"]["completed"]),
                    "vllm_prompt_tokens_mean": theirs["total_input_tokens"]
                    / max(1, theirs["completed"]),
                    "infer_failed": mine["summary"]["requests"]["failed"],
                    "vllm_failed": theirs.get("failed", 0),
                }
                rounds.append(row)
                print(json.dumps(row), flush=True)
    finally:
        stop(server)
        log.close()

    comparisons = []
    for level, tools in samples.items():
        mine_rounds = [r for r in rounds if r["concurrency"] == level]
        entry: dict[str, Any] = {"concurrency": level}
        for key in ("ttft", "tpot"):
            a, b = median(tools["infer"][key]), median(tools["vllm"][key])
            ratio = round(a / b, 3) if a and b else None
            entry[key] = {
                "infer_median_ms": a,
                "vllm_median_ms": b,
                "ratio": ratio,
                "agree": ratio is not None and abs(ratio - 1) <= AGREE,
                "infer_round_spread": spread([r[f"infer_{key}_median_ms"] for r in mine_rounds]),
                "vllm_round_spread": spread([r[f"vllm_{key}_median_ms"] for r in mine_rounds]),
                "samples": [len(tools["infer"][key]), len(tools["vllm"][key])],
            }
        comparisons.append(entry)
    summary: dict[str, Any] = {
        "workload": {
            "input_len": args.input_len,
            "output_len": args.output_len,
            "num_prompts": args.num_prompts,
            "rounds": args.rounds,
            "lengths_exact": lengths_exact,
        },
        "rounds": rounds,
        "comparisons": comparisons,
    }
    print(json.dumps(comparisons, indent=2))
    if args.output:
        args.output.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
