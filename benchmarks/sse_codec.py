"""The SSE codec's cost per streamed chunk: the readers before ``infer_cli/wire/sse.py`` against it,
in one run, on the same chunks.

Three readers, each as it reads a stream in the product:

- *proxy*: each upstream read cut into whole events and each event's data taken out (the proxy's
  ``EventSplitter.feed`` + ``event_data``, once per read, before every other step of its rewrite);
- *client*: each read decoded into typed events (``SSEDecoder.feed``, as ``infer chat`` does);
- *bench*: each read cut into events and their data taken out (the load generator; before, an
  inline split on newlines in ``bench/stream.py``).

The reads are vLLM's chat chunks (one ``data:`` event of about 240 bytes each, ``\\n\\n`` ends),
one event per read (a paced engine) or four per read (a saturated one, whose writes coalesce).
The old readers are loaded from git (``--old-rev``, default the commit before ``wire/sse``): the
proxy's and the client's modules as they were, and the bench's split as it was inlined. Each
reader handles ``--chunks`` reads ``--repeats`` times, old and new alternating; the figure is the
median CPU nanoseconds per read (this thread's CPU time, so that time the machine gives to other
processes is left out), and new/old as a ratio (below 1: the new one is cheaper).

    .venv/bin/python benchmarks/sse_codec.py
    .venv/bin/python benchmarks/sse_codec.py --chunks 200000 --repeats 7 --output sse_codec.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from infer_cli.wire import sse as new  # noqa: E402

CHUNK = (
    b'data: {"id":"chatcmpl-0f1e2d3c4b5a69788796a5b4c3d2e1f0","object":"chat.completion.chunk",'
    b'"created":1764806400,"model":"HuggingFaceTB/SmolLM2-135M-Instruct","choices":[{"index":0,'
    b'"delta":{"content":" token"},"logprobs":null,"finish_reason":null}]}\n\n'
)

Reader = Callable[[Sequence[bytes]], int]
"""Reads every chunk of a stream; returns how many data payloads it found (checked equal)."""


def load_old(rev: str, path: str) -> types.ModuleType:
    """A module of the package as it was at ``rev`` (its imports resolve against today's)."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType(f"old_{path.replace('/', '_').removesuffix('.py')}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:{path}", "exec"), module.__dict__)
    return module


def proxy_reader(module: Any) -> Reader:
    def read(chunks: Sequence[bytes]) -> int:
        splitter = module.EventSplitter()
        event_data = module.event_data
        found = 0
        for chunk in chunks:
            for event in splitter.feed(chunk):
                if event_data(event) is not None:
                    found += 1
        return found

    return read


def client_reader(decoder_class: Any) -> Reader:
    def read(chunks: Sequence[bytes]) -> int:
        decoder = decoder_class()
        found = 0
        for chunk in chunks:
            for event in decoder.feed(chunk):
                if event.data:
                    found += 1
        return found

    return read


def old_bench_reader(chunks: Sequence[bytes]) -> int:
    """``bench/stream.py``'s split before wire/sse, its JSON parse left out."""
    pending = b""
    found = 0
    for data in chunks:
        if pending:
            data = pending + data
        if b"\n" not in data:
            pending = data
            continue
        *lines, pending = data.split(b"\n")
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                continue
            found += 1
    return found


def new_bench_reader(chunks: Sequence[bytes]) -> int:
    """``bench/stream.py``'s split on wire/sse, its JSON parse left out."""
    splitter = new.EventSplitter()
    found = 0
    for data in chunks:
        for payload in splitter.feed_data(data):
            if payload.strip() == b"[DONE]":
                continue
            found += 1
    return found


def per_read_ns(read: Reader, chunks: Sequence[bytes]) -> float:
    """CPU time of this thread, not wall time: a shared machine's other work is left out."""
    started = time.thread_time_ns()
    read(chunks)
    return (time.thread_time_ns() - started) / len(chunks)


def compare(old: Reader, fresh: Reader, chunks: Sequence[bytes], repeats: int) -> dict[str, float]:
    if old(chunks[:1000]) != fresh(chunks[:1000]):
        raise SystemExit("the old and the new reader found different events: fix that first")
    olds: list[float] = []
    news: list[float] = []
    for round_ in range(repeats):
        pair = [(old, olds), (fresh, news)]
        for reader, into in pair if round_ % 2 == 0 else reversed(pair):
            into.append(per_read_ns(reader, chunks))
    old_ns, new_ns = statistics.median(olds), statistics.median(news)
    return {"old_ns": old_ns, "new_ns": new_ns, "ratio": new_ns / old_ns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-rev", default="dafd6ed~1", help="git revision of the old readers")
    parser.add_argument("--chunks", type=int, default=100_000, help="reads per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="measurements of each reader")
    parser.add_argument("--output", type=Path, help="write the results as JSON")
    args = parser.parse_args()

    old_proxy = load_old(args.old_rev, "infer_cli/proxy/sse.py")
    old_client = load_old(args.old_rev, "infer_cli/client/sse.py")
    streams = {
        "1 event/read": [CHUNK] * args.chunks,
        "4 events/read": [CHUNK * 4] * args.chunks,
    }
    readers = {
        "proxy": (proxy_reader(old_proxy), proxy_reader(new)),
        "client": (client_reader(old_client.SSEDecoder), client_reader(new.SSEDecoder)),
        "bench": (old_bench_reader, new_bench_reader),
    }
    results: dict[str, Any] = {"old_rev": args.old_rev, "chunk_bytes": len(CHUNK)}
    print(f"old: {args.old_rev}; median CPU ns per read over {args.repeats} x {args.chunks} reads")
    print(f"{'reader':8} {'stream':14} {'old ns':>8} {'new ns':>8} {'new/old':>8}")
    for reader_name, (old, fresh) in readers.items():
        for stream_name, chunks in streams.items():
            figures = compare(old, fresh, chunks, args.repeats)
            results[f"{reader_name}, {stream_name}"] = figures
            print(
                f"{reader_name:8} {stream_name:14} {figures['old_ns']:8.0f} "
                f"{figures['new_ns']:8.0f} {figures['ratio']:8.2f}"
            )
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
