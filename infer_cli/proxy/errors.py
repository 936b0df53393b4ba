"""The proxy's errors: :class:`ProxyError`, raised before a response starts, and its response.

The JSON shape is :mod:`infer_cli.wire.error_document`'s, re-exported here. This module stays free
of web-framework imports except inside :func:`error_response`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from infer_cli.wire.error_document import (
    AUTHENTICATION,
    INTERNAL,
    INVALID_REQUEST,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    PROVIDER_OVERLOADED,
    PROVIDER_UNAVAILABLE,
    RATE_LIMIT_EXCEEDED,
    TIMEOUT,
    default_error_type,
    error_body,
)

if TYPE_CHECKING:
    from starlette.responses import JSONResponse

__all__ = [
    "AUTHENTICATION",
    "INTERNAL",
    "INVALID_REQUEST",
    "NOT_FOUND",
    "PAYLOAD_TOO_LARGE",
    "PROVIDER_OVERLOADED",
    "PROVIDER_UNAVAILABLE",
    "RATE_LIMIT_EXCEEDED",
    "RETRY_AFTER_SECONDS",
    "TIMEOUT",
    "ProxyError",
    "default_error_type",
    "error_body",
    "error_response",
]

RETRY_AFTER_SECONDS = 10
"""What ``Retry-After`` says on a 503 while the engine is not ready."""


class ProxyError(Exception):
    """An error the proxy answers with before any byte of a response was sent."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or default_error_type(status)
        self.metadata = dict(metadata or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(
            self.status, self.message, error_type=self.error_type, metadata=self.metadata
        )

    def response(self) -> JSONResponse:
        return error_response(
            self.status,
            self.message,
            error_type=self.error_type,
            metadata=self.metadata,
            headers=self.headers,
        )


def error_response(
    status: int,
    message: str,
    *,
    error_type: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The HTTP response for an error: status, error JSON, extra headers (``Retry-After``)."""
    from starlette.responses import JSONResponse

    return JSONResponse(
        error_body(status, message, error_type=error_type, metadata=metadata),
        status_code=status,
        headers=dict(headers) if headers else None,
    )
