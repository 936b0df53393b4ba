"""The exception handlers of an app of ours (the proxy, the simulated engine): every error answered
in that app's error document, Starlette's own 404 and 405 and FastAPI's validation errors included.

Each app passes what is its own: the body of its error document (the proxy OpenRouter's, the
simulator vLLM's), its exception class, its logger and its words. The handlers live here, in the
bottom layer, because both apps sit side by side above it and neither may import the other; they
are about HTTP answers, as the error document next to them is. Starlette and FastAPI are imported
inside :func:`install_error_handlers` only, so importing ``wire`` never loads a web framework.

A bad parameter is described by its name and what it must be (:func:`describe_problem`), never by
the framework's exception text, which names source files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from fastapi import FastAPI

ErrorBody = Callable[[int, str, Mapping[str, Any] | None], dict[str, Any]]
"""An app's error document: ``(status, message, metadata)`` to its JSON body."""


class AppError(Protocol):
    """An app's own exception: its status and body (and, if it has them, extra headers)."""

    status: int

    def body(self) -> dict[str, Any]: ...


def install_error_handlers(
    app: FastAPI,
    *,
    error_class: type[Exception],
    error_body: ErrorBody,
    log: logging.Logger,
    failure: str,
    not_found: str | None = None,
) -> None:
    """Answer ``error_class`` with its own body, every other error with ``error_body``.

    ``failure`` is the message of an unexpected exception (500; the traceback goes to ``log``);
    ``not_found``, when given, is the message of a 404 for a route that does not exist.
    """
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    def answer(
        status: int,
        message: str,
        metadata: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        return JSONResponse(
            error_body(status, message, metadata),
            status_code=status,
            headers=dict(headers) if headers else None,
        )

    async def own_error(_request: Request, exc: Exception) -> Response:
        error = cast(AppError, exc)
        headers: Mapping[str, str] | None = getattr(exc, "headers", None)
        return JSONResponse(
            error.body(), status_code=error.status, headers=dict(headers) if headers else None
        )

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404 and not_found is not None:
            message = not_found
        else:
            message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return answer(exc.status_code, message, headers=exc.headers)

    async def validation_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = [describe_problem(error) for error in exc.errors()]
        return answer(400, "; ".join(problems[:5]) or "invalid request", {"errors": problems[:20]})

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("failed on %s %s", request.method, request.url.path, exc_info=exc)
        return answer(500, failure)

    app.add_exception_handler(error_class, own_error)
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
