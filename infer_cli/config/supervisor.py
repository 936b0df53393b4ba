"""``[supervisor]``: restarts of engine processes that die or stop answering."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from infer_cli.config.strict import Strict


class SupervisorSection(Strict):
    """What ``infer serve`` does when an engine process dies or stops answering its health check."""

    on_failure: Literal["restart", "stop"] = Field(
        default="restart",
        description="'restart': restart the dead process (and what depends on it) with backoff; "
        "'stop': stop everything and exit non-zero (leave restarts to systemd or Kubernetes)",
    )
    max_restarts: int = Field(
        default=5, ge=0, description="Restarts allowed within restart_window; one more: give up"
    )
    restart_window: float = Field(
        default=600.0, gt=0, description="Seconds over which max_restarts is counted"
    )
    backoff: float = Field(
        default=1.0, ge=0, description="Seconds before the first restart; doubled for each next"
    )
    backoff_max: float = Field(default=60.0, ge=0, description="Longest wait before a restart")
    health_interval: float = Field(
        default=5.0, gt=0, description="Seconds between health checks of each running process"
    )
    health_timeout: float = Field(
        default=5.0, gt=0, description="Seconds a health check may take before it counts as failed"
    )
    unhealthy_after: int = Field(
        default=3,
        ge=1,
        description="Failed health checks in a row after which a process counts as wedged "
        "and is restarted like a dead one",
    )
