"""How many engine replicas a profile asks for, and which of the chart's routing logics fits.

The one place that reads a profile's ``[replicas]`` table for deployment. Until that table exists
in the schema, a profile is one replica: ``engine.data_parallel_size`` stays what it is for
``infer serve`` (vLLM's own data parallelism inside one server), not a replica count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infer_cli.config.schema import Profile
from infer_cli.deploy.common import Notes

ROUTING_LOGICS = (
    "roundrobin",
    "session",
    "prefixaware",
    "kvaware",
    "disaggregated_prefill",
    "disaggregated_prefill_orchestrated",
)
"""The production-stack router's ``routerSpec.routingLogic`` values."""

POLICY_TO_ROUTING = {
    "cache_aware": "prefixaware",
    "kv_aware": "kvaware",
    "consistent_hash": "session",
    "session": "session",
    "round_robin": "roundrobin",
}
"""vllm-router's policies (``[replicas]``) -> the chart router's routing logic."""

DEFAULT_SESSION_KEY = "x-session-id"


@dataclass(frozen=True)
class ScaleOut:
    replicas: int
    routing: str
    session_key: str | None = None
    workers: tuple[str, ...] = ()


def scale_out(profile: Profile, notes: Notes) -> ScaleOut:
    """Replica count and routing logic from ``profile.replicas`` (absent: one replica)."""
    table: Any = getattr(profile, "replicas", None)
    if table is None:
        return ScaleOut(replicas=1, routing="roundrobin")
    count = int(_first(table, ("count", "replicas"), 1))
    if count == 1 and not _first(table, ("workers",), ()):
        return ScaleOut(replicas=1, routing="roundrobin")  # one engine: nothing to route
    policy = str(_first(table, ("router_policy", "policy"), "cache_aware"))
    routing = POLICY_TO_ROUTING.get(policy)
    if routing is None:
        routing = "roundrobin"
        notes.chose(
            f"router policy '{policy}' has no equivalent in the chart's router; "
            f"routingLogic 'roundrobin' chosen"
        )
    session_key = None
    if routing == "session":
        session_key = str(_first(table, ("session_key", "session_header"), DEFAULT_SESSION_KEY))
    workers = tuple(str(url) for url in _first(table, ("workers",), ()) or ())
    if workers:
        notes.cannot(
            "replicas.workers",
            "engines outside the cluster cannot join the chart's router (it finds pods itself)",
        )
    return ScaleOut(replicas=count, routing=routing, session_key=session_key, workers=workers)


def _first(table: Any, names: tuple[str, ...], default: Any) -> Any:
    for name in names:
        value = getattr(table, name, None)
        if value is not None:
            return value
    return default
