"""The status and chat views draw what the client they are given reads, and leave that client to
the command that opened it. The edge is faked with an httpx ``MockTransport``: every request the
views cause reaches it, so a view that opened a client of its own would reach nothing here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from infer_cli.chat.conversation import Conversation
from infer_cli.chat.session import ChatSession
from infer_cli.client.api import Client
from infer_cli.errors import ModelNotFoundError
from infer_cli.ui import chat_app, status_view
from tests.helpers import wait_until

Handler = Callable[[httpx.Request], httpx.Response]


def client_of(url: str, handler: Handler) -> Client:
    return Client(url, transport=httpx.MockTransport(handler))


# --- infer status --------------------------------------------------------------------------------


class Engine:
    """An endpoint with ``/health`` and ``/metrics`` whose request counter grows as it is read."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.path == "/health":
            return httpx.Response(200, json={"model": "m-1", "engine": "ready", "uptime": 65})
        if request.url.path == "/metrics":
            self.requests += 3
            return httpx.Response(200, text=self.metrics())
        return httpx.Response(404, json={"error": {"message": "no such route", "code": 404}})

    def metrics(self) -> str:
        route = 'route="/v1/chat/completions",status="200"'
        return (
            "vllm:num_requests_running 2\n"
            "vllm:num_requests_waiting 1\n"
            "vllm:kv_cache_usage_perc 0.25\n"
            "vllm:prefix_cache_hits_total 50\n"
            "vllm:prefix_cache_queries_total 100\n"
            f"infer_proxy_requests_total{{{route}}} {self.requests}\n"
        )


async def test_status_shows_what_the_given_client_reads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine = Engine()
    async with client_of("http://gpu-box:8000", engine) as client:
        assert await status_view.show(client, json_output=False)
    out = capsys.readouterr().out
    assert "up  http://gpu-box:8000" in out and "m-1" in out and "up 1m 05s" in out
    assert "2 running · 1 waiting" in out and "25.0% used" in out
    assert "50.0% hit rate so far (50 of 100 tokens)" in out
    assert sorted(engine.paths) == ["/health", "/metrics"]


async def test_status_leaves_the_client_open_for_its_owner(
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine = Engine()
    async with client_of("http://gpu-box:8000", engine) as client:
        for _ in range(2):  # the same client, twice: the view did not close it
            assert await status_view.show(client, json_output=True)
            shown = json.loads(capsys.readouterr().out)
            assert shown["up"] and shown["model"] == "m-1" and shown["running"] == 2
    assert engine.requests == 6 and len(engine.paths) == 4


async def test_status_of_an_endpoint_that_does_not_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with client_of("http://gpu-box:8000", refuse) as client:
        assert not await status_view.show(client, json_output=False)
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("error: cannot reach http://gpu-box:8000") and captured.out == ""


async def test_watch_prints_a_line_per_reading_with_rates(
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine = Engine()
    lines: list[str] = []

    def two_lines() -> bool:
        lines.extend(capsys.readouterr().out.splitlines())
        return len(lines) >= 2

    async with client_of("http://gpu-box:8000", engine) as client:
        watching = asyncio.create_task(status_view.watch(client, 0.2, json_output=True))
        try:
            await wait_until(two_lines, timeout=10, what="two JSON lines from --watch")
        finally:
            watching.cancel()
            with pytest.raises(asyncio.CancelledError):
                await watching
        assert (await client.health()).ok  # still the caller's to use and to close
    first, second = (json.loads(line) for line in lines[:2])
    assert first["up"] and first["request_rate"] is None  # nothing to compare with yet
    assert second["checked_at"] > first["checked_at"] and second["request_rate"] > 0


# --- infer chat ----------------------------------------------------------------------------------

ANSWER = ["Hello", ",", " world"]


class Model:
    """An OpenAI-style endpoint serving one model, streamed or whole."""

    def __init__(self, served: str = "m-1") -> None:
        self.served = served
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": self.served}]})
        if request.url.path != "/v1/chat/completions":
            return httpx.Response(404, json={"error": {"message": "not found", "code": 404}})
        body = json.loads(request.content)
        self.bodies.append(body)
        if not body.get("stream"):
            return httpx.Response(200, json=self.whole(body["model"]))
        events = [self.chunk(body["model"], {"content": piece}) for piece in ANSWER]
        events.append(self.chunk(body["model"], {}, finish="stop"))
        text = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})

    @staticmethod
    def chunk(model: str, delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {"id": "c-1", "object": "chat.completion.chunk", "model": model, "choices": [choice]}

    @staticmethod
    def whole(model: str) -> dict[str, Any]:
        message = {"role": "assistant", "content": "".join(ANSWER)}
        return {
            "id": "c-1",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
        }


async def test_one_question_is_streamed_through_the_sessions_client(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model = Model()
    saved = tmp_path / "last.json"
    async with client_of("http://chat.example", model) as client:
        session = ChatSession(client, Conversation())
        options = chat_app.ChatOptions(question="hi", autosave_file=saved)
        assert await chat_app.run(session, options) == 0
        assert (await client.list_models()).ids == ["m-1"]  # left open for the command
    assert capsys.readouterr().out == "Hello, world\n"
    (sent,) = model.bodies
    assert sent["model"] == "m-1" and sent["stream"] is True
    assert [m["content"] for m in json.loads(saved.read_text())["messages"]] == [
        "hi",
        "Hello, world",
    ]


async def test_json_output_is_the_servers_whole_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = Model()
    async with client_of("http://chat.example", model) as client:
        session = ChatSession(client, Conversation(system="be brief"))
        options = chat_app.ChatOptions(question="hi", json_output=True)
        assert await chat_app.run(session, options) == 0
    assert json.loads(capsys.readouterr().out) == Model.whole("m-1")
    (sent,) = model.bodies
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}


async def test_a_model_the_local_endpoint_does_not_serve_is_refused() -> None:
    model = Model(served="m-1")
    async with client_of("http://127.0.0.1:8080", model) as client:  # loopback: checked
        session = ChatSession(client, Conversation())
        options = chat_app.ChatOptions(model="other", question="hi")
        with pytest.raises(ModelNotFoundError, match=r"'other' is not served.*m-1"):
            await chat_app.run(session, options)
    assert model.bodies == []  # nothing was asked
