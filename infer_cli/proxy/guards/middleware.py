"""What stands between a client and the engine: API keys, rate limits, metrics, CORS.

:class:`GuardConfig` holds every setting; :func:`guard_config` reads it from the profile's
``[proxy]`` section and the environment; :func:`install_guards` wires the middleware and the
``/metrics`` route into the app. Requests pass, outermost first: metrics (counts everything, 401
and 429 included), CORS (answers preflights before any key is asked for, and labels 401s and 429s
so that a page can read them), auth (sets ``scope["state"]["key_id"]``), limits, then the routes.

This module imports no web framework at module level: the CLI may build a config cheaply.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from infer_cli.errors import UsageError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from infer_cli.config.schema import ProxySection
    from infer_cli.proxy.context import ProxyContext
    from infer_cli.proxy.guards.auth import KeyRing
    from infer_cli.proxy.guards.limits import Limits, RateLimiter
    from infer_cli.proxy.metrics import ProxyMetrics

log = logging.getLogger("infer.proxy")

ENV_API_KEYS = "INFER_API_KEYS"
"""Comma-separated keys the proxy accepts, in addition to the profile's."""


@dataclass(frozen=True)
class GuardConfig:
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    """Keys in plaintext (profile, environment). Never shown in a repr."""
    api_keys_file: Path | None = None
    """A file of ``name:sha256hex`` lines; its presence turns auth on, even while it is empty."""
    api_keys_file_optional: bool = False
    """The file may not exist yet (the default one): it is watched, and keys are required from
    the moment it appears. Otherwise a missing file stops the start."""
    protect_health: bool = False
    protect_metrics: bool = False
    rate_limit_rpm: int | None = None
    """Requests per minute, per key (or for all clients together, with no keys)."""
    rate_limit_tpm: int | None = None
    """Prompt + completion tokens per minute, per key, counted when a generation ends."""
    max_concurrent_per_key: int | None = None
    max_concurrent: int | None = None
    """Concurrent requests across all keys; one more gets 429 at once rather than a queue."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed to call from a browser; empty means no CORS headers at all."""
    engine_metrics: bool = True
    """Append the engine's own ``/metrics`` to the proxy's."""
    engine_metrics_timeout: float = 2.0

    def __post_init__(self) -> None:
        for name in (
            "rate_limit_rpm",
            "rate_limit_tpm",
            "max_concurrent_per_key",
            "max_concurrent",
        ):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 1):
                raise UsageError(f"proxy.{name} must be a positive integer, got {value!r}")
        if any(not key or any(ch.isspace() for ch in key) for key in self.api_keys):
            raise UsageError("an API key is empty or contains whitespace")
        if self.engine_metrics_timeout <= 0:
            raise UsageError("proxy.engine_metrics_timeout must be positive")

    def limits(self) -> Limits:
        from infer_cli.proxy.guards.limits import Limits

        return Limits(
            requests_per_minute=self.rate_limit_rpm,
            tokens_per_minute=self.rate_limit_tpm,
            concurrent_per_key=self.max_concurrent_per_key,
            concurrent=self.max_concurrent,
        )


