"""``infer deploy docker``: a Dockerfile and a ``compose.yaml`` for one machine.

The image is vLLM's official OpenAI server image with LMCache and infer installed, serving the
profile with ``infer serve`` (CPU and simulator profiles start from a slim Python image: infer
builds the CPU engine itself on first start). The same Dockerfile, with ``BASE_IMAGE`` set to a
slim Python image and ``ENGINE_PACKAGES`` empty, builds the proxy-only image the Helm target uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from infer_cli import __version__
from infer_cli.config.loader import LoadedProfile
from infer_cli.config.schema import Profile
from infer_cli.deploy.common import (
    DATA_DIR,
    LMCACHE_REQUIREMENT,
    PROFILE_PATH,
    Artifact,
    Images,
    Notes,
    Rendered,
    k8s_name,
    shipped_profile,
)
from infer_cli.deploy.yamltext import Commented, dump

SOURCE_CONTEXT = "infer-src"
CPU_INSTALL_SECONDS = 600  # infer builds the CPU engine on first start (~4 min here)
_SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE")


@dataclass(frozen=True)
class DockerOptions:
    source: str  # infer's source folder (a checkout), the build's 'infer-src' context
    images: Images = field(default_factory=Images)
    folder: str = "."  # the name the next-step line uses


def serve_command(profile: Profile) -> list[str]:
    return ["infer", "serve", "--profile", PROFILE_PATH, "--host", "0.0.0.0",
            "--port", str(_port(profile))]  # fmt: skip


def base_image(profile: Profile, images: Images) -> tuple[str, str]:
    """(BASE_IMAGE, ENGINE_PACKAGES) for the profile."""
    if profile.engine.backend == "sim" or profile.engine.device == "cpu":
        return images.python, ""
    return images.vllm, LMCACHE_REQUIREMENT if profile.lmcache.mode != "off" else ""


def dockerfile(loaded: LoadedProfile, images: Images) -> str:
    profile = loaded.profile
    base, packages = base_image(profile, images)
    cmd = ", ".join(f'"{part}"' for part in serve_command(profile))
    copies = "\n".join(
        f"COPY --from={SOURCE_CONTEXT} {name} /opt/infer-src/{name}" for name in _SOURCE_FILES
    )
    return f"""# syntax=docker/dockerfile:1
