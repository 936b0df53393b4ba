"""Every error the app answers with, in the one error shape (Starlette's own 404 and 405 too).

A bad query parameter is described by its name and what is allowed, never by the framework's
exception text (which names the proxy's source files).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from infer_cli.proxy.errors import ProxyError, error_response

log = logging.getLogger("infer.proxy")


def install_error_handlers(app: FastAPI) -> None:
    async def proxy_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProxyError)
        return exc.response()

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            message = "no such route"
        else:
            message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return error_response(exc.status_code, message, headers=exc.headers)

    async def validation_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = [describe_problem(error) for error in exc.errors()]
        return error_response(
            400, "; ".join(problems[:5]) or "invalid request", metadata={"errors": problems[:20]}
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("proxy failed on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "the proxy failed; see its log")

    app.add_exception_handler(ProxyError, proxy_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)


_PLACES = {"query": "query parameter", "path": "path parameter", "header": "header", "body": "body"}


def describe_problem(error: Mapping[str, Any]) -> str:
    """One validation problem in words: which parameter, and what it must be."""
    location = [str(part) for part in error.get("loc", ())]
    place = _PLACES.get(location[0], location[0]) if location else "request"
    name = ".".join(location[1:])
    where = f"{place} '{name}'" if name else place
    if error.get("type") == "missing":
        return f"{where} is required"
    message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
    if message.startswith("Input should be"):
        message = "must be" + message.removeprefix("Input should be")
    return f"{where} {message}"
