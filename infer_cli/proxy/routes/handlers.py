"""Every error the proxy answers with, in OpenRouter's error document (Starlette's own 404 and 405
too): :mod:`infer_cli.wire.error_handlers`, given the proxy's body, error class and words.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI

from infer_cli.proxy.errors import ProxyError, error_body
from infer_cli.wire import error_handlers

log = logging.getLogger("infer.proxy")


def install_error_handlers(app: FastAPI) -> None:
    error_handlers.install_error_handlers(
        app,
        error_class=ProxyError,
        error_body=_openrouter_error,
        log=log,
        failure="the proxy failed; see its log",
        not_found="no such route",
    )


def _openrouter_error(
    status: int, message: str, metadata: Mapping[str, Any] | None
) -> dict[str, Any]:
    return error_body(status, message, metadata=metadata)
