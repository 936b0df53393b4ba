"""Plain streamed chunks told from their bytes (``openrouter/passing.py``): a template learned from
one parsed chunk must say exactly what a parse would say, for every chunk it matches, and decline
everything else.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from infer_cli.proxy.openrouter import exchange as exchange_module
from infer_cli.proxy.openrouter.exchange import Exchange, _has_output
from infer_cli.proxy.openrouter.passing import ChunkTemplate
from infer_cli.proxy.openrouter.pricing import Prices

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1733300000, "model": "m"}
TEXTS = ["", "a", " hello", 'say "hi"', "back\\slash", "ends\\", "line\nbreak", "tab\t", "é ✓ 🙂"]


def event(chunk: dict[str, Any], *, ascii_only: bool = True) -> bytes:
    data = json.dumps(chunk, separators=(",", ":"), ensure_ascii=ascii_only)
    return b"data: " + data.encode() + b"\n\n"


def chat(content: Any = "x", **choice: Any) -> dict[str, Any]:
    delta = {"content": content} if content is not ... else {}
    return {**HEAD, "choices": [{"index": 0, "delta": delta, "logprobs": None, **choice}]}


def text_chunk(value: Any = "x", **choice: Any) -> dict[str, Any]:
    body = {**HEAD, "object": "text_completion"}
    return {**body, "choices": [{"index": 0, "text": value, "logprobs": None, **choice}]}


def parsed_answer(raw: bytes, *, text: bool) -> bool | None:
    """What a parse says of one event: its output when it is plain (passes unchanged, one choice,
    unfinished, no usage), else None."""
    chunk = json.loads(raw[6:-2])
    choices = chunk.get("choices")
    if chunk.get("usage") is not None or "error" in chunk:
        return None
    if not isinstance(choices, list) or len(choices) != 1:
        return None
    if choices[0].get("finish_reason") is not None or choices[0].get("logprobs") is not None:
        return None
    delta = choices[0].get("delta")
    if not text and (not isinstance(delta, dict) or set(delta) != {"content"}):
        return None
    if text and "delta" in choices[0]:
        return None
    return _has_output(choices[0])


@pytest.mark.parametrize("text", [False, True])
def test_every_match_says_what_a_parse_says(text: bool) -> None:
    make = text_chunk if text else chat
    template = ChunkTemplate.learn(event(make("first")), make("first"), text=text)
    assert template is not None
    candidates = [make(value) for value in TEXTS]
    candidates += [
        make(None),
        make("x", finish_reason="stop"),
        make("x", finish_reason=None, stop_reason=None),
        {**make("x"), "usage": {"prompt_tokens": 1}},
        {**make("x"), "id": "chatcmpl-2"},
        {**make("x"), "choices": make("x")["choices"] * 2},
        {**make("x"), "error": {"message": "boom"}},
    ]
    if not text:
        candidates += [
            {**HEAD, "choices": [{"index": 0, "delta": {"tool_calls": [{"id": "t"}]}}]},
            {**HEAD, "choices": [{"index": 0, "delta": {"content": "", "reasoning": "r"}}]},
            chat(...),
        ]
    matched = 0
    for chunk in candidates:
        for ascii_only in (True, False):
            raw = event(chunk, ascii_only=ascii_only)
            said = template.output(raw)
            if said is not None:
                matched += 1
                assert said == parsed_answer(raw, text=text), raw
    assert matched >= 8  # the plain ones matched: the template is used, not merely safe


def test_vllms_chunks_teach_a_template() -> None:
    """vLLM writes ``"token_ids":null`` in each chunk (``stop_reason`` on text completions)."""
    chunk = chat("x", finish_reason=None, token_ids=None)
    template = ChunkTemplate.learn(event(chunk), chunk, text=False)
    assert template is not None
    assert template.output(event(chat("yz", finish_reason=None, token_ids=None))) is True
    assert template.output(event(chat("y", finish_reason=None, token_ids=[5]))) is None
    done = chat("", finish_reason="stop", stop_reason=None, token_ids=None)
    assert template.output(event(done)) is None
    text = text_chunk("x", finish_reason=None, stop_reason=None, token_ids=None)
    assert ChunkTemplate.learn(event(text), text, text=True) is not None


def test_a_chunk_that_is_not_plain_teaches_no_template() -> None:
    for chunk in (
        chat("x", finish_reason="length"),
        {**chat("x"), "usage": {"prompt_tokens": 1}},
        {**chat("x"), "choices": chat("x")["choices"] * 2},
        {**HEAD, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        chat(None),
        chat("x", logprobs={"content": []}),
    ):
        assert ChunkTemplate.learn(event(chunk), chunk, text=False) is None
    multi_line = b'data: {"a":\ndata: 1}\n\n'
    assert ChunkTemplate.learn(multi_line, chat("x"), text=False) is None


def stream_through(
    reads: list[bytes], *, templates: bool, monkeypatch: pytest.MonkeyPatch
) -> tuple[bytes, Exchange]:
    exchange = Exchange(
        model="m",
        route="/v1/chat/completions",
        streamed=True,
        text=False,
        prices=Prices(),
        observers=[],
    )
    out = b""
    with monkeypatch.context() as patch:
        if not templates:  # nothing learned, not even for the rest of a read of several events
            patch.setattr(ChunkTemplate, "learn", classmethod(lambda cls, *args, **kwargs: None))
        for raw in reads:
            piece, ended = exchange.feed(raw)
            out += piece
            if ended:
                break
    return out, exchange


def in_reads(events: list[bytes], rng: random.Random) -> list[bytes]:
    """The events as a saturated engine's reads come: several together, and cut anywhere."""
    stream = b"".join(events)
    reads, at = [], 0
    while at < len(stream):
        size = rng.randint(1, 900)
        reads.append(stream[at : at + size])
        at += size
    return reads


@pytest.mark.parametrize("grouped", [False, True], ids=["a read per event", "reads of several"])
def test_a_stream_comes_out_the_same_with_and_without_templates(
    grouped: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(7)
    events = [
        event({**HEAD, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    ]
    values = [rng.choice([*TEXTS, None]) for _ in range(300)]
    for value in values:
        events.append(event(chat(value), ascii_only=rng.random() < 0.5))
    events.append(event(chat("", finish_reason="stop")))
    events.append(
        event({**HEAD, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 9}})
    )
    events.append(b"data: [DONE]\n\n")
    reads = in_reads(events, rng) if grouped else events
    without, slow = stream_through(reads, templates=False, monkeypatch=monkeypatch)
    parses = []
    decode = exchange_module._decode
    monkeypatch.setattr(exchange_module, "_decode", lambda data: parses.append(1) or decode(data))
    with_, fast = stream_through(reads, templates=True, monkeypatch=monkeypatch)
    assert with_ == without
    assert fast._template is not None
    assert (fast._chunks, fast.finish_reason, len(fast.itl)) == (
        slow._chunks,
        slow.finish_reason,
        len(slow.itl),
    )
    assert fast._chunks == sum(1 for raw in events[1:301] if parsed_answer(raw, text=False))
    # only the chunks a template declines are parsed (a quote in the text or a backslash at its
    # end, a null content), the role chunk, the one the template is learned from, and the last three
    declined = sum(1 for value in values if value is None or '"' in value or value.endswith("\\"))
    assert len(parses) <= declined + 5 < len(events) // 2
