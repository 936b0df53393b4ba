"""A profile resolved against this machine: executables, the model, ports, the internal key.

Nothing is started here. On the CPU, what is missing (the engine environment, the model) is built
when asked to.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from infer_cli import paths
from infer_cli.config.loader import LoadedProfile
from infer_cli.config.schema import PULLED_PREFIX, Profile
from infer_cli.engine import launch
from infer_cli.engine.process import Command
from infer_cli.errors import EngineNotInstalledError, ModelError, ProfileError

if TYPE_CHECKING:
    from infer_cli.engine.build import Step
    from infer_cli.engine.validate import Verdict


@dataclass(frozen=True)
class ServePlan:
    """A profile resolved against this machine: everything needed to start, nothing started."""

    profile: Profile
    profile_name: str
    commands: list[Command]
    run_dir: Path
    host: str
    port: int
    api_key: str
    vllm_port: int

    @property
    def model(self) -> str:
        return self.profile.model.name


def detect_device() -> str:
    """``cuda`` when an NVIDIA GPU is visible, else ``cpu``."""
    if Path("/dev/nvidia0").exists() or Path("/dev/nvidiactl").exists():
        return "cuda"
    return "cuda" if shutil.which("nvidia-smi") and Path("/proc/driver/nvidia").exists() else "cpu"


def default_profile() -> str:
    return "cpu" if detect_device() == "cpu" else "h100"


def free_port(host: str = launch.LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def prepare(
    loaded: LoadedProfile,
    *,
    host: str | None = None,
    port: int | None = None,
    install: bool = True,
    on_step: Callable[[str, str, float], None] | None = None,
    dry_run: bool = False,
) -> ServePlan:
    """Resolve executables, the model and ports; on the CPU, build what is missing (``install``)."""
    profile = loaded.profile
    run_dir = paths.runs_home() / f"{time.strftime('%Y%m%d-%H%M%S')}-{loaded.name}-{os.getpid()}"
    if profile.engine.backend == "sim":
        target = launch.LaunchTarget(
            vllm="vllm",
            model=profile.model.name,
            port=free_port(),
            api_key=secrets.token_urlsafe(24),
            run_dir=run_dir,
            python=sys.executable,
        )
    else:
        target = _engine_target(profile, run_dir, install=install, on_step=on_step, dry_run=dry_run)
    return ServePlan(
        profile=profile,
        profile_name=loaded.name,
        commands=launch.plan(profile, target),
        run_dir=run_dir,
        host=host if host is not None else profile.proxy.host,
        port=port if port is not None else profile.proxy.port,
        api_key=target.api_key,
        vllm_port=target.port,
    )


def _engine_target(
    profile: Profile,
    run_dir: Path,
    *,
    install: bool,
    on_step: Callable[[str, str, float], None] | None,
    dry_run: bool,
) -> launch.LaunchTarget:
    from infer_cli.engine import build, environment

    device = profile.engine.device if profile.engine.device != "auto" else detect_device()
    managed = profile.engine.vllm == "auto" and device == "cpu"
    if managed and not environment.is_ready():
        if not install or dry_run:
            if not dry_run:
                raise EngineNotInstalledError(
                    "the CPU engine environment is not built",
                    hint="run 'infer engine install' or drop --no-install",
                )
        else:
            build.install(on_step=_steps(on_step), with_lmcache=profile.lmcache.mode != "off")
    vllm = _executable(
        lambda: environment.find_vllm(profile.engine.vllm), profile.engine.vllm, "vllm", dry_run
    )
    lmcache = "lmcache"
    if profile.lmcache.mode == "mp":
        lmcache = _executable(
            lambda: environment.find_lmcache(profile.lmcache.lmcache, Path(vllm)),
            profile.lmcache.lmcache,
            "lmcache",
            dry_run,
        )
    model, offline = resolve_model(profile, install=install and not dry_run, on_step=on_step)
    return launch.LaunchTarget(
        vllm=vllm,
        model=model,
        port=free_port(),
        api_key=secrets.token_urlsafe(24),
        device=device,
        lmcache=lmcache,
        lmcache_port=profile.lmcache.port or free_port(),
        lmcache_http_port=profile.lmcache.http_port or free_port(),
        run_dir=run_dir,
        env=environment.engine_env() if managed else {},
        offline=offline,
    )


def resolve_model(
    profile: Profile, *, install: bool, on_step: Callable[[str, str, float], None] | None = None
) -> tuple[str, bool]:
    """vLLM's model argument, and whether it is a local folder (then the hub is never asked)."""
    from infer_cli.engine import models

    source = profile.model.source
    if source.startswith(PULLED_PREFIX):
        name = source.removeprefix(PULLED_PREFIX)
        folder = models.model_dir(name)
        if not models.is_prepared(name):
            if not install:
                return str(folder), True
            models.prepare(name, on_step=_steps(on_step))
        return str(folder), True
    if source.startswith(("/", "./", "../", "~")):
        folder = Path(source).expanduser()
        if not (folder / "config.json").is_file():
            raise ModelError(
                f"model folder {folder} does not exist or has no config.json",
                hint="fix model.source in the profile (a folder, a Hugging Face id, or infer:NAME)",
            )
        return str(folder.resolve()), True
    return source, False


def _executable(find: Callable[[], Path], setting: str, name: str, dry_run: bool) -> str:
    try:
        return str(find())
    except EngineNotInstalledError:
        if dry_run:  # a dry run still shows the command, with what the profile names
            return setting if setting not in ("", "auto") else name
        raise


def _steps(on_step: Callable[[str, str, float], None] | None) -> Callable[[Step], None]:
    def forward(step: Step) -> None:
        if on_step is not None:
            on_step(step.name, step.state, step.elapsed)

    return forward


def validate_with_engine(loaded: LoadedProfile) -> Verdict:
    """vLLM's own parser on this profile's command line (``profiles validate --engine``)."""
    from infer_cli.engine import validate

    plan = prepare(loaded, install=False, dry_run=True)
    vllm = next((item for item in plan.commands if item.name == "vllm"), None)
    if vllm is None:
        raise ProfileError(
            f"profile {loaded.name} runs infer's simulated engine: there is no vLLM command "
            "line to check",
            hint="drop --engine",
        )
    executable = Path(vllm.argv[0])
    if not executable.is_absolute():
        from infer_cli.engine import environment

        executable = environment.find_vllm(loaded.profile.engine.vllm)
    model_is_local = Path(vllm.argv[2]).is_dir()
    return validate.validate_vllm_args(executable, vllm.argv[1:], check_model=model_is_local)
