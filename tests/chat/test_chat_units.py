"""The chat package without a server: file format, slash commands, the session against a fake
transport (interrupts, errors, retry), figures, and the Markdown streaming renderer.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
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
from infer_cli.ui.chat_input import HISTORY_ENTRIES, block_open, trim_history, unwrap_block
from infer_cli.ui.chat_view import MarkdownStream, PlainStream, stable_boundary

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


def _thought(text: str, field: str = "reasoning_content") -> bytes:
    """A chunk of thinking, as vLLM's reasoning parser streams it (no answer text yet)."""
    delta = {field: text, "content": None}
    body = {"id": "gen-1", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
    return f"data: {json.dumps(body)}\n\n".encode()


class FakeServer:
    """Answers chat requests from a script: a list of byte chunks (a number: pause this many
    seconds; None: wait forever).
    """

    def __init__(self) -> None:
        self.scripts: list[list[bytes | float | None] | httpx.Response] = []
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
                elif isinstance(piece, float):
                    await asyncio.sleep(piece)
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


async def test_thinking_is_the_first_token_and_never_kept(tmp_path: Path) -> None:
    server = FakeServer()
    pause = 0.3
    server.scripts.append(
        [
            _chunk(""),
            _thought("Let me"),
            _thought(" think.", field="reasoning"),  # newer vLLM's and OpenRouter's name
            pause,
            _chunk("Hel"),
            _chunk("lo"),
            b"data: [DONE]\n\n",
        ]
    )
    server.scripts.append([_chunk("ok"), b"data: [DONE]\n\n"])
    session = server.session()
    seen: list[tuple[str, str, float]] = []

    def on(kind: str) -> Any:
        return lambda piece: seen.append((kind, piece, time.perf_counter()))

    reply = await session.ask("hi", on("text"), on_reasoning=on("thought"))
    assert [(kind, piece) for kind, piece, _ in seen] == [
        ("thought", "Let me"),
        ("thought", " think."),
        ("text", "Hel"),
        ("text", "lo"),
    ]
    assert reply.ok and reply.reasoning == "Let me think." and reply.text == "Hello"
    stats = reply.stats
    assert stats.first_token is not None and stats.first_token <= seen[0][2]
    assert seen[2][2] - stats.first_token >= pause  # timed from the thinking, not the answer
    assert stats.chunks == 4 and "~4 completion tokens" in summary(stats)
    assert session.totals.ttfts == [stats.ttft]
    assert session.conversation.messages[-1].content == "Hello"
    await session.ask("next")
    assert server.bodies[1]["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "next"},
    ]
    saved = files.save(session.conversation, tmp_path / "c.json").read_text()
    assert "think" not in saved and "reasoning" not in saved


async def test_thinking_of_a_whole_answer_and_an_interrupt_while_thinking() -> None:
    server = FakeServer()
    message = {"role": "assistant", "content": "Paris", "reasoning_content": "France's capital."}
    server.scripts.append(httpx.Response(200, json={"choices": [{"index": 0, "message": message}]}))
    server.scripts.append([_thought("hmm"), None])
    session = server.session()
    thoughts: list[str] = []
    whole = await session.ask("capital?", stream=False, on_reasoning=thoughts.append)
    assert (whole.text, whole.reasoning) == ("Paris", "France's capital.")
    assert thoughts == ["France's capital."] and whole.stats.chunks == 1

    def stop(_piece: str) -> None:
        asyncio.get_running_loop().call_later(0.05, session.interrupt)

    cut = await asyncio.wait_for(session.ask("q", on_reasoning=stop), 5)
    assert cut.interrupted and (cut.text, cut.reasoning) == ("", "hmm")
    assert not cut.started and session.unanswered == "q"  # no answer: the question is not kept
    assert [m.content for m in session.conversation.messages] == ["capital?", "Paris"]


async def test_reasoning_command() -> None:
    session = FakeServer().session()
    assert session.show_reasoning
    assert (await commands.run(session, "/reasoning off")).message.endswith("hidden")
    assert not session.show_reasoning
    assert (await commands.run(session, "/reasoning")).message.endswith("hidden")
    assert (await commands.run(session, "/REASONING On")).message.endswith("shown")
    assert session.show_reasoning
    with pytest.raises(UsageError, match="on or off"):
        await commands.run(session, "/reasoning maybe")


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


THINKING_THEN_ANSWER = [
    ("thought", "\n"),  # DeepSeek-R1 opens its thinking with a new line
    ("thought", "Let me"),
    ("thought", " think.\n"),
    ("thought", "\n"),
    ("thought", "The user"),
    ("thought", " greets.\n\n"),
    ("text", "\n\n"),
    ("text", "# Hi\n\nHello, **world**!"),
]
_STYLES = re.compile(r"\x1b\[[0-9;]*m")


def _render(
    pieces: list[tuple[str, str]],
    *,
    interrupted: bool = False,
    reasoning: bool = True,
    color: bool = False,
) -> str:
    """What a MarkdownStream leaves in the scrollback (a console that is not a terminal gets no
    live region, only what is printed for good).
    """
    out = io.StringIO()
    console = Console(
        file=out, force_terminal=False, width=60, color_system="standard" if color else None
    )
    stream = MarkdownStream(console, reasoning=reasoning)
    stream.start()
    for kind, piece in pieces:
        (stream.append if kind == "text" else stream.append_reasoning)(piece)
    stream.finish(interrupted=interrupted)
    return out.getvalue()


def test_markdown_stream_shows_the_thinking_then_the_answer() -> None:
    shown = [line.rstrip() for line in _render(THINKING_THEN_ANSWER).splitlines()]
    assert shown == [
        "thinking…",
        "Let me think.",
        "",
        "The user greets.",
        "…done thinking",
        "",
        "Hi".center(60).rstrip(),
        "",
        "Hello, world!",
        "",
    ]
    styled = _render(THINKING_THEN_ANSWER, color=True)
    assert "\x1b[2mthinking…\x1b[0m" in styled  # dim
    assert "\x1b[2;3mThe user greets.\x1b[0m" in styled  # dim italic
    assert "\x1b[1mworld\x1b[0m" in styled  # the answer is Markdown, as without thinking


def test_markdown_stream_thinking_lines_are_printed_once_finished() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=60, color_system=None)
    stream = MarkdownStream(console)
    stream.start()
    stream.append_reasoning("line one\nline tw")
    assert out.getvalue() == "thinking…\nline one\n"  # the unfinished line stays live
    stream.append_reasoning("o\nthree")
    assert out.getvalue() == "thinking…\nline one\nline two\n"
    stream.finish(interrupted=True)  # Ctrl-C while thinking
    assert out.getvalue() == "thinking…\nline one\nline two\nthree\n⏹ interrupted\n\n"


