"""Every error the app answers with, in the one error shape (Starlette's own 404 and 405 too)."""

from __future__ import annotations

import logging

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
        return error_response(400, f"invalid request: {exc}")

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("proxy failed on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "the proxy failed; see its log")

    app.add_exception_handler(ProxyError, proxy_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
