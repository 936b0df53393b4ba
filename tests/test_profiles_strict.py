"""Profiles are strict in files (a quoted number or a "yes" is an error naming the key and the
file), lenient where text is all there is (environment, --set); ``profiles show --show-origin``
says where each value came from; listings never break a model id at 80 columns.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infer_cli.cli import app
from infer_cli.config import loader

runner = CliRunner()


def write(home: Path, name: str, text: str) -> Path:
    folder = home / "profiles"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("table", "line", "key", "says"),
    [
        ("proxy", 'port = "8080"', "proxy.port", "port = 8080"),
        ("engine", 'enable_prefix_caching = "yes"', "engine.enable_prefix_caching", "true or"),
        ("engine", "gpu_memory_utilization = true", "engine.gpu_memory_utilization", "a number"),
        ("engine", "max_num_seqs = 1.0", "engine.max_num_seqs", "a whole number"),
    ],
)  # fmt: skip
def test_a_wrong_type_in_a_file_is_an_error_naming_key_and_file(
    infer_home: Path, table: str, line: str, key: str, says: str
) -> None:
    path = write(infer_home, "mine", f'extends = "h100"\n[{table}]\n{line}\n')
    result = runner.invoke(app, ["profiles", "validate", "mine"])
    assert result.exit_code == 2
    (error,) = result.stderr.strip().splitlines()
    assert f"'{key}'" in error and str(path) in error and says in error


def test_environment_and_set_may_still_give_text(infer_home: Path) -> None:
    loaded = loader.load(
        "sim",
        overrides=["engine.enable_prefix_caching=yes"],
        environ={"INFER_PROXY__PORT": '"9001"'},
    )
    assert loaded.profile.proxy.port == 9001
    assert loaded.profile.engine.enable_prefix_caching is True


def test_every_bundled_profile_is_strictly_typed() -> None:
    for source in loader.available():
        loader.load(str(source.path), environ={})


def test_show_origin_names_bundled_file_environment_flag_and_default(infer_home: Path) -> None:
    path = write(infer_home, "mine", 'extends = "h100"\n[engine]\nmax_num_seqs = 32\n')
    result = runner.invoke(
        app,
        ["profiles", "show", "mine", "--show-origin", "--json", "-s", "model.context_length=8192"],
        env={"INFER_PROXY__PORT": "9000"},
    )
    assert result.exit_code == 0, result.output
    origins = {row["key"]: (row["value"], row["origin"]) for row in json.loads(result.stdout)}
    assert origins["engine.max_num_seqs"] == (32, f"file {path}")
    assert origins["engine.device"] == ("cuda", "bundled h100.toml")
    assert origins["proxy.port"] == (9000, "environment INFER_PROXY__PORT")
    assert origins["model.context_length"] == (8192, "flag --set model.context_length=8192")
    assert origins["model.revision"] == (None, "default")
    text = runner.invoke(app, ["profiles", "show", "mine", "--show-origin"]).stdout
    assert any(
        line.startswith(f"file {path}") and "engine.max_num_seqs = 32" in line
        for line in text.splitlines()
    )


def test_validate_mentions_engine() -> None:
    result = runner.invoke(app, ["profiles", "validate", "sim"])
    assert result.exit_code == 0 and "--engine" in result.stderr


def test_profiles_list_keeps_model_ids_whole_at_80_columns() -> None:
    result = runner.invoke(app, ["profiles", "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert "meta-llama/llama-3.1-405b-instruct" in result.stdout
    assert "qwen/qwen-2.5-14b-instruct" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
