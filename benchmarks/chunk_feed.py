"""The exchange's cost per streamed chunk: counted from its bytes by a learned chunk template
(``infer_cli/proxy/openrouter/passing.py``) against parsed, in one run, on the same stream.

A stream is vLLM's: a role chunk, then ``--chunks`` chat chunks of text (one ``data:`` event of
about 250 bytes each, ``"token_ids":null`` included, one event per read as a paced engine sends
them; ``--per-read N`` joins N events in each read, as a saturated engine's reads come), a finish
chunk, the usage chunk and ``[DONE]``. Each way feeds the whole stream to a new
:class:`~infer_cli.proxy.openrouter.exchange.Exchange` ``--repeats`` times, alternating; *parsed*
learns no template, so each chunk takes the full parse as it did before the
template. The figure is the median CPU microseconds per chunk (this thread's CPU time, so that time
the machine gives to other processes is left out), and template/parsed as a ratio. Both ways must
give the client the same bytes and count the same output chunks; the run stops if they do not.

    .venv/bin/python benchmarks/chunk_feed.py
    .venv/bin/python benchmarks/chunk_feed.py --per-read 4
    .venv/bin/python benchmarks/chunk_feed.py --chunks 50000 --repeats 9 --output chunk_feed.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from infer_cli.proxy.openrouter.exchange import Exchange  # noqa: E402
from infer_cli.proxy.openrouter.passing import ChunkTemplate  # noqa: E402
from infer_cli.proxy.openrouter.pricing import Prices  # noqa: E402

HEAD = {
    "id": "chatcmpl-0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "object": "chat.completion.chunk",
    "created": 1764806400,
    "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
}
WORDS = [" token", " the", "\n", " naïve", ' "quoted"', ",", " 42", ""]


def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
    body = {**HEAD, "choices": choices, **extra}
    return (
        b"data: " + json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"
    )


def stream(chunks: int, per_read: int = 1) -> list[bytes]:
    def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "index": 0,
            "delta": delta,
            "logprobs": None,
            "finish_reason": finish,
            "token_ids": None,
        }

    reads = [event([choice({"role": "assistant", "content": ""})])]
    reads += [event([choice({"content": WORDS[n % len(WORDS)]})]) for n in range(chunks)]
    reads.append(event([choice({}, "stop")]))
    usage = {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}
    reads.append(event([], usage=usage))
    reads.append(b"data: [DONE]\n\n")
    return [b"".join(reads[at : at + per_read]) for at in range(0, len(reads), per_read)]


_learn_nothing = classmethod(lambda cls, *args, **kwargs: None)


def feed(reads: list[bytes], *, template: bool) -> tuple[float, bytes, int]:
    """CPU seconds to feed ``reads`` to a new exchange, the client's bytes, output chunks."""
    exchange = Exchange(
        model=str(HEAD["model"]),
        route="/v1/chat/completions",
        streamed=True,
        text=False,
        prices=Prices(),
        observers=[],
    )
    out: list[bytes] = []
    with contextlib.ExitStack() as stack:
        if not template:  # nothing learned, not even for the rest of a read of several events
            stack.enter_context(mock.patch.object(ChunkTemplate, "learn", _learn_nothing))
        started = time.thread_time()
        for raw in reads:
            piece, ended = exchange.feed(raw)
            out.append(piece)
            if ended:
                break
        spent = time.thread_time() - started
    return spent, b"".join(out), exchange._chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--per-read", type=int, default=1, help="events in each read")
    parser.add_argument("--output", type=Path, help="write the figures as JSON")
    options = parser.parse_args()
    reads = stream(options.chunks, options.per_read)
    events = options.chunks + 4
    spent: dict[str, list[float]] = {"template": [], "parsed": []}
    results: dict[str, tuple[bytes, int]] = {}
    for _ in range(options.repeats):
        for way in ("template", "parsed"):
            seconds, out, counted = feed(reads, template=way == "template")
            spent[way].append(seconds / events * 1e6)
            results[way] = (out, counted)
    if results["template"] != results["parsed"]:
        raise SystemExit("the two ways gave the client different bytes or counts")
    figures = {way: statistics.median(values) for way, values in spent.items()}
    ratio = figures["template"] / figures["parsed"]
    print(f"{'way':10} {'µs CPU per chunk':>18}")
    for way, value in figures.items():
        print(f"{way:10} {value:18.2f}")
    print(f"template/parsed: {ratio:.2f} ({results['template'][1]} output chunks each)")
    if options.output:
        options.output.write_text(json.dumps({**figures, "ratio": ratio}, indent=2) + "\n")


if __name__ == "__main__":
    main()