def test_markdown_stream_can_hide_the_thinking() -> None:
    hidden = _render(THINKING_THEN_ANSWER, reasoning=False)
    assert "think" not in hidden and "greets" not in hidden
    assert hidden.startswith("Hi".center(60)) and "Hello, world!" in hidden


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _plain(
    out: io.StringIO, notes: io.StringIO | None = None, *, reasoning: bool = True
) -> PlainStream:
    stream = PlainStream(out, notes, reasoning=reasoning)
    stream.start()
    for kind, piece in THINKING_THEN_ANSWER:
        (stream.append if kind == "text" else stream.append_reasoning)(piece)
    stream.finish()
    return stream


def test_plain_stream_keeps_the_answer_apart_from_the_thinking() -> None:
    out, notes = io.StringIO(), io.StringIO()
    _plain(out, notes)  # stdout is a pipe: the thinking goes to stderr
    assert out.getvalue() == "# Hi\n\nHello, **world**!\n"
    assert notes.getvalue() == "Let me think.\n\nThe user greets.\n"
    hidden_out, hidden_notes = io.StringIO(), io.StringIO()
    _plain(hidden_out, hidden_notes, reasoning=False)
    assert hidden_out.getvalue() == out.getvalue() and hidden_notes.getvalue() == ""
    terminal = _Terminal()
    _plain(terminal)  # --raw on a terminal: one stream, the thinking framed
    assert _STYLES.sub("", terminal.getvalue()) == (
        "thinking…\nLet me think.\n\nThe user greets.\n…done thinking\n\n"
        "# Hi\n\nHello, **world**!\n"
    )


def test_prompt_history_keeps_its_last_entries(tmp_path: Path) -> None:
    from prompt_toolkit.history import FileHistory

    path = tmp_path / "history"
    trim_history(path)  # no file yet: nothing to do
    history = FileHistory(str(path))
    for number in range(HISTORY_ENTRIES + 5):
        history.store_string(f"line {number}\nsecond" if number == 900 else f"line {number}")
    trim_history(path)
    kept = list(FileHistory(str(path)).load_history_strings())  # newest first
    assert len(kept) == HISTORY_ENTRIES
    assert kept[0] == f"line {HISTORY_ENTRIES + 4}" and kept[-1] == "line 5"
    assert "line 900\nsecond" in kept
    before = path.read_bytes()
    trim_history(path)
    assert path.read_bytes() == before and not list(tmp_path.glob(".history.*"))


def test_triple_quote_blocks() -> None:
    assert block_open('"""') and block_open('"""first line\nsecond')
    assert not block_open('"""one"""') and not block_open("plain")
    assert unwrap_block('"""\nline 1\nline 2\n"""') == "line 1\nline 2"
    assert unwrap_block("  plain  ") == "plain"


def test_summary_of_a_bare_answer() -> None:
    stats = AnswerStats(started=0.0, first_token=0.25, last_token=1.25, finished=1.3, chunks=11)
    assert summary(stats) == "0.25 s to first token · ~10.0 tok/s · ~11 completion tokens · 1.30 s"
