"""What every deploy target shares: the result, the notes, the images, the profile it ships.

A target turns a profile into files (:class:`Rendered`) and says, in :class:`Notes`, every setting
it could not carry and every choice it made, so nothing a profile says is dropped in silence.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from infer_cli import __version__
from infer_cli.config.loader import LoadedProfile
from infer_cli.config.schema import PULLED_PREFIX, Profile
from infer_cli.engine.environment import LMCACHE_VERSION, VLLM_VERSION
from infer_cli.errors import UsageError

PROFILE_DIR = "/etc/infer"
PROFILE_PATH = f"{PROFILE_DIR}/profile.toml"
DATA_DIR = "/var/lib/infer"
"""Where the containers keep the profile and infer's home (``INFER_HOME``)."""


@dataclass(frozen=True)
class Images:
    """Container images; each one settable from the command line."""

    vllm: str = f"vllm/vllm-openai:v{VLLM_VERSION}"
    """vLLM's official OpenAI server image (CUDA)."""
    lmcache: str = "lmcache/vllm-openai:latest"
    """vLLM with LMCache inside, the image the production-stack chart expects for LMCache."""
    infer: str = f"infer:{__version__}"
    """infer itself (the proxy), built from the docker target's Dockerfile."""
    python: str = "python:3.12-slim"
    """The base for profiles that need no CUDA image (the CPU engine, the simulator)."""


LMCACHE_REQUIREMENT = f"lmcache=={LMCACHE_VERSION}"


@dataclass
class Notes:
    """What a target says on stderr: settings it cannot carry, and choices it made."""

    dropped: list[str] = field(default_factory=list)
    chosen: list[str] = field(default_factory=list)

    def cannot(self, setting: str, why: str) -> None:
        self.dropped.append(f"{setting}: {why}")

    def chose(self, what: str) -> None:
        self.chosen.append(what)


@dataclass(frozen=True)
class Artifact:
    name: str  # the file's name when written into a folder
    text: str


@dataclass(frozen=True)
class Rendered:
    files: list[Artifact]
    notes: Notes
    next_steps: list[str]


def shipped_profile(loaded: LoadedProfile, notes: Notes, *, target: str) -> str:
    """The effective profile as TOML for a container: what differs from the defaults, no keys."""
    import tomli_w

    proxy = loaded.profile.proxy
    updates: dict[str, object] = {}
    if proxy.api_keys:
        updates["api_keys"] = []
        notes.cannot(
            "proxy.api_keys", f"keys are not written into the {target}; give them in INFER_API_KEYS"
        )
    if proxy.api_keys_file:
        updates["api_keys_file"] = None
        notes.cannot(
            "proxy.api_keys_file",
            f"{proxy.api_keys_file} is a file on this machine; give the keys in INFER_API_KEYS",
        )
    profile = loaded.profile.model_copy(update={"proxy": proxy.model_copy(update=updates)})
    data = profile.model_dump(mode="json", exclude_defaults=True, exclude_none=True)
    data.pop("extends", None)
    data["model"] = {"source": profile.model.source, **data.get("model", {})}
    chain = " < ".join(source.name for source in loaded.chain)
    header = (
        f"# profile '{loaded.name}' ({chain}) as infer {__version__} read it, for the {target};\n"
        "# settings left out have their defaults. Keys are not here: INFER_API_KEYS gives them.\n"
    )
    return header + tomli_w.dumps(data)


def served_model(profile: Profile, notes: Notes) -> str:
    """What the engine loads: a Hugging Face id or a path. ``infer:NAME`` becomes its Hub id."""
    source = profile.model.source
    if not source.startswith(PULLED_PREFIX):
        return source
    from infer_cli.engine.models import KNOWN_MODELS

    known = KNOWN_MODELS.get(source.removeprefix(PULLED_PREFIX))
    if known is None:
        raise inexpressible(f"model.source '{source}' names no model infer knows how to prepare")
    notes.chose(
        f"model.source '{source}' is prepared by 'infer pull' on a machine; the cluster loads "
        f"the same model from the Hub ({known.hugging_face_id})"
    )
    return known.hugging_face_id


def inexpressible(why: str) -> UsageError:
    """The one-line error for a profile a target cannot carry at all."""
    return UsageError(f"cannot deploy this profile: {why}")


def k8s_name(text: str) -> str:
    """A DNS-1123 label: lowercase letters, digits and '-', at most 40 characters here."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:40].strip("-")
    return name or "model"


def gibibytes(value: float) -> str:
    """``87.5`` -> ``"88Gi"`` (rounded up: a request below the need fails later)."""
    return f"{math.ceil(value)}Gi"


def number(value: float | int) -> str:
    """``2.0`` -> ``2``, ``0.92`` -> ``0.92``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def source_checkout() -> Path | None:
    """The infer source folder this code runs from, when it is a checkout (not a wheel)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "infer_cli").is_dir() else None
