"""``infer serve``: the one package that knows both the engine and the proxy.

``plan`` resolves a profile into a launch, ``run`` serves it (engine started and supervised behind
the proxy), ``front`` serves the proxy alone in front of an engine that is already running.
"""

from __future__ import annotations

from infer_cli.serve.plan import (
    ServePlan,
    default_profile,
    detect_device,
    prepare,
    resolve_model,
    validate_with_engine,
)
from infer_cli.serve.run import ServeReporter, run

__all__ = [
    "ServePlan",
    "ServeReporter",
    "default_profile",
    "detect_device",
    "prepare",
    "resolve_model",
    "run",
    "validate_with_engine",
]
