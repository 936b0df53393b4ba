"""The proxy's ASGI app for a profile: settings, listing, prices and guards all come from it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from infer_cli.config.schema import Profile
    from infer_cli.proxy.openrouter.generations import GenerationRecord
    from infer_cli.proxy.state import UpstreamState
    from infer_cli.wire.guarded_http import ConnectionLimits


def proxy_app(
    profile: Profile,
    state: UpstreamState,
    name: str | None = None,
    observers: Sequence[Callable[[GenerationRecord], None]] = (),
) -> Any:
    """The proxy in front of ``state``'s engine, configured by the profile's ``[proxy]`` and
    ``[openrouter]`` tables (and ``INFER_API_KEYS``); ``name`` is the profile's, for ``/health``;
    ``observers`` see every finished generation (``infer serve -v`` prints one line each)."""
    from infer_cli.config.schema import parse_size
    from infer_cli.proxy.app import ProxyConfig, create_app
    from infer_cli.proxy.guards.bounds import BodyBounds
    from infer_cli.proxy.guards.middleware import guard_config
    from infer_cli.proxy.openrouter.listing import provider_info

    settings = profile.proxy
    config = ProxyConfig(
        request_timeout=settings.request_timeout,
        keepalive_interval=settings.keepalive_interval,
        max_body_bytes=parse_size(settings.max_body_bytes),
        profile=name,
        body_bounds=BodyBounds(
            max_json_values=settings.max_json_values,
            max_json_depth=settings.max_json_depth,
            max_messages=settings.max_messages,
        ),
        extra_routes=tuple(settings.extra_routes),
    )
    return create_app(
        config,
        state,
        provider=provider_info(profile),
        guards=guard_config(settings),
        observers=observers,
    )


def connection_limits(profile: Profile) -> ConnectionLimits:
    """What one client connection may cost the proxy, from the profile's ``[proxy]`` table."""
    from infer_cli.config.schema import parse_size
    from infer_cli.wire.guarded_http import ConnectionLimits

    settings = profile.proxy
    return ConnectionLimits(
        max_head_bytes=parse_size(settings.max_head_bytes),
        max_header_lines=settings.max_header_lines,
        max_url_bytes=parse_size(settings.max_url_bytes),
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_connections=settings.max_connections,
    )
