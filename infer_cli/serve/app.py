"""The proxy's ASGI app for a plan: settings, listing and guards come from the profile."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infer_cli.proxy.state import UpstreamState
    from infer_cli.serve.plan import ServePlan


def proxy_app(plan: ServePlan, state: UpstreamState) -> Any:
    """The proxy's ASGI app for this plan: its settings and listing come from the profile."""
    from infer_cli.proxy.app import ProxyConfig, create_app

    settings = plan.profile.proxy
    config = ProxyConfig(
        request_timeout=settings.request_timeout,
        keepalive_interval=settings.keepalive_interval,
    )
    return create_app(config, state)