def guard_config(section: ProxySection, environ: Mapping[str, str] | None = None) -> GuardConfig:
    """The guards of a profile's ``[proxy]`` section.

    ``INFER_API_KEYS`` adds keys (the prototype's ``RATE_LIMIT_*`` variables reach the profile
    through the loader, like every other setting). A limit of 0 means none. With no keys file
    configured, ``$INFER_HOME/api_keys`` is watched, whether or not it exists yet (``infer keys
    add`` writes there).
    """
    from infer_cli.config.keys import default_keys_file

    env = os.environ if environ is None else environ
    keys = [
        *(key.get_secret_value().strip() for key in section.api_keys),
        *_split(env.get(ENV_API_KEYS, "")),
    ]
    configured = bool(section.api_keys_file)
    if section.api_keys_file:
        keys_file = Path(section.api_keys_file).expanduser()
    else:
        keys_file = default_keys_file()
    return GuardConfig(
        api_keys=tuple(dict.fromkeys(key for key in keys if key)),
        api_keys_file=keys_file,
        api_keys_file_optional=not configured,
        protect_health=section.protect_health,
        protect_metrics=section.protect_metrics,
        rate_limit_rpm=section.rate_limit_rpm or None,
        rate_limit_tpm=section.rate_limit_tpm or None,
        max_concurrent_per_key=section.max_concurrent_per_key or None,
        max_concurrent=section.max_concurrent or None,
        cors_origins=tuple(origin.strip() for origin in section.cors_origins if origin.strip()),
        engine_metrics=section.engine_metrics,
        engine_metrics_timeout=section.engine_metrics_timeout,
    )


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@dataclass(frozen=True)
class Guards:
    """What :func:`install_guards` built (``app.state.guards``), for later routes and tests."""

    config: GuardConfig
    keys: KeyRing
    limiter: RateLimiter
    metrics: ProxyMetrics


def install_guards(app: FastAPI, context: ProxyContext, guards: GuardConfig) -> Guards:
    """Add the guards' middleware, the ``/metrics`` route and the generation observers."""
    from infer_cli.config.keys import plain_key
    from infer_cli.proxy.guards.auth import AuthMiddleware, KeyRing
    from infer_cli.proxy.guards.cors import install_cors
    from infer_cli.proxy.guards.limits import LimitsMiddleware, RateLimiter
    from infer_cli.proxy.metrics import MetricsMiddleware, ProxyMetrics, metrics_router

    keys = KeyRing(
        [plain_key(key) for key in guards.api_keys],
        guards.api_keys_file,
        optional=guards.api_keys_file_optional,
    )
    limiter = RateLimiter(guards.limits())
    metrics = ProxyMetrics(context)
    context.observers.append(metrics.observe)
    if guards.rate_limit_tpm is not None:
        context.observers.append(limiter.observe)
        context.limiter, context.on_reject = limiter, metrics.reject
    app.include_router(
        metrics_router(
            metrics,
            context,
            engine=guards.engine_metrics,
            engine_timeout=guards.engine_metrics_timeout,
        )
    )
    open_paths = [path for path, protect in _OPEN_BY_DEFAULT if not getattr(guards, protect)]
    # add_middleware wraps what was added before: innermost first.
    if guards.limits().any:
        app.add_middleware(LimitsMiddleware, limiter=limiter, on_reject=metrics.reject)
    app.add_middleware(AuthMiddleware, keys=keys, open_paths=open_paths)
    cors = install_cors(app, guards.cors_origins)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    _log_startup(guards, keys, cors)
    installed = Guards(guards, keys, limiter, metrics)
    app.state.guards = installed
    return installed


_OPEN_BY_DEFAULT = (("/health", "protect_health"), ("/metrics", "protect_metrics"))


def _log_startup(config: GuardConfig, keys: KeyRing, cors: bool) -> None:
    if not keys.enabled:
        watched = f" until keys are added to {keys.file}" if keys.file is not None else ""
        log.warning("no API keys configured: the proxy serves every client%s", watched)
    elif not keys.keys():
        log.warning(
            "API keys file %s holds no keys yet: every request gets 401 until one is added",
            keys.file,
        )
    else:
        log.info("API keys required (%s)", keys.describe())
    limits = [
        f"{label} {value}"
        for label, value in (
            ("requests/min per key", config.rate_limit_rpm),
            ("tokens/min per key", config.rate_limit_tpm),
            ("concurrent per key", config.max_concurrent_per_key),
            ("concurrent in all", config.max_concurrent),
        )
        if value is not None
    ]
    log.info("rate limits: %s", ", ".join(limits) if limits else "none")
    if cors:
        log.info("CORS allowed for %s", ", ".join(config.cors_origins))
