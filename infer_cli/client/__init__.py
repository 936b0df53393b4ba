"""HTTP client side of infer: SSE decoding, an async OpenAI/OpenRouter client, Prometheus parsing.

Shared by ``infer chat``, ``infer models``, ``infer status`` and ``infer bench``. Nothing here
imports rich or typer; errors are :mod:`infer_cli.errors` exceptions with one-line messages.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
"""The local proxy that ``infer serve`` starts with nothing set (free of heavy imports, for the
CLI's defaults)."""

# A server bound to every address is reached through loopback.
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}


def server_url(host: str | None, port: int | str | None) -> str:
    """The URL a client on this machine uses for a proxy serving on ``host:port``."""
    name = (host or DEFAULT_HOST).strip()
    name = _ANY_ADDRESS.get(name, name)
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"  # an IPv6 literal
    return f"http://{name}:{port or DEFAULT_PORT}"


def default_url(environ: Mapping[str, str] | None = None) -> str:
    """Where clients look for the server when neither ``--url`` nor ``INFER_URL`` says: the
    address ``infer serve`` takes from ``INFER_HOST`` / ``INFER_PORT``, else the local proxy.
    """
    env = os.environ if environ is None else environ
    return server_url(env.get("INFER_HOST") or None, env.get("INFER_PORT") or None)


def resolve_url(url: str | None, environ: Mapping[str, str] | None = None) -> str:
    """``--url`` / ``INFER_URL`` when given, else :func:`default_url`."""
    return url if url else default_url(environ)
