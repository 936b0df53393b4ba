"""The simulated engine: an OpenAI-compatible stand-in for vLLM (tests, load tests, a first try).

It imitates what infer relies on (routes, stream shapes, usage with cached tokens, prefix caching,
metrics, timing, concurrency limits, failures) and says it is a simulator wherever it shows a model.
``create_app(settings)`` gives the ASGI app; ``running(settings)`` serves it in the caller's event
loop; ``python -m infer_cli.sim`` runs it as a process, like ``vllm serve``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infer_cli.config.sim import SimSettings

if TYPE_CHECKING:
    from infer_cli.sim.app import create_app
    from infer_cli.sim.server import running

__all__ = ["SimSettings", "create_app", "running"]


def __getattr__(name: str) -> Any:
    # the app and server (FastAPI, uvicorn) load on use, so importing SimSettings stays cheap
    if name == "create_app":
        from infer_cli.sim.app import create_app

        return create_app
    if name == "running":
        from infer_cli.sim.server import running

        return running
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
