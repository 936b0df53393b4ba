"""``infer models`` and ``infer status`` against the simulated engine (behind the proxy, and bare
as a vLLM would be): every figure must be the server's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pexpect
from typer.testing import CliRunner

from infer_cli.cli import app
from infer_cli.client.metrics import Samples
from tests.chat.conftest import SimServers
from tests.helpers import free_port

runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def metrics(url: str) -> Samples:
    return Samples.from_text(httpx.get(f"{url}/metrics", timeout=10, trust_env=False).text)


def test_models_table_and_json(sims: SimServers) -> None:
    table = invoke("models", "--url", sims.fast.url)
    assert table.exit_code == 0, table.output
    header, row = table.stdout.splitlines()[:2]
    assert header.split()[:4] == ["ID", "NAME", "CONTEXT", "PROMPT"]
    assert row.split()[0] == "sim-model" and "8k" in row and "bf16" in row
    assert "/api/v1/models" in table.stderr
    listed = json.loads(invoke("models", "--url", sims.fast.url, "--json").stdout)
    served = httpx.get(f"{sims.fast.url}/api/v1/models", trust_env=False).json()["data"][0]
    (model,) = listed["models"]
    assert model["id"] == served["id"] and model["context_length"] == served["context_length"]
    assert model["name"] == served["name"] and model["quantization"] == served["quantization"]
    assert model["prompt_price"] == float(served["pricing"]["prompt"]) * 1e6
    assert listed["source"].endswith("/api/v1/models")


def test_a_bare_engine_falls_back_to_v1_models_and_chats(bare_sim: str) -> None:
    listed = json.loads(invoke("models", "--url", bare_sim, "--json").stdout)
    assert listed["source"] == f"{bare_sim}/v1/models"
    assert [m["id"] for m in listed["models"]] == ["bare-model"]
    assert listed["models"][0]["context_length"] == 8192  # vLLM's max_model_len
    answer = invoke("chat", "--url", bare_sim + "/v1", "--option", "max_tokens=3", "hi")
    assert answer.exit_code == 0 and 1 <= len(answer.stdout.split()) <= 3  # 3 tokens
    status = json.loads(invoke("status", "--url", bare_sim, "--json").stdout)
    assert status["up"] and status["model"] == "bare-model"
    assert status["requests"] is None  # no proxy metrics: unknown, not zero


def test_status_figures_come_from_the_server(sims: SimServers) -> None:
    url = sims.fast.url
    long_prompt = "the same long shared prefix " * 40
    for _ in range(2):
        asked = invoke("chat", "--url", url, "--option", "max_tokens=2", long_prompt)
        assert asked.exit_code == 0, asked.output
    shown = invoke("status", "--url", url, "--json")
    after = metrics(url)
    status = json.loads(shown.stdout)
    assert shown.exit_code == 0 and status["up"] and status["model"] == "sim-model"
    assert status["engine"] == "ready" and status["uptime"] > 0
    hits = after.total("vllm:prefix_cache_hits_total")
    queries = after.total("vllm:prefix_cache_queries_total")
    assert hits and queries and status["prefix_cache"]["hits"] == hits
    assert status["prefix_cache"]["rate"] == hits / queries > 0
    assert status["kv_cache_usage"] == after.total("vllm:kv_cache_usage_perc")
    assert status["running"] == after.total("vllm:num_requests_running")
    assert status["external_cache"]["queries"] == after.total(
        "vllm:external_prefix_cache_queries_total"
    )
    completions = [
        s
        for s in after.samples("infer_proxy_requests_total")
        if s.labels["route"].endswith("/completions")
    ]
    assert status["requests"] == sum(s.value for s in completions) >= 2
    assert status["prompt_tokens"] == after.total("infer_proxy_prompt_tokens_total")

    human = invoke("status", "--url", url)
    assert human.exit_code == 0
    assert "sim-model" in human.stdout and "prefix cache" in human.stdout
    assert f"{hits / queries:.1%} hit rate" in human.stdout


def test_status_of_an_unreachable_endpoint() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    down = invoke("status", "--url", url)
    assert down.exit_code == 1
    (line,) = down.stderr.strip().splitlines()
    assert f"cannot reach {url}" in line and "infer serve" in line
    as_json = invoke("status", "--url", url, "--json")
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["up"] is False


def test_status_watch_json_lines_until_ctrl_c(sims: SimServers, infer_home: Path) -> None:
    argv = ["status", "--url", sims.fast.url, "--watch", "--json", "--interval", "0.2"]
    process = subprocess.Popen(
        [sys.executable, "-m", "infer_cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "INFER_HOME": str(infer_home)},
    )
    try:
        assert process.stdout is not None
        first, second = json.loads(process.stdout.readline()), json.loads(process.stdout.readline())
        assert first["up"] and second["up"] and second["checked_at"] > first["checked_at"]
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 130 and "Traceback" not in stderr  # stopped with Ctrl-C


def test_status_watch_live_view(sims: SimServers, infer_home: Path) -> None:
    env = {**os.environ, "INFER_HOME": str(infer_home), "TERM": "xterm-256color"}
    child = pexpect.spawn(
        sys.executable,
        ["-m", "infer_cli", "status", "--watch", "-i", "0.3", "--url", sims.fast.url],
        env=env,
        encoding="utf-8",
        dimensions=(30, 120),
        timeout=20,
    )
    try:
        for _ in range(2):
            child.expect_exact("prefix cache")
            child.expect_exact("Ctrl-C to stop")
        child.sendintr()
        child.expect_exact(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 130
