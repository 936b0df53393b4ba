"""The chat package without a server: file format, slash commands, the session against a fake
transport (interrupts, errors, retry), figures, and the Markdown streaming renderer.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from infer_cli.chat import commands
from infer_cli.chat import conversation as files
from infer_cli.chat.conversation import Conversation, Message
from infer_cli.chat.session import ChatSession
from infer_cli.chat.stats import AnswerStats, summary
from infer_cli.client.api import Client
from infer_cli.errors import ConversationError, ModelNotFoundError, StreamError, UsageError
from infer_cli.ui.chat_input import block_open, unwrap_block
from infer_cli.ui.chat_view import MarkdownStream, stable_boundary

# --- conversation files --------------------------------------------------------------------------


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    conversation = Conversation(
        system="be brief",
        model="m",
        params={"temperature": 0.2},
        messages=[
            Message("user", "hi"),
            Message("assistant", "hel", interrupted=True, stats={"ttft": 0.1}),
        ],
    )
    path = files.save(conversation, tmp_path / "sub" / "c.json")
    data = json.loads(path.read_text())
    assert data["format"] == "infer-chat" and data["version"] == 1
    assert data["messages"][1] == {
        "role": "assistant",
        "content": "hel",
        "interrupted": True,
        "stats": {"ttft": 0.1},
    }
    loaded = files.load(path)
    assert loaded == conversation
    assert loaded.api_messages() == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hel"},
    ]


def test_load_accepts_openai_messages(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(
        json.dumps(
            [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text"}]},
            ]
        )
    )
    loaded = files.load(path)
    assert loaded.system == "sys" and loaded.messages == [Message("user", "a")]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "not JSON"),
        ('"text"', "not an object"),
        ('{"messages": 3}', "no 'messages' list"),
        ('{"messages": [{"role": "wizard", "content": "x"}]}', "role 'wizard'"),
        ('{"messages": [{"role": "user"}]}', "no text content"),
        ('{"format": "other", "messages": []}', "format is 'other'"),
        ('{"version": 99, "messages": []}', "newer"),
    ],
)
def test_load_rejects_what_is_not_a_conversation(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConversationError) as caught:
        files.load(path)
    assert words in caught.value.message and str(path) in caught.value.message


def test_load_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ConversationError, match="no conversation file"):
        files.load(tmp_path / "nope.json")
    with pytest.raises(ConversationError, match="is a folder"):
        files.load(tmp_path)


# --- commands ------------------------------------------------------------------------------------


def test_command_parsing_and_options() -> None:
    assert commands.is_command("/help") and not commands.is_command("//not a command")
    assert not commands.is_command("/")
    assert commands.split("/SET top_p 0.9") == ("set", "top_p 0.9")
    assert commands.split("/quit") == ("exit", "")
    with pytest.raises(UsageError, match="unknown command /nope"):
        commands.split("/nope")
    assert commands.parse_option("temperature=0.5") == ("temperature", 0.5)
    assert commands.parse_option('stop=["\\n"]') == ("stop", ["\n"])
    assert commands.parse_option("user=alice") == ("user", "alice")
    for bad in ("novalue", "=3", "model=x"):
        with pytest.raises(UsageError):
            commands.parse_option(bad)


# --- the session against a fake server -----------------------------------------------------------


def _chunk(content: str | None = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {"id": "gen-1", "object": "chat.completion.chunk", **extra}
    if content is not None:
        body["choices"] = [{"index": 0, "delta": {"content": content}, "finish_reason": None}]
    return f"data: {json.dumps(body)}\n\n".encode()


class FakeServer:
    """Answers chat requests from a script: a list of byte chunks (None = wait forever)."""

    def __init__(self) -> None:
        self.scripts: list[list[bytes | None] | httpx.Response] = []
        self.bodies: list[dict[str, Any]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "m1"}, {"id": "m2"}]})
        self.bodies.append(json.loads(request.content))
        script = self.scripts.pop(0)
        if isinstance(script, httpx.Response):
            return script

        async def stream() -> AsyncIterator[bytes]:
            for piece in script:
                if piece is None:
                    await asyncio.sleep(3600)
                else:
                    yield piece

        return httpx.Response(200, content=stream(), headers={"content-type": "text/event-stream"})

    def session(self) -> ChatSession:
        client = Client("http://127.0.0.1:9", transport=httpx.MockTransport(self.handler))
        return ChatSession(client, Conversation(model="m1"))


USAGE = {
    "prompt_tokens": 5,
    "completion_tokens": 2,
    "prompt_tokens_details": {"cached_tokens": 3},
    "cost": 0.00012,
}


async def test_an_answer_streams_and_is_kept_with_its_figures() -> None:
    server = FakeServer()
    server.scripts.append(
        [
            b": OPENROUTER PROCESSING\n\n",
            _chunk("Hel"),
            _chunk("lo"),
            _chunk(usage=USAGE),
            b"data: [DONE]\n\n",
        ]
    )
    session = server.session()
    pieces: list[str] = []
    reply = await session.ask("hi", pieces.append)
    assert reply.ok and reply.text == "Hello" and pieces == ["Hel", "lo"]
    assert server.bodies[0]["messages"] == [{"role": "user", "content": "hi"}]
    assert server.bodies[0]["stream"] is True
    stats = reply.stats
    assert (stats.prompt_tokens, stats.completion_tokens, stats.cached_tokens) == (5, 2, 3)
    assert stats.cost == 0.00012 and stats.ttft is not None and stats.generation_id == "gen-1"
    assert [m.role for m in session.conversation.messages] == ["user", "assistant"]
    line = summary(stats)
    assert "s to first token" in line and "5 prompt (3 cached)" in line and "$0.00012" in line


async def test_interrupt_keeps_the_partial_answer_marked() -> None:
    server = FakeServer()
    server.scripts.append([_chunk("partial"), None])
    session = server.session()

    def on_text(_piece: str) -> None:
        assert session.answering
        asyncio.get_running_loop().call_later(0.05, session.interrupt)

    reply = await asyncio.wait_for(session.ask("q", on_text), 5)
    assert reply.interrupted and reply.text == "partial"
    last = session.conversation.messages[-1]
    assert (last.role, last.content, last.interrupted) == ("assistant", "partial", True)
    assert not session.interrupt()  # nothing left to stop


async def test_a_failing_reader_keeps_the_conversation_consistent() -> None:
    server = FakeServer()
    server.scripts.append([_chunk("one"), _chunk("two"), b"data: [DONE]\n\n"])
    session = server.session()

    def closed(_piece: str) -> None:
        raise BrokenPipeError

    with pytest.raises(BrokenPipeError):
        await session.ask("q", closed)
    assert [(m.role, m.interrupted) for m in session.conversation.messages] == [
        ("user", False),
        ("assistant", True),
    ]
    assert not session.answering


async def test_mid_stream_error_keeps_the_conversation_and_the_next_turn_works() -> None:
    server = FakeServer()
    failure = {"error": {"code": 502, "message": "engine died"}, "choices": []}
    server.scripts.append([_chunk("par"), f"data: {json.dumps(failure)}\n\n".encode()])
    server.scripts.append([_chunk("fine"), b"data: [DONE]\n\n"])
    session = server.session()
    reply = await session.ask("q1")
    assert isinstance(reply.error, StreamError) and "engine died" in reply.error.message
    assert session.conversation.messages[-1].error is not None
    second = await session.ask("q2")
    assert second.ok and second.text == "fine"
    sent = [m["content"] for m in server.bodies[1]["messages"]]
    assert sent == ["q1", "par", "q2"]


async def test_an_error_before_any_answer_drops_the_question_and_retry_asks_it_again() -> None:
    server = FakeServer()
    server.scripts.append(httpx.Response(503, json={"error": {"code": 503, "message": "busy"}}))
    server.scripts.append([_chunk("ok"), b"data: [DONE]\n\n"])
    session = server.session()
    reply = await session.ask("q")
    assert reply.error is not None and "503" in reply.error.message
    assert session.conversation.messages == [] and session.unanswered == "q"
    again = await session.retry()
    assert again.ok and [m.content for m in session.conversation.messages] == ["q", "ok"]


async def test_retry_replaces_the_last_answer_and_model_checks() -> None:
    server = FakeServer()
    server.scripts += [[_chunk("one")], [_chunk("two")]]
    session = server.session()
    await session.ask("q")
    await session.retry()
    assert [m.content for m in session.conversation.messages] == ["q", "two"]
    assert await session.choose_model(None) == "m1"
    with pytest.raises(ModelNotFoundError, match="it serves: m1, m2"):
        await session.choose_model("zz")
    outcome = await commands.run(session, "/model m2")
    assert session.model == "m2" and "m2" in outcome.message


async def test_slash_commands_change_the_session(tmp_path: Path) -> None:
    session = FakeServer().session()
    await commands.run(session, "/system be terse")
    await commands.run(session, "/set temperature 0.3")
    await commands.run(session, '/set stop ["END"]')
    assert session.conversation.params == {"temperature": 0.3, "stop": ["END"]}
    body = session.request_body(stream=False)
    assert body["temperature"] == 0.3 and body["messages"][0]["role"] == "system"
    await commands.run(session, "/unset temperature")
    session.conversation.messages.append(Message("user", "x"))
    saved = await commands.run(session, f"/save {tmp_path / 'c.json'}")
    assert "saved 1 message to" in saved.message
    await commands.run(session, "/clear")
    assert session.conversation.messages == []
    loaded = await commands.run(session, f"/load {tmp_path / 'c.json'}")
    assert "loaded 1 message (1 turn)" in loaded.message
    assert session.conversation.system == "be terse"
    assert session.conversation.params == {"stop": ["END"]}
    stats = await commands.run(session, "/stats")
    assert ("turns", "1") in stats.rows
    for line, words in [
        ("/set model x", "cannot be set"),
        ("/set temperature", "needs a value"),
        ("/unset top_k", "not set"),
        ("/load", "needs a file"),
    ]:
        with pytest.raises(UsageError, match=words):
            await commands.run(session, line)
    assert (await commands.run(session, "/exit")).action == "exit"
    assert (await commands.run(session, "/?")).action == "help"


# --- rendering -----------------------------------------------------------------------------------


def test_stable_boundary() -> None:
    assert stable_boundary("one para") == 0
    assert stable_boundary("one\n\ntw") == len("one\n\n")
    assert stable_boundary("one\n\n") == 0  # what follows might still continue it
    fenced = "```py\na = 1\n\nb = 2\n"
    assert stable_boundary(fenced + "c") == 0  # a blank line inside a code block
    closed = fenced + "```\n\nnext"
    assert stable_boundary(closed) == len(fenced + "```\n\n")
    assert stable_boundary("- a\n\n  more of a\n") == 0  # an indented continuation
    assert stable_boundary("p1\n\np2\n\np3", start=4) == len("p1\n\np2\n\n")


def test_markdown_stream_prints_each_block_once() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=60, color_system=None)
    stream = MarkdownStream(console)
    stream.start()
    text = "# Title\n\nSome **bold** text.\n\n```python\nprint('hi')\n```\n\nThe end"
    for piece in [text[i : i + 3] for i in range(0, len(text), 3)]:
        stream.append(piece)
    stream.finish(interrupted=True)
    shown = out.getvalue()
    assert "Title" in shown and "print('hi')" in shown and "The end" in shown
    assert "interrupted" in shown and "**" not in shown and "```" not in shown


def test_triple_quote_blocks() -> None:
    assert block_open('"""') and block_open('"""first line\nsecond')
    assert not block_open('"""one"""') and not block_open("plain")
    assert unwrap_block('"""\nline 1\nline 2\n"""') == "line 1\nline 2"
    assert unwrap_block("  plain  ") == "plain"


def test_summary_of_a_bare_answer() -> None:
    stats = AnswerStats(started=0.0, first_token=0.25, last_token=1.25, finished=1.3, chunks=11)
    assert summary(stats) == "0.25 s to first token · ~10.0 tok/s · ~11 completion tokens · 1.30 s"
