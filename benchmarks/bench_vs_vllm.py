"""Does ``infer bench`` agree with ``vllm bench serve``? Same server, same prompts.

Starts ``infer serve --profile cpu`` (real vLLM + LMCache + SmolLM2 behind the proxy), warms it
up, then runs both tools against the proxy's ``/v1/completions`` in alternation (each round swaps
which tool goes first) so that drift on a shared machine hits both alike. Every run sends
``--num-prompts`` prompts of ``--input-len`` tokens and generates exactly ``--output-len`` tokens
(ignore_eos), with new prompts each round so that no round hits the prefix cache of an earlier
one. With ``--prompts same`` (the default) both tools read prompt files made alike (ShareGPT,
which both read): the same lengths in the same order, random words fitted to them with the
engine's tokenizer, different words for each tool (the same prompts would hit the prefix cache
the first tool filled), so the engine gets the same work from both. With ``--prompts own`` each
tool uses its own random generator (infer bench's words fitted through the proxy's
``/tokenize``; vLLM's random token ids).
Neither tool warms up within a round: vLLM's warm-up and ready check resend the first prompt,
which would turn that request into a prefix-cache hit.

Each concurrency level (``--concurrency 1,2``) is a separate comparison. Per level the script
pools every request of every round and reports, per tool, the median TTFT and TPOT, the ratios
infer / vllm, and how far each tool's own round medians spread (max / min): the noise floor the
ratio should be read against.

The engine's speed drifts on a shared machine, so the script also asks the engine itself: vLLM's
own TTFT and per-request TPOT histograms, read from ``/metrics`` before and after every run, give
the engine's mean TTFT and TPOT over exactly that run's requests. Each tool's client-side mean
divided by the engine's mean for the same run (``vs_engine``) says how faithfully the tool
measures, whatever the engine's speed at the time; a tool that measures right sits a little above
1.0 for TTFT (HTTP and the proxy) and at 1.0 for TPOT.

Why levels above one vary the prompt lengths (``--range-ratio``, uniform around
``--input-len``): at one stream TTFT is the prefill alone. With several streams of equal length,
requests that start together finish together and the run settles into one of several stable
patterns (a pair sent together: the first is prefilled alone, the second waits for it; or
staggered: each prefill overlaps the other's decoding), with medians 30% apart. Which pattern a
run falls into depends on sub-millisecond timing, for either tool; varied lengths break the
lockstep, so what remains is the tools' measuring.

    .venv/bin/python benchmarks/bench_vs_vllm.py --rounds 4 --output bench_vs_vllm.json

Needs the CPU engine and the model (``infer engine install``, ``infer pull``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
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
TOOLS = ("infer", "vllm")
AGREE = 0.10


def write_prompts(
    path: Path, url: str, count: int, input_len: int, ratio: float, seed: int, text_seed: int
) -> None:
    """A ShareGPT file (vLLM's tool reads JSONL only with pandas, which its environment lacks) of
    prompts of exact token lengths: the lengths drawn with ``seed``, the text (infer bench's random
    words, fitted with the engine's tokenizer through the proxy) with ``text_seed``. The answer
    lengths come from ``--output-len`` in both tools."""
    import asyncio

    from infer_cli.bench.text import TextSource
    from infer_cli.bench.tokens import ServerTokenizer, materialize
    from infer_cli.bench.workloads import random_workload

    workload = random_workload(
        num_requests=count,
        input_len=input_len,
        output_len=1,
        range_ratio=ratio,
        seed=seed,
    )

    async def fit() -> list[str]:
        async with httpx.AsyncClient(timeout=30) as http:
            tokenizer = ServerTokenizer(http, url + "/tokenize", MODEL)
            texts = await materialize(workload, TextSource(text_seed), tokenizer)
        turns = [turn for phase in workload.phases for s in phase.sessions for turn in s.turns]
        return [texts.join(turn.prompt) for turn in turns]

    answer = "(the answer's length is set by the benchmark)"
    rows = [
        {"conversations": [{"from": "human", "value": text}, {"from": "gpt", "value": answer}]}
        for text in asyncio.run(fit())
    ]
    path.write_text(json.dumps(rows))


def engine_means(
    url: str, run: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any
) -> tuple[dict[str, Any], dict[str, float]]:
    """``run(...)``'s result, and the engine's mean TTFT / TPOT (ms) over the requests it made:
    vLLM's own histograms in the proxy's ``/metrics``, read before and after."""
    from infer_cli.bench import engine_metrics

    def read() -> dict[str, Any] | None:
        return engine_metrics.snapshot(httpx.get(url + "/metrics", timeout=10).text)

    before = read()
    result = run(*args, **kwargs)
    moved = engine_metrics.delta(before, read()) or {}
    latency = moved.get("latency_ms") or {}
    return result, {key: latency[key]["mean"] for key in ("ttft", "tpot") if key in latency}


def mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 2) if values else None


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


def vs_engine(values: list[float], engine: float | None) -> float | None:
    """The tool's mean over a run divided by the engine's own mean for it."""
    client = mean(values)
    return round(client / engine, 3) if client and engine else None


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def median_of(values: list[float | None]) -> float | None:
    known = [v for v in values if v]
    return round(statistics.median(known), 3) if known else None


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
    parser.add_argument(
        "--prompts",
        choices=("same", "own"),
        default="same",
        help="same: both tools send one prompt file; own: each its own random generator",
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
                if args.prompts == "same":
                    files = {tool: home / f"prompts-{seed}-{tool}.json" for tool in TOOLS}
                    for offset, tool in enumerate(TOOLS):
                        write_prompts(files[tool], url, args.num_prompts, args.input_len,
                                      float(ratio), seed, seed + 500 * offset)  # fmt: skip
                    infer_workload = ["file", "--dataset", str(files["infer"]), "--ignore-eos",
                                      "--output-len", str(args.output_len)]  # fmt: skip
                    vllm_workload = ["--dataset-name", "sharegpt",
                                     "--dataset-path", str(files["vllm"]),
                                     "--sharegpt-output-len", str(args.output_len),
                                     "--disable-shuffle"]  # fmt: skip
                else:
                    infer_workload = ["random", "--input-len", str(args.input_len),
                                      "--output-len", str(args.output_len), "--range-ratio", ratio,
                                      "--seed", str(seed)]  # fmt: skip
                    vllm_workload = ["--dataset-name", "random",
                                     "--random-input-len", str(args.input_len),
                                     "--random-output-len", str(args.output_len),
                                     "--random-range-ratio", ratio,
                                     "--seed", str(seed + 500)]  # fmt: skip
                runs = {
                    "infer": partial(infer_bench,
                        [*infer_workload, *common, "-n", str(args.num_prompts),
                         "-c", str(level), "--warmup", "0"],
                        env=env),
                    "vllm": partial(vllm_bench,
                        ["--backend", "openai", "--base-url", url, "--endpoint", "/v1/completions",
                         "--model", MODEL, "--tokenizer", str(model_dir()), *vllm_workload,
                         "--num-prompts", str(args.num_prompts), "--max-concurrency", str(level),
                         "--num-warmups", "0", "--ready-check-timeout-sec", "0", "--ignore-eos",
                         "--temperature", "0", "--save-detailed"]),
                }  # fmt: skip
                # odd rounds run vLLM's tool first: whatever the order does, both get it
                order = ["infer", "vllm"] if round_index % 2 == 0 else ["vllm", "infer"]
                done = {tool: engine_means(url, runs[tool]) for tool in order}
                (mine, mine_engine), (theirs, theirs_engine) = done["infer"], done["vllm"]
                lengths_exact = lengths_exact and bool(mine["lengths"].get("exact"))
                pair = {"infer": infer_samples(mine), "vllm": vllm_samples(theirs)}
                engine = {"infer": mine_engine, "vllm": theirs_engine}
                level_samples = samples.setdefault(level, {"infer": {}, "vllm": {}})
                for tool, found in pair.items():
                    for key, values in found.items():
                        level_samples[tool].setdefault(key, []).extend(values)
                row = {
                    "round": round_index,
                    "concurrency": level,
                    "range_ratio": float(ratio),
                    "first": order[0],
                    **{
                        f"{tool}_{key}_median_ms": median(found[key])
                        for tool, found in pair.items()
                        for key in ("ttft", "tpot")
                    },
                    **{
                        f"{tool}_{key}_vs_engine": vs_engine(found[key], engine[tool].get(key))
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
            both = round(a / b, 3) if a and b else None
            entry[key] = {
                "infer_median_ms": a,
                "vllm_median_ms": b,
                "ratio": both,
                "agree": both is not None and abs(both - 1) <= AGREE,
                "infer_round_spread": spread([r[f"infer_{key}_median_ms"] for r in mine_rounds]),
                "vllm_round_spread": spread([r[f"vllm_{key}_median_ms"] for r in mine_rounds]),
                "infer_vs_engine": median_of([r[f"infer_{key}_vs_engine"] for r in mine_rounds]),
                "vllm_vs_engine": median_of([r[f"vllm_{key}_vs_engine"] for r in mine_rounds]),
                "samples": [len(tools["infer"][key]), len(tools["vllm"][key])],
            }
        comparisons.append(entry)
    summary: dict[str, Any] = {
        "workload": {
            "input_len": args.input_len,
            "output_len": args.output_len,
            "num_prompts": args.num_prompts,
            "rounds": args.rounds,
            "range_ratio_above_one": args.range_ratio,
            "prompts": args.prompts,
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
