"""Prompt text of exact lengths: the server's ``/tokenize`` when it has one, else estimates.

vLLM (and infer's simulated engine) answer ``POST /tokenize`` at the server root, and the infer
proxy forwards it there. A server without one gets estimated lengths, unless ``--tokenize-url``
names a server that tokenizes with the same tokenizer. Either way the tokens a request really had
are measured from the answer's ``usage``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from infer_cli.bench.text import TextSource
from infer_cli.bench.workloads import Segment, Workload

MAX_FIT_ROUNDS = 5


class ServerTokenizer:
    """Counts tokens with ``POST {root}/tokenize`` (vLLM's API)."""

    def __init__(self, http: httpx.AsyncClient, url: str, model: str) -> None:
        self.http = http
        self.url = url
        self.model = model

    async def count(self, text: str) -> int:
        body = {"model": self.model, "prompt": text, "add_special_tokens": False}
        response = await self.http.post(self.url, json=body)
        response.raise_for_status()
        count = response.json().get("count")
        if not isinstance(count, int):
            raise ValueError(f"{self.url} answered without a token count")
        return count


async def find_tokenizer(
    http: httpx.AsyncClient, roots: Sequence[str], model: str
) -> ServerTokenizer | None:
    """The first of ``roots`` whose ``/tokenize`` answers with a count, or ``None``."""
    for root in dict.fromkeys(roots):
        tokenizer = ServerTokenizer(http, root.rstrip("/") + "/tokenize", model)
        try:
            if await tokenizer.count(" hello world") > 0:
                return tokenizer
        except (httpx.HTTPError, ValueError):
            continue
    return None


@dataclass
class Texts:
    """The text of every segment of a workload, and how its length was established."""

    by_key: dict[str, str] = field(default_factory=dict)
    exact: bool = False
    """Lengths were checked with the server's tokenizer (else: estimates)."""
    source: str = "estimate"
    """Where lengths came from: the tokenize URL, or ``estimate``."""
    off_target: int = 0
    """Segments whose length could not be fitted exactly (off by a token or two)."""

    def join(self, segments: Sequence[Segment]) -> str:
        return "".join(
            segment.text if segment.text is not None else self.by_key[segment.key]
            for segment in segments
        )


async def materialize(
    workload: Workload,
    source: TextSource,
    tokenizer: ServerTokenizer | None,
    *,
    parallel: int = 8,
) -> Texts:
    """Text for every generated segment: ``tokens`` words, then fitted with the tokenizer."""
    texts = Texts(exact=tokenizer is not None, source=tokenizer.url if tokenizer else "estimate")
    segments = list(workload.segments())
    if tokenizer is None:
        texts.by_key = {s.key: source.text(s.key, s.tokens) for s in segments}
        return texts
    limit = asyncio.Semaphore(parallel)

    async def fit(segment: Segment) -> None:
        async with limit:
            text, exact = await fit_segment(source, segment, tokenizer)
        texts.by_key[segment.key] = text
        if not exact:
            texts.off_target += 1

    await asyncio.gather(*(fit(segment) for segment in segments))
    return texts


async def fit_segment(
    source: TextSource, segment: Segment, tokenizer: ServerTokenizer
) -> tuple[str, bool]:
    """The segment's text with exactly ``segment.tokens`` tokens when a few rounds find it."""
    target = segment.tokens
    if target <= 0:
        return "", True
    words = target
    best: tuple[int, str] | None = None
    for _ in range(MAX_FIT_ROUNDS):
        text = source.text(segment.key, words)
        count = await tokenizer.count(text)
        if count == target:
            return text, True
        if best is None or abs(count - target) < best[0]:
            best = (abs(count - target), text)
        words = max(1, words + (target - count))
    assert best is not None
    return best[1], False
