"""The proxy's ASGI app for a plan: settings, listing and guards come from the profile."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infer_cli.config.schema import Profile
    from infer_cli.proxy.state import UpstreamState


def proxy_app(profile: Profile, state: UpstreamState) -> Any:
    """The proxy's ASGI app: its settings and listing come from the profile."""
    from infer_cli.proxy.app import ProxyConfig, create_app

    settings = profile.proxy
    config = ProxyConfig(
        request_timeout=settings.request_timeout,
        keepalive_interval=settings.keepalive_interval,
    )
    return create_app(config, state)