# infer deploy docker -p {loaded.name}: one image that runs 'infer serve' on this profile.
# Build context: this folder (profile.toml). infer's own source comes from the named
# context '{SOURCE_CONTEXT}' (compose.yaml sets it; by hand:
#   docker build --build-context {SOURCE_CONTEXT}=PATH .).
# The proxy-only image for 'infer deploy helm' is this file with a slim base and no engine:
#   docker build --build-context {SOURCE_CONTEXT}=PATH --build-arg BASE_IMAGE={images.python} \\
#     --build-arg ENGINE_PACKAGES= -t {images.infer} .
ARG BASE_IMAGE={base}
FROM ${{BASE_IMAGE}}
ARG ENGINE_PACKAGES="{packages}"
{copies}
COPY --from={SOURCE_CONTEXT} infer_cli /opt/infer-src/infer_cli
COPY --from={SOURCE_CONTEXT} profiles /opt/infer-src/profiles
RUN python3 -m pip install --no-cache-dir /opt/infer-src ${{ENGINE_PACKAGES}}
COPY profile.toml {PROFILE_PATH}
ENV INFER_HOME={DATA_DIR} HF_HOME={DATA_DIR}/huggingface NO_COLOR=1 PYTHONUNBUFFERED=1
VOLUME {DATA_DIR}
EXPOSE {_port(profile)}
ENTRYPOINT []
CMD [{cmd}]
"""


def compose(loaded: LoadedProfile, options: DockerOptions, notes: Notes) -> dict[str, Any]:
    profile = loaded.profile
    base, packages = base_image(profile, options.images)
    port = _port(profile)
    service: dict[str, Any] = {
        "build": {
            "context": ".",
            "additional_contexts": {SOURCE_CONTEXT: options.source},
            "args": {"BASE_IMAGE": base, "ENGINE_PACKAGES": packages},
        },
        "image": f"infer-{k8s_name(loaded.name)}:{__version__}",
        "restart": "unless-stopped",
        "ports": [f"{port}:{port}"],
        "environment": Commented(
            "client keys (comma-separated) from the shell or an .env file beside this one",
            {
                "INFER_API_KEYS": "${INFER_API_KEYS:?set INFER_API_KEYS to the client keys}",
                "HF_TOKEN": "${HF_TOKEN:-}",
            },
        ),
        "volumes": Commented(
            "the profile (edit, then restart) and infer's home: model cache, logs, engine",
            [f"./profile.toml:{PROFILE_PATH}:ro", f"infer-data:{DATA_DIR}"],
        ),
        "healthcheck": Commented(
            f"/health is 200 once the engine is ready (engine.startup_timeout "
            f"{profile.engine.startup_timeout:g} s{_build_note(profile)})",
            _healthcheck(profile, port),
        ),
        "stop_grace_period": f"{_stop_seconds(profile)}s",
    }
    if profile.engine.backend != "sim":
        service["ipc"] = "host"  # vLLM's workers and LMCache share memory through /dev/shm
        if not _cpu(profile):
            service["deploy"] = Commented(
                f"engine.tensor_parallel_size x pipeline_parallel_size = {_gpus(profile)} GPU(s)",
                {"resources": {"reservations": {"devices": [
                    {"driver": "nvidia", "count": _gpus(profile), "capabilities": ["gpu"]}
                ]}}},
            )  # fmt: skip
    if profile.engine.distributed_executor_backend == "ray":
        notes.cannot(
            "engine.distributed_executor_backend",
            "'ray' spans machines; this container is one machine (start Ray on the others, or "
            "use 'infer deploy helm')",
        )
    return {"name": "infer", "services": {"infer": service}, "volumes": {"infer-data": {}}}


def render(loaded: LoadedProfile, options: DockerOptions) -> Rendered:
    notes = Notes()
    text = dump(
        compose(loaded, options, notes),
        header=f"infer deploy docker -p {loaded.name}: one machine (docker compose up -d)",
    )
    files = [
        Artifact("Dockerfile", dockerfile(loaded, options.images)),
        Artifact("compose.yaml", text),
        Artifact("profile.toml", shipped_profile(loaded, notes, target="image")),
    ]
    where = "" if options.folder in ("", ".") else f"cd {options.folder} && "
    steps = [
        f"echo 'INFER_API_KEYS=KEY1,KEY2' >> {options.folder}/.env",
        f"{where}docker compose up -d",
    ]
    return Rendered(files=files, notes=notes, next_steps=steps)


def _healthcheck(profile: Profile, port: int) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/health"
    probe = f"import urllib.request; urllib.request.urlopen('{url}', timeout=5)"
    start = profile.engine.startup_timeout + (CPU_INSTALL_SECONDS if _cpu(profile) else 0)
    return {
        "test": ["CMD", "python3", "-c", probe],
        "interval": "15s",
        "timeout": "10s",
        "retries": 3,
        "start_period": f"{math.ceil(start)}s",
    }


def _build_note(profile: Profile) -> str:
    return " + the CPU engine's build on first start" if _cpu(profile) else ""


def _stop_seconds(profile: Profile) -> int:
    return math.ceil(profile.engine.stop_timeout + profile.lmcache.stop_timeout + 10)


def _gpus(profile: Profile) -> int:
    return profile.engine.tensor_parallel_size * profile.engine.pipeline_parallel_size


def _cpu(profile: Profile) -> bool:
    return profile.engine.backend == "vllm" and profile.engine.device == "cpu"


def _port(profile: Profile) -> int:
    return profile.proxy.port or 8080
