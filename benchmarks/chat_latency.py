"""How quickly ``infer chat`` shows an answer, and how quickly the CLI starts.

1. Time from Enter to the first rendered token: ``infer chat`` runs in a pseudo-terminal (as a
   user sees it: prompt_toolkit, the streaming Markdown view) against ``infer serve --profile sim``;
   the clock starts when Enter is sent and stops when the answer's first word appears on the
   terminal. The same request (same messages, same seed, so the same first word) sent with a bare
   httpx client gives the reference: time to the first content chunk. Runs alternate between the
   two (and ``--raw``); medians, p90s and the ratio are reported.
2. Start-up time of ``infer --help`` and ``infer chat --help`` (with ``python -c pass`` as the
   floor and ``infer serve --help`` for comparison): medians of wall-clock and CPU time.

    .venv/bin/python benchmarks/chat_latency.py --runs 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pexpect

ROOT = Path(__file__).resolve().parent.parent
INFER = [sys.executable, "-m", "infer_cli"]
QUESTION = "ping from the latency benchmark"
MAX_TOKENS = 16
SEED = 7


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_sim(home: Path, ms_per_token: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    setting = f"sim.ms_per_output_token={ms_per_token}"
    process = subprocess.Popen(
        [*INFER, "serve", "--profile", "sim", "--port", str(port), "--set", setting],
        env={**os.environ, "INFER_HOME": str(home), "NO_COLOR": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1, trust_env=False).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    process.kill()
    raise SystemExit("infer serve --profile sim did not become ready")


def request_body() -> dict[str, Any]:
    """What ``infer chat -o max_tokens=.. -o seed=..`` sends for a first question."""
    return {
        "model": "sim-model",
        "messages": [{"role": "user", "content": QUESTION}],
        "stream_options": {"include_usage": True},
        "max_tokens": MAX_TOKENS,
        "seed": SEED,
        "stream": True,
    }


async def bare_ttft(client: httpx.AsyncClient, url: str) -> tuple[float, str]:
    """Seconds to the first content chunk, and its text."""
    started = time.perf_counter()
    first: tuple[float, str] | None = None
    async with client.stream("POST", f"{url}/v1/chat/completions", json=request_body()) as answer:
        async for line in answer.aiter_lines():  # read to the end, as the chat does
            if first is not None or not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    first = (time.perf_counter() - started, text)
    if first is None:
        raise RuntimeError("no content in the answer")
    return first


class ChatTerminal:
    """``infer chat`` in a pty, asked the same first question again and again (``/clear``)."""

    def __init__(self, url: str, home: Path, *extra: str):
        env = {
            **os.environ,
            "INFER_HOME": str(home),
            "PROMPT_TOOLKIT_NO_CPR": "1",
            "TERM": "xterm-256color",
        }
        env.pop("NO_COLOR", None)
        argv = ["chat", "--url", url, "-o", f"max_tokens={MAX_TOKENS}", "-o", f"seed={SEED}"]
        self.child = pexpect.spawn(
            INFER[0],
            [*INFER[1:], *argv, *extra],
            env=env,
            encoding="utf-8",
            dimensions=(40, 120),
            timeout=30,
            cwd=str(ROOT),
        )
        self.child.delaybeforesend = None
        self.child.expect_exact(">>>")

    def enter_to_first_token(self, first: str) -> float:
        child = self.child
        child.send("/clear\r")
        child.expect_exact("conversation cleared")
        child.expect_exact(">>>")
        child.send(QUESTION)
        time.sleep(0.05)  # let the prompt draw what was typed
        child.expect(r".*", timeout=0.1)  # drop what is pending
        started = time.perf_counter()
        child.send("\r")
        child.expect_exact(first)
        elapsed = time.perf_counter() - started
        child.expect_exact("s to first token")
        child.expect_exact(">>>")
        return elapsed

    def close(self) -> None:
        self.child.sendeof()
        self.child.expect(pexpect.EOF)
        self.child.close()


def startup(argv: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU (user + system) seconds of each run. On a shared, busy machine the CPU
    time is the steadier figure: it does not count the time spent waiting for a core.
    """
    import resource

    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"median_ms": statistics.median(values) * 1000, "p90_ms": p90 * 1000}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--startup-runs", type=int, default=10)
    parser.add_argument("--ms-per-token", type=float, default=1.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        process, url = start_sim(home, args.ms_per_token)
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
                _, first = await bare_ttft(client, url)  # warm up, and learn the first word
                markdown = ChatTerminal(url, home)
                raw = ChatTerminal(url, home, "--raw")
                for terminal in (markdown, raw):
                    terminal.enter_to_first_token(first)  # warm up
                bare_times, markdown_times, raw_times = [], [], []
                for _ in range(args.runs):
                    bare_times.append((await bare_ttft(client, url))[0])
                    markdown_times.append(markdown.enter_to_first_token(first))
                    raw_times.append(raw.enter_to_first_token(first))
                markdown.close()
                raw.close()
        finally:
            process.terminate()
            process.wait(timeout=30)

    infer_exe = str(Path(sys.executable).parent / "infer")
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "infer --help": [infer_exe, "--help"],
        "infer chat --help": [infer_exe, "chat", "--help"],
        "infer serve --help": [infer_exe, "serve", "--help"],
    }
    started_up = {}
    for name, argv in commands.items():
        walls, cpus = startup(argv, args.startup_runs)
        started_up[name] = {
            "wall_median_ms": statistics.median(walls) * 1000,
            "cpu_median_ms": statistics.median(cpus) * 1000,
        }

    bare, rendered, plain = summary(bare_times), summary(markdown_times), summary(raw_times)
    report = {
        "runs": args.runs,
        "sim_ms_per_output_token": args.ms_per_token,
        "first_token": {
            "bare_httpx": bare,
            "infer_chat_markdown": rendered,
            "infer_chat_raw": plain,
            "ratio_markdown_to_bare": rendered["median_ms"] / bare["median_ms"],
            "ratio_raw_to_bare": plain["median_ms"] / bare["median_ms"],
            "added_ms_markdown": rendered["median_ms"] - bare["median_ms"],
        },
        "startup": started_up,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
