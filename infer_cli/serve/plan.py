"""A profile resolved against this machine: executables, the model, ports, the internal key.

Nothing is started here. On the CPU, what is missing (the engine environment, the model) is built
when asked to. With ``[replicas]`` the plan holds every replica and the router in front of them;
with ``worker=True`` it is the plan of a machine whose engines another machine's router uses.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
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
    api_key: str  # the key every engine here (and every worker) accepts; the proxy sends it
    vllm_port: int  # the port the proxy forwards to (= upstream_port; the router's if any)
    replica_ports: tuple[int, ...] = ()  # each replica's port, in replica order
    router_port: int | None = None  # vllm-router's port, when this run has a router
    router_metrics_port: int | None = None  # its Prometheus port (/metrics)
    worker: bool = False  # --worker: engines only, for another machine's router; no proxy
    worker_urls: tuple[str, ...] = ()  # --worker: the URLs the head's router reaches them by
    picked_ports: tuple[int, ...] = ()
    """Every port this start chose for itself (free loopback ports), e.g. for a dry run's
    placeholders; the profile's fixed ports (proxy, lmcache.port, replicas.worker_port) are not."""

    @property
    def model(self) -> str:
        return self.profile.model.name

    @property
    def upstream_port(self) -> int:
        """Where the proxy forwards on loopback: the router when there is one, else vLLM."""
        return self.vllm_port

    @property
    def replica_names(self) -> list[str]:
        """The engines' command names (``vllm``, or ``vllm-0``, ``vllm-1``, ...; ``sim``)."""
        return [c.name for c in self.commands if c.name in ("vllm", "sim") or _is_replica(c.name)]

    @property
    def worker_line(self) -> str | None:
        """--worker: the TOML line to add to the head's profile (its ``[replicas]`` table)."""
        if not self.worker:
            return None
        urls = ", ".join(f'"{url}"' for url in self.worker_urls)
        return f"workers = [{urls}]"


def _is_replica(name: str) -> bool:
    prefix, _, number = name.partition("-")
    return prefix == "vllm" and number.isdigit()


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


def free_ports(count: int, host: str = launch.LOOPBACK, avoid: Collection[int] = ()) -> list[int]:
    """``count`` different free ports, none in ``avoid`` (each probe stays bound till the end)."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            probe = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
            if port not in avoid:
                ports.append(port)
        return ports


def prepare(
    loaded: LoadedProfile,
    *,
    host: str | None = None,
    port: int | None = None,
    install: bool = True,
    on_step: Callable[[str, str, float], None] | None = None,
    dry_run: bool = False,
    worker: bool = False,
    environ: Mapping[str, str] | None = None,
) -> ServePlan:
    """Resolve executables, the model and ports; on the CPU, build what is missing (``install``).

    ``worker``: the plan of a worker machine (``infer serve --worker``): LMCache and the replicas
    on ``replicas.worker_host`` from ``replicas.worker_port`` up, with the key in
    ``replicas.workers_api_key_env``; no router and no proxy.
    """
    profile = loaded.profile
    environ = os.environ if environ is None else environ
    run_dir = paths.runs_home() / f"{time.strftime('%Y%m%d-%H%M%S')}-{loaded.name}-{os.getpid()}"
    if profile.engine.backend == "sim":
        if worker:
            raise ProfileError(
                f"profile {loaded.name} runs infer's simulated engine, which has no worker mode",
                hint="use a vLLM profile with --worker",
            )
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
        target = _with_replicas(
            profile, target, worker=worker, dry_run=dry_run, environ=environ, name=loaded.name
        )
    has_router = launch.routed(profile, target)
    count = profile.replicas.count if profile.engine.backend != "sim" else 1
    replica_ports = tuple(target.replica_port(i) for i in range(count))
    return ServePlan(
        profile=profile,
        profile_name=loaded.name,
        commands=launch.plan(profile, target),
        run_dir=run_dir,
        host=host if host is not None else profile.proxy.host,
        port=port if port is not None else profile.proxy.port,
        api_key=target.api_key,
        vllm_port=target.router_port if has_router else target.port,
        replica_ports=replica_ports,
        router_port=target.router_port if has_router else None,
        router_metrics_port=target.router_metrics_port if has_router else None,
        worker=worker,
        worker_urls=_advertised(profile, replica_ports) if worker else (),
        picked_ports=_picked(profile, target, replica_ports, has_router, worker),
    )


def _picked(
    profile: Profile,
    target: launch.LaunchTarget,
    replica_ports: tuple[int, ...],
    has_router: bool,
    worker: bool,
) -> tuple[int, ...]:
    ports: list[int] = [] if worker else list(replica_ports)
    if has_router:
        ports += [target.router_port, target.router_metrics_port]
        if profile.replicas.policy == "kv_aware":
            ports += [target.kv_event_port(i) for i in range(len(replica_ports))]
    cache = profile.lmcache
    if cache.mode == "mp" and profile.engine.backend != "sim":
        servers = len(replica_ports) if target.lmcache_servers else 1
        for i in range(servers):
            port, http_port = target.lmcache_ports(i)
            ports += [port] if not cache.port else []
            ports += [http_port] if not cache.http_port else []
    return tuple(dict.fromkeys(ports))


def _with_replicas(
    profile: Profile,
    target: launch.LaunchTarget,
    *,
    worker: bool,
    dry_run: bool,
    environ: Mapping[str, str],
    name: str,
) -> launch.LaunchTarget:
    """Ports, key and router of a run with several replicas, workers, or as a worker."""
    replicas = profile.replicas
    if not replicas.routed and not worker:
        return target
    count = replicas.count
    taken = {target.port, target.lmcache_port, target.lmcache_http_port}
    if worker:
        last = replicas.worker_port + count - 1
        if last > 65535:
            raise ProfileError(
                f"replicas.worker_port {replicas.worker_port} + {count} replicas passes port 65535",
                hint="lower replicas.worker_port",
            )
        ports = list(range(replicas.worker_port, last + 1))
        spare = free_ports(2 * count, avoid={*taken, *ports})
        events = []
    else:
        picked = free_ports(4 * count + 2, avoid=taken)
        ports, events, spare = picked[:count], picked[count : 2 * count], picked[2 * count :]
    servers: tuple[tuple[int, int], ...] = ()
    cache = profile.lmcache
    if cache.mode == "mp" and not cache.shared and count > 1:
        servers = tuple(
            (cache.port + 2 * i if cache.port else spare[2 * i],
             cache.http_port + 2 * i if cache.http_port else spare[2 * i + 1])
            for i in range(count)
        )  # fmt: skip
    router, router_port, metrics_port = "vllm-router", 0, 0
    if not worker:
        router_port, metrics_port = spare[-2], spare[-1]
        router = _executable(
            lambda: _find_router(replicas.router), replicas.router, "vllm-router", dry_run
        )
    api_key = target.api_key
    if worker or replicas.workers:
        api_key = _workers_key(profile, environ, name, worker=worker, dry_run=dry_run)
    return replace(
        target,
        port=ports[0],
        replica_ports=tuple(ports),
        lmcache_servers=servers,
        kv_event_ports=tuple(events),
        router=router,
        router_port=router_port,
        router_metrics_port=metrics_port,
        worker=worker,
        replica_host=replicas.worker_host if worker else launch.LOOPBACK,
        api_key=api_key,
    )


def _find_router(setting: str) -> Path:
    from infer_cli.engine import environment

    return environment.find_router(setting)


def _workers_key(
    profile: Profile, environ: Mapping[str, str], name: str, *, worker: bool, dry_run: bool
) -> str:
    """The key shared by this machine's engines and the workers (the router passes it through)."""
    variable = profile.replicas.workers_api_key_env
    key = environ.get(variable, "").strip()
    if key:
        return key
    if dry_run:
        return f"${variable}"
    why = (
        "--worker serves engines to another machine's router"
        if worker
        else f"profile {name} routes to workers (replicas.workers)"
    )
    raise ProfileError(
        f"{why}, and ${variable} is empty: every engine behind the router must accept one key",
        hint=f"export {variable}=<the same secret on the head and on every worker> "
        "(replicas.workers_api_key_env names the variable)",
    )


