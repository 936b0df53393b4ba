"""``infer bench`` on the real CPU engine (vLLM + LMCache + SmolLM2) behind ``infer serve``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infer_cli.cli import app
from tests.e2e.conftest import Served, serve_cpu


@pytest.fixture(scope="module")
def served(cpu_engine: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_cpu(tmp_path_factory.mktemp("bench")) as running:
        yield running


def test_shared_prefix_hits_the_cache_and_warm_ttft_beats_cold(
    served: Served, tmp_path: Path
) -> None:
    out = tmp_path / "shared-prefix.json"
    result = CliRunner().invoke(
        app,
        ["bench", "shared-prefix", "--url", served.url, "--prefixes", "2", "--suffixes", "4",
         "--prefix-len", "960", "--suffix-len", "40", "--output-len", "8", "-c", "1",
         "--timeout", "120", "-o", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr + result.stdout
    print(result.stdout)
    data = json.loads(out.read_text())
    run = data["runs"][0]
    summary = run["summary"]
    assert summary["requests"] == {"total": 8, "completed": 8, "failed": 0}
    cache = summary["cache"]
    assert cache["hit_rate"] > 0
    assert cache["warm"]["hit_rate"] > 0.5
    assert cache["warm"]["ttft_ms"]["median"] < cache["cold"]["ttft_ms"]["median"]
    engine = run["engine"]
    assert engine is not None and engine["prefix_cache_hits"] > 0
    assert data["server"]["model"] == "smollm2-135m-instruct"
    assert data["server"]["profile"] == "cpu"
    # the proxy forwards /tokenize to vLLM, so the prompts were fitted with SmolLM2's tokenizer
    assert data["lengths"]["exact"] is True
    assert data["lengths"]["source"] == served.url + "/tokenize"
