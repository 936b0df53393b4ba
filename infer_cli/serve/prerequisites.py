"""What a profile needs on this machine before ``infer serve`` can start it, in words, for the
dry run: what is missing, and whether serve would build it or refuse.
"""

from __future__ import annotations

from infer_cli.config.schema import PULLED_PREFIX, Profile
from infer_cli.errors import EngineNotInstalledError


def prerequisites(
    profile: Profile, *, install: bool = True, device: str | None = None
) -> list[str]:
    """One line per prerequisite, met or not (empty for the simulated engine)."""
    from infer_cli.engine import environment, models
    from infer_cli.serve.plan import detect_device

    if profile.engine.backend == "sim":
        return []
    lines: list[str] = []
    device = device or (
        profile.engine.device if profile.engine.device != "auto" else detect_device()
    )
    managed = profile.engine.vllm == "auto" and device == "cpu"
    if managed:
        if environment.is_ready():
            lines.append("the CPU engine environment is built")
        elif install:
            lines.append("the engine is not installed: serve would build it (about 3 minutes)")
        else:
            lines.append("the engine is not installed: serve --no-install would refuse to start")
    else:
        try:
            found = environment.find_vllm(profile.engine.vllm)
            lines.append(f"vLLM is installed ({found})")
        except EngineNotInstalledError:
            lines.append(
                "vLLM is not installed here: install vllm (and lmcache) or set engine.vllm"
            )
    source = profile.model.source
    if source.startswith(PULLED_PREFIX):
        name = source.removeprefix(PULLED_PREFIX)
        if not models.is_prepared(name):
            verb = "serve would prepare it" if install else "run 'infer pull' first"
            lines.append(f"model {name} is not prepared: {verb}")
    if profile.engine.distributed_executor_backend == "ray":
        lines.append(
            "a running Ray cluster that spans every node: 'ray start --head' here, "
            "'ray start --address=<this node>:6379' on the others (serve does not start Ray)"
        )
    return lines
