"""The relay's paced sender: keep-alive comments in every silence of a completion stream, never
in the middle of a chunk being sent (``infer_cli.proxy.sse.Paced``)."""

from __future__ import annotations

import asyncio

from infer_cli.proxy import sse

COMMENT = sse.KEEPALIVE_COMMENT


async def test_comments_before_the_first_chunk_and_in_every_gap() -> None:
    out: list[bytes] = []

    async def emit(chunk: bytes) -> None:
        out.append(chunk)

    paced = sse.Paced(emit, 0.1, first_after=0.05)
    try:
        await asyncio.sleep(0.12)
        await paced.send(b"a")
        await asyncio.sleep(0.25)
        await paced.send(b"b")
        await paced.send(b"c")
    finally:
        paced.close()
    first = out.index(b"a")
    assert first >= 1 and set(out[:first]) == {COMMENT}
    gap = out[first + 1 : out.index(b"b")]
    assert len(gap) >= 1 and set(gap) == {COMMENT}
    assert out[-2:] == [b"b", b"c"]


async def test_no_comment_while_a_chunk_is_being_sent() -> None:
    out: list[bytes] = []
    release = asyncio.Event()

    async def emit(chunk: bytes) -> None:
        out.append(b"start " + chunk)
        if chunk == b"slow":
            await release.wait()  # a client that does not read: the send waits
        out.append(b"end " + chunk)

    paced = sse.Paced(emit, 0.05, first_after=0.05)
    try:
        sending = asyncio.ensure_future(paced.send(b"slow"))
        await asyncio.sleep(0.3)  # six intervals with the chunk on its way
        assert out == [b"start slow"]
        release.set()
        await sending
        await asyncio.sleep(0.12)  # silence again: comments again
    finally:
        paced.close()
    assert out[:2] == [b"start slow", b"end slow"]
    assert b"start " + COMMENT in out[2:]


async def test_a_chunk_waits_for_the_comment_being_sent() -> None:
    out: list[bytes] = []
    commenting = asyncio.Event()
    release = asyncio.Event()

    async def emit(chunk: bytes) -> None:
        out.append(b"start " + chunk)
        if chunk == COMMENT and not release.is_set():
            commenting.set()
            await release.wait()
        out.append(b"end " + chunk)

    paced = sse.Paced(emit, 0.05, first_after=0.01)
    try:
        await asyncio.wait_for(commenting.wait(), 5)
        sending = asyncio.ensure_future(paced.send(b"a"))
        await asyncio.sleep(0.05)
        assert out == [b"start " + COMMENT]  # the chunk has not started
        release.set()
        await sending
    finally:
        paced.close()
    assert out[:4] == [b"start " + COMMENT, b"end " + COMMENT, b"start a", b"end a"]


async def test_no_comment_while_a_chunk_that_waited_for_a_comment_is_being_sent() -> None:
    out: list[bytes] = []
    commenting = asyncio.Event()
    release_comment = asyncio.Event()
    release_chunk = asyncio.Event()

    async def emit(chunk: bytes) -> None:
        out.append(b"start " + chunk)
        if chunk == COMMENT and not release_comment.is_set():
            commenting.set()
            await release_comment.wait()
        if chunk == b"slow":
            await release_chunk.wait()  # then a client that does not read
        out.append(b"end " + chunk)

    paced = sse.Paced(emit, 0.05, first_after=0.01)
    try:
        await asyncio.wait_for(commenting.wait(), 5)
        sending = asyncio.ensure_future(paced.send(b"slow"))
        await asyncio.sleep(0.02)
        release_comment.set()
        await asyncio.sleep(0.3)  # six intervals with the chunk on its way
        assert out == [b"start " + COMMENT, b"end " + COMMENT, b"start slow"]
        release_chunk.set()
        await sending
        await asyncio.sleep(0.02)  # less than an interval since the chunk: no comment yet
    finally:
        paced.close()
    assert out[2:] == [b"start slow", b"end slow"]
