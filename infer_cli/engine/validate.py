"""vLLM's own verdict on a ``vllm serve`` command line, before a model load that can take minutes.

infer never imports vLLM: the check runs ``_check_vllm_args.py`` with the Python that the ``vllm``
executable runs with (found next to it in a venv, or from its shebang). It takes 7-20 s, mostly
``import vllm``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infer_cli.errors import EngineError

CHECKER = Path(__file__).with_name("_check_vllm_args.py")
ROUTER_CHECKER = Path(__file__).with_name("_check_router_args.py")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str
    stage: str = ""  # parse | validate | config: how far the check got
    seconds: float = 0.0


def engine_python(vllm_executable: Path) -> Path:
    """The Python that runs ``vllm``: the venv's own when it sits in one, else the shebang's."""
    script = Path(vllm_executable)
    if script.is_symlink():
        script = script.resolve()  # e.g. ~/.local/bin/vllm -> some-venv/bin/vllm
    folder = script.parent
    if (folder.parent / "pyvenv.cfg").is_file():
        for name in ("python", "python3"):
            if (folder / name).exists():
                return folder / name
    from_shebang = _shebang_python(script)
    if from_shebang is not None:
        return from_shebang
    for name in ("python3", "python"):
        if (folder / name).exists():
            return folder / name
    raise EngineError(
        f"cannot tell which Python runs {vllm_executable}: "
        "no python next to it and no usable shebang",
        hint="set engine.vllm to the vllm script of a Python environment",
    )


_TRAMPOLINE = re.compile(r"^'''exec' (\"[^\"]+\"|\S+) \"\$0\"", re.MULTILINE)


def _shebang_python(script: Path) -> Path | None:
    try:
        with script.open("rb") as handle:
            head = handle.read(1024).decode(errors="replace")
    except OSError:
        return None
    if not head.startswith("#!"):
        return None
    first = head.splitlines()[0][2:].strip()
    trampoline = _TRAMPOLINE.search(head)  # pip's form for interpreter paths too long for "#!"
    if first in ("/bin/sh", "/usr/bin/env sh") and trampoline:
        return Path(trampoline.group(1).strip('"'))
    try:
        parts = shlex.split(first)
    except ValueError:
        return None
    if parts and Path(parts[0]).name == "env":
        names = [part for part in parts[1:] if not part.startswith("-")]
        found = shutil.which(names[0]) if names else None
        return Path(found) if found else None
    if parts and "python" in Path(parts[0]).name and Path(parts[0]).exists():
        return Path(parts[0])
    return None


def _check_env(vllm_executable: Path) -> dict[str, str]:
    from infer_cli.engine import environment

    env = {
        **os.environ,
        "VLLM_CONFIGURE_LOGGING": "0",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    try:
        own = vllm_executable.resolve().parent == environment.bin_dir().resolve()
    except OSError:
        own = False
    if own:
        env.update(environment.engine_env())
    return env


def validate_vllm_args(
    vllm_executable: Path, argv: Sequence[str], check_model: bool, *, timeout: float = 300.0
) -> Verdict:
    """Run vLLM's parser and checks on ``argv`` (``[serve] MODEL --flag ...``).

    ``check_model`` also builds the engine config, which reads the model's config.json (a local
    folder, or the hub). Raises :class:`EngineError` when the check itself cannot run.
    """
    python = engine_python(Path(vllm_executable))
    command = [str(python), "-I", str(CHECKER)]
    if check_model:
        command.append("--check-model")
    command += ["--", *argv]
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=_check_env(Path(vllm_executable)),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise EngineError(
            f"vLLM's argument check with {python} did not finish in {timeout:.0f} s",
            hint="try again when the machine is less busy",
        ) from None
    except OSError as error:
        raise EngineError(
            f"cannot run vLLM's argument check with {python}: {error.strerror or error}",
            hint="check engine.vllm in the profile",
        ) from None
    verdict = _last_json(result.stdout)
    if result.returncode in (0, 1) and verdict is not None:
        return Verdict(
            ok=bool(verdict.get("ok")) and result.returncode == 0,
            message=str(verdict.get("message", "")),
            stage=str(verdict.get("stage", "")),
            seconds=float(verdict.get("seconds", 0.0)),
        )
    reason = (verdict or {}).get("message") or _last_line(result.stderr) or "no verdict"
    raise EngineError(
        f"vLLM's argument check failed to run with {python} (exit {result.returncode}): {reason}",
        hint="check that vLLM imports in that environment ('vllm --version')",
    )


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict) and "ok" in data:
                return data
    return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def validate_router_args(
    router_executable: Path, argv: Sequence[str], *, timeout: float = 60.0
) -> Verdict:
    """Run vllm-router's own parser and rules on ``argv`` (the flags after the executable)."""
    python = engine_python(Path(router_executable))
    command = [str(python), "-I", str(ROUTER_CHECKER), "--", *argv]
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise EngineError(
            f"vllm-router's argument check with {python} did not finish in {timeout:.0f} s",
            hint="try again when the machine is less busy",
        ) from None
    except OSError as error:
        raise EngineError(
            f"cannot run vllm-router's argument check with {python}: {error.strerror or error}",
            hint="check replicas.router in the profile",
        ) from None
    verdict = _last_json(result.stdout)
    if result.returncode in (0, 1) and verdict is not None:
        return Verdict(
            ok=bool(verdict.get("ok")) and result.returncode == 0,
            message=str(verdict.get("message", "")),
            stage=str(verdict.get("stage", "")),
        )
    reason = (verdict or {}).get("message") or _last_line(result.stderr) or "no verdict"
    raise EngineError(
        f"vllm-router's argument check failed to run with {python} (exit {result.returncode}): "
        f"{reason}",
        hint="check that vllm-router runs in that environment ('vllm-router --help')",
    )