def _advertised(profile: Profile, ports: tuple[int, ...]) -> tuple[str, ...]:
    """The URLs another machine reaches this worker's replicas by."""
    replicas = profile.replicas
    host = replicas.advertise_host
    if host is None:
        bound = replicas.worker_host
        host = socket.gethostname() if bound in ("0.0.0.0", "::", "") else bound
    shown = f"[{host}]" if ":" in host else host
    return tuple(f"http://{shown}:{port}" for port in ports)


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
                missing = build.pending_steps()  # empty when there is no venv at all
                raise EngineNotInstalledError(
                    "the CPU engine environment is "
                    + (f"missing: {', '.join(missing)}" if missing else "not built"),
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
    """vLLM's own parser on this profile's command line (``profiles validate --engine``).

    With several replicas, vLLM checks the first one's argv: the others are checked here to
    differ from it only in their ports, so vLLM's verdict holds for each. The router's flags go
    to vllm-router's own parser.
    """
    from infer_cli.engine import validate

    plan = prepare(loaded, install=False, dry_run=True)
    engines = [c for c in plan.commands if c.name != "sim" and c.name in plan.replica_names]
    if not engines:
        raise ProfileError(
            f"profile {loaded.name} runs infer's simulated engine: there is no vLLM command "
            "line to check",
            hint="drop --engine",
        )
    vllm = engines[0]
    for other in engines[1:]:
        if _without_ports(other.argv) != _without_ports(vllm.argv):
            raise ProfileError(
                f"replica {other.name} of profile {loaded.name} differs from {vllm.name} in "
                "more than its ports",
                hint="report this: replicas are meant to be copies",
            )
    executable = Path(vllm.argv[0])
    if not executable.is_absolute():
        from infer_cli.engine import environment

        executable = environment.find_vllm(loaded.profile.engine.vllm)
    model_is_local = Path(vllm.argv[2]).is_dir()
    verdict = validate.validate_vllm_args(executable, vllm.argv[1:], check_model=model_is_local)
    router = next((c for c in plan.commands if c.name == "router"), None)
    if not verdict.ok or router is None:
        return verdict
    found = _find_router(loaded.profile.replicas.router)
    checked = validate.validate_router_args(found, router.argv[1:])
    if not checked.ok:
        return replace(checked, message=f"vllm-router refuses its flags: {checked.message}")
    return replace(
        verdict,
        message=f"{verdict.message}; the same for all {len(engines)} replicas (they differ only "
        f"in ports); vllm-router accepts its flags",
    )


def _without_ports(argv: list[str]) -> list[str]:
    """``argv`` with the replica's port and its cache server's port blanked."""
    import json

    blanked = list(argv)
    for i, item in enumerate(blanked[:-1]):
        if item == "--port":
            blanked[i + 1] = "PORT"
        elif item == "--kv-transfer-config":
            config = json.loads(blanked[i + 1])
            extra = config.get("kv_connector_extra_config", {})
            if "lmcache.mp.port" in extra:
                extra["lmcache.mp.port"] = "PORT"
            blanked[i + 1] = json.dumps(config, sort_keys=True)
    return blanked
