"""``infer chat``, ``infer models`` and ``infer status`` against the real CPU engine (vLLM +
LMCache + SmolLM2-135M-Instruct), one ``infer serve`` for the whole module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from infer_cli.cli import app
from tests.e2e.conftest import MODEL, Served, serve_cpu

runner = CliRunner()


@pytest.fixture(scope="module")
def served(cpu_engine: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_cpu(tmp_path_factory.mktemp("chat")) as served:
        yield served


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_a_question_is_answered_sensibly(served: Served) -> None:
    result = invoke(
        "chat",
        "--url",
        served.url,
        "--option",
        "temperature=0",
        "--option",
        "max_tokens=40",
        "What is the capital of France?",
    )
    assert result.exit_code == 0, result.output
    assert "Paris" in result.stdout


def test_models_lists_the_served_model(served: Served) -> None:
    listed = json.loads(invoke("models", "--url", served.url, "--json").stdout)
    (model,) = listed["models"]
    assert model["id"] == MODEL and model["context_length"]
    table = invoke("models", "--url", served.url)
    assert table.exit_code == 0 and MODEL in table.stdout


def test_status_shows_the_model_and_a_prefix_cache_hit_rate(served: Served) -> None:
    prompt = "Here is a long note about caching. " * 60 + "Summarise it in one word."
    for _ in range(2):
        asked = invoke(
            "chat", "--url", served.url, "--option", "max_tokens=1", "--no-stream", prompt
        )
        assert asked.exit_code == 0, asked.output
    status = json.loads(invoke("status", "--url", served.url, "--json").stdout)
    assert status["up"] and status["model"] == MODEL and status["engine"] == "ready"
    assert status["engine_metrics"], "the engine's vllm:* metrics come through the proxy"
    assert status["prefix_cache"]["hits"] > 0 and 0 < status["prefix_cache"]["rate"] < 1
    assert status["requests"] >= 3
    human = invoke("status", "--url", served.url)
    assert human.exit_code == 0
    assert MODEL in human.stdout and "hit rate so far" in human.stdout
