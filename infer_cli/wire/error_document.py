"""The error document every HTTP error is answered with, as JSON.

``{"error": {"message", "type", "code", "metadata": {"error_type", ...}}}`` satisfies both
OpenRouter (``code`` is the integer HTTP status, ``metadata.error_type`` its typed value) and
OpenAI-style clients (``message``, ``type``, ``code``). It lives at the bottom because refusals made
below any app (a head too large, a connection over the cap) are written in it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# OpenRouter's typed ``metadata.error_type`` values that the proxy uses.
INVALID_REQUEST = "invalid_request"
AUTHENTICATION = "authentication"
NOT_FOUND = "not_found"
PAYLOAD_TOO_LARGE = "payload_too_large"
RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
PROVIDER_UNAVAILABLE = "provider_unavailable"
PROVIDER_OVERLOADED = "provider_overloaded"
TIMEOUT = "timeout"
INTERNAL = "internal"

_DEFAULT_ERROR_TYPE = {
    400: INVALID_REQUEST,
    401: AUTHENTICATION,
    404: NOT_FOUND,
    405: INVALID_REQUEST,
    408: TIMEOUT,
    413: PAYLOAD_TOO_LARGE,
    422: INVALID_REQUEST,
    429: RATE_LIMIT_EXCEEDED,
    502: PROVIDER_UNAVAILABLE,
    503: PROVIDER_UNAVAILABLE,
    504: TIMEOUT,
}

# The OpenAI-style ``type`` that OpenAI SDK clients read.
_OPENAI_TYPE = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    429: "rate_limit_error",
    504: "timeout_error",
}


def error_body(
    status: int,
    message: str,
    *,
    error_type: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of an error answered with HTTP ``status``."""
    meta: dict[str, Any] = {"error_type": error_type or default_error_type(status)}
    if metadata:
        meta.update(metadata)
    return {
        "error": {
            "message": message,
            "type": _OPENAI_TYPE.get(
                status, "server_error" if status >= 500 else "invalid_request_error"
            ),
            "code": status,
            "metadata": meta,
        }
    }


def default_error_type(status: int) -> str:
    return _DEFAULT_ERROR_TYPE.get(status, INTERNAL if status >= 500 else INVALID_REQUEST)
