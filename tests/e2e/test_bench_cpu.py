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


def test_long_documents_beyond_vllms_cache_come_back_from_lmcache(
    served: Served, tmp_path: Path
) -> None:
    # 8 x 3800 tokens is more than vLLM's 1 GiB KV cache holds (~23k tokens of SmolLM2 in
    # float32) and less than LMCache's 2 GiB: by the query round the first documents are gone
    # from vLLM, and their KV comes back from LMCache (external hits), which the run reports.
    out = tmp_path / "long-doc.json"
    result = CliRunner().invoke(
        app,
        ["bench", "long-doc", "--url", served.url, "--documents", "8", "--document-len", "3800",
         "--question-len", "32", "--output-len", "8", "--repeat-count", "1",
         "--repeat-mode", "tile", "-c", "1", "--timeout", "300", "-o", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr + result.stdout
    print(result.stdout)
    run = json.loads(out.read_text())["runs"][0]
    cache = run["summary"]["cache"]
    assert cache["warm"]["hit_rate"] > 0.5
    assert cache["warm"]["ttft_ms"]["median"] < cache["cold"]["ttft_ms"]["median"] / 2
    engine = run["engine"]
    # at least one document's whole 256-token chunks (14 x 256) came from LMCache
    assert engine["external_prefix_cache_hits"] >= 14 * 256
    assert engine["external_hit_rate"] > 0
    # the engine's own TTFT over the run, next to the measured one
    assert engine["latency_ms"]["ttft"]["requests"] == 16
    measured = run["summary"]["latency_ms"]["ttft"]["mean"]
    assert 0 < engine["latency_ms"]["ttft"]["mean"] <= measured
