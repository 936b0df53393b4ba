"""Cross-origin requests from browsers: off unless origins are listed.

The earlier prototype let every origin in. Here no CORS header is sent at all unless the operator
lists origins (``"*"`` is allowed, but only when written out). Clients authenticate with a bearer
token, never with cookies, so credentials stay disallowed and any request header may be asked for
in a preflight (browser SDKs send their own ``x-stainless-*`` headers, for instance).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from infer_cli.errors import UsageError

if TYPE_CHECKING:
    from starlette.applications import Starlette

METHODS = ("GET", "POST", "OPTIONS")
EXPOSED_HEADERS = ("Retry-After", "X-Request-Id")
"""Response headers a page may read beyond the CORS-safelisted ones."""
MAX_AGE = 600
_ORIGIN = re.compile(r"https?://[^/\s?#]+")


def normalize_origins(origins: Sequence[str]) -> tuple[str, ...]:
    """Origins as browsers send them (``scheme://host[:port]``, no trailing slash), or ``*``."""
    found: list[str] = []
    for raw in origins:
        origin = raw.strip().rstrip("/").lower()
        if origin != "*" and _ORIGIN.fullmatch(origin) is None:
            raise UsageError(
                f"{raw!r} is not a CORS origin",
                hint="write origins as scheme://host[:port], e.g. https://app.example.com, or '*'",
            )
        if origin not in found:
            found.append(origin)
    return tuple(found)


def install_cors(app: Starlette, origins: Sequence[str]) -> bool:
    """Add the CORS middleware when ``origins`` lists any; True when added."""
    allowed = normalize_origins(origins)
    if not allowed:
        return False
    from starlette.middleware.cors import CORSMiddleware

    app.add_middleware(
        CORSMiddleware,
        allow_origins=allowed,
        allow_methods=METHODS,
        allow_headers=("*",),
        allow_credentials=False,
        expose_headers=EXPOSED_HEADERS,
        max_age=MAX_AGE,
    )
    return True
