"""The one set of exception handlers (infer_cli.wire.error_handlers), on a small app of its own.

The proxy's and the simulator's answers through them are tested with those apps
(tests/test_proxy_validation.py, tests/test_proxy_contract.py, tests/test_sim.py).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from infer_cli.wire.error_handlers import describe_problem, install_error_handlers

log = logging.getLogger("test.error_handlers")


class AppError(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        if headers is not None:
            self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"own": {"status": self.status, "message": self.message}}


def document(status: int, message: str, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"doc": {"status": status, "message": message, "metadata": metadata}}


def make_app(not_found: str | None) -> FastAPI:
    app = FastAPI()
    install_error_handlers(
        app,
        error_class=AppError,
        error_body=document,
        log=log,
        failure="it broke; see its log",
        not_found=not_found,
    )

    @app.get("/own")
    async def own(retry: bool = False) -> None:
        raise AppError(429, "slow down", {"Retry-After": "3"} if retry else None)

    @app.get("/count")
    async def count(n: int) -> dict[str, int]:
        return {"n": n}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail")

    return app


@pytest_asyncio.fixture(params=[None, "no such route"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(request.param), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        yield http


async def test_the_apps_own_error_keeps_its_body_and_headers(client: httpx.AsyncClient) -> None:
    plain = await client.get("/own")
    assert plain.status_code == 429
    assert plain.json() == {"own": {"status": 429, "message": "slow down"}}
    assert "retry-after" not in plain.headers
    retried = await client.get("/own", params={"retry": "true"})
    assert retried.headers["retry-after"] == "3"


async def test_starlettes_404_and_405_are_in_the_apps_document(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["doc"]["status"] == 404
    wrong = await client.post("/count")
    assert wrong.status_code == 405
    assert wrong.json()["doc"]["message"] == "Method Not Allowed"
    assert wrong.headers["allow"] == "GET"


async def test_not_found_words_are_the_apps() -> None:
    for not_found, expected in [(None, "Not Found"), ("no such route", "no such route")]:
        transport = httpx.ASGITransport(app=make_app(not_found))
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            answer = await http.get("/nowhere")
        assert answer.json()["doc"]["message"] == expected


async def test_a_bad_parameter_is_named_not_the_framework(client: httpx.AsyncClient) -> None:
    missing = await client.get("/count")
    assert missing.status_code == 400
    assert missing.json()["doc"]["message"] == "query parameter 'n' is required"
    wrong = await client.get("/count", params={"n": "many"})
    doc = wrong.json()["doc"]
    assert wrong.status_code == 400
    assert doc["message"].startswith("query parameter 'n' must be a valid integer")
    assert doc["metadata"] == {"errors": [doc["message"]]}


async def test_an_unexpected_error_is_a_500_with_the_apps_words_and_a_log(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger=log.name):
        answer = await client.get("/boom")
    assert answer.status_code == 500
    assert answer.json() == {
        "doc": {"status": 500, "message": "it broke; see its log", "metadata": None}
    }
    assert "secret detail" not in answer.text
    (record,) = caplog.records
    assert record.getMessage() == "failed on GET /boom" and record.exc_info is not None


def test_describe_problem() -> None:
    assert describe_problem({"loc": ("body", "messages", 0), "type": "missing"}) == (
        "body 'messages.0' is required"
    )
    assert (
        describe_problem({"loc": ("query",), "msg": "Value error, too big"})
        == "query parameter too big"
    )
    assert describe_problem({"msg": "Input should be a string"}) == "request must be a string"


def test_importing_wire_loads_no_web_framework() -> None:
    code = (
        "import sys, infer_cli.wire.error_handlers, infer_cli.wire.sse;"
        "print(sorted(m for m in ('fastapi', 'starlette') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
