"""Workloads: what to send, as pure, seeded data (no I/O except reading a dataset file).

A :class:`Workload` is a list of :class:`Phase` s run one after another (long-doc's warm-up round,
then its query round); a phase is a list of :class:`Session` s; a session is a list of
:class:`Turn` s sent one after another, each after the previous one's answer (multi-turn's users;
every other workload has sessions of one turn). A turn's prompt is a list of :class:`Segment` s:
target lengths in tokens with a key, and equal keys mean equal text (shared prefixes, system
prompts, documents). :mod:`~infer_cli.bench.tokens` turns segments into text of exactly that
length when the server can tokenize.

A session's ``group`` names the cache context it belongs to (a prefix, a user, a document): the
runner calls a request *warm* when an earlier request of its group had finished before it was
sent, so its shared part could be in the prefix cache, and *cold* otherwise.

:func:`with_head` puts the run's *head* (a few words drawn from the run's nonce) at the start of
every conversation, so one run's prompts share no prefix with another's while the parts a
workload shares (prefixes, the system prompt, documents) stay shared within the run.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, assert_never

from infer_cli.bench.text import estimate_tokens
from infer_cli.errors import UsageError

RepeatMode = Literal["tile", "interleave", "random"]

Api = Literal["chat", "completions"]
"""Which OpenAI API the prompts go to: ``/chat/completions`` (messages; a session's system prompt
is a system message) or ``/completions`` (one text)."""


class DatasetError(UsageError):
    """A dataset file is missing, unreadable, or not in a format infer bench reads."""


@dataclass(frozen=True, slots=True)
class Segment:
    key: str
    """Equal keys, equal text."""
    tokens: int
    """Target length in tokens (an estimate when ``text`` is given)."""
    text: str | None = None
    """Literal text (dataset files); ``None``: filler text generated from the key."""


@dataclass(frozen=True, slots=True)
class Turn:
    prompt: tuple[Segment, ...]
    max_tokens: int | None
    messages: tuple[dict[str, Any], ...] | None = None
    """Literal chat messages from a dataset (then ``prompt`` only estimates their length)."""

    @property
    def target_tokens(self) -> int:
        return sum(segment.tokens for segment in self.prompt)


@dataclass(frozen=True, slots=True)
class Session:
    turns: tuple[Turn, ...]
    group: str | None = None
    system: tuple[Segment, ...] = ()
    """A system prompt (chat) or leading text (completions) before every turn."""
    history: bool = False
    """Later turns carry the earlier turns and their answers (a growing conversation)."""


@dataclass(frozen=True)
class Phase:
    name: str
    sessions: tuple[Session, ...]

    @property
    def requests(self) -> int:
        return sum(len(session.turns) for session in self.sessions)


@dataclass(frozen=True)
class Workload:
    name: str
    phases: tuple[Phase, ...]
    params: dict[str, Any] = field(default_factory=dict)
    """What shaped it (lengths, counts, seed, file): saved with the results."""
    ignore_eos: bool = True
    """Generate exactly ``max_tokens`` (synthetic workloads); real answers end on their own."""

    @property
    def requests(self) -> int:
        return sum(phase.requests for phase in self.phases)

    def segments(self) -> Iterable[Segment]:
        """Every distinct generated segment (literal ones are left out)."""
        seen: set[str] = set()
        for phase in self.phases:
            for session in phase.sessions:
                for turn in session.turns:
                    for segment in (*session.system, *turn.prompt):
                        if segment.text is None and segment.key not in seen:
                            seen.add(segment.key)
                            yield segment


HEAD_KEY = "head"
"""The key of the run's head segment (its text comes from the run's nonce)."""
HEAD_TOKENS = 4


def with_head(workload: Workload, tokens: int = HEAD_TOKENS) -> Workload:
    """The workload with the run's head first in every conversation.

    The head goes before the system prompt, or else before the first turn's prompt; the segment
    right after it is shortened by as many tokens (down to one), so prompts keep their length.
    Equal keys keep equal lengths, so what a workload shares stays shared.
    """
    head = Segment(HEAD_KEY, tokens)

    def lead(segments: tuple[Segment, ...]) -> tuple[Segment, ...]:
        if not segments:
            return (head,)
        first, rest = segments[0], segments[1:]
        if first.text is None:
            first = Segment(first.key, max(1, first.tokens - tokens))
        return (head, first, *rest)

    def session(s: Session) -> Session:
        if not s.turns:
            return s
        if s.system:
            return Session(s.turns, s.group, lead(s.system), s.history)
        first = s.turns[0]
        turn = Turn(lead(first.prompt), first.max_tokens, first.messages)
        return Session((turn, *s.turns[1:]), s.group, s.system, s.history)

    phases = tuple(
        Phase(phase.name, tuple(session(s) for s in phase.sessions)) for phase in workload.phases
    )
    return Workload(workload.name, phases, workload.params, workload.ignore_eos)


def first_seen(prompt: Sequence[Segment], sent: set[str]) -> int:
    """Tokens of ``prompt`` from its first segment not in ``sent`` on (a prefix cache can hold
    only what was sent before it: hits on these tokens come from outside the run)."""
    for index, segment in enumerate(prompt):
        if segment.key not in sent:
            return sum(s.tokens for s in prompt[index:])
    return 0


# --- helpers -----------------------------------------------------------------------------------


def sample_length(rng: random.Random, mean: int, range_ratio: float) -> int:
    """A length drawn uniformly from ``[mean * (1 - r), mean * (1 + r)]`` (vLLM's range ratio)."""
    if range_ratio <= 0:
        return mean
    low = max(1, int(mean * (1 - range_ratio)))
    high = max(low, int(mean * (1 + range_ratio)))
    return rng.randint(low, high)


def _single(turn: Turn, group: str | None = None) -> Session:
    return Session(turns=(turn,), group=group)


# --- the workloads -----------------------------------------------------------------------------


def random_workload(
    *,
    num_requests: int,
    input_len: int,
    output_len: int,
    range_ratio: float = 0.0,
    seed: int = 0,
    name: str = "random",
) -> Workload:
    """Independent prompts of ``input_len`` tokens (± ``range_ratio``), ``output_len`` answers."""
    rng = random.Random(seed)
    sessions = []
    for index in range(num_requests):
        prompt = (Segment(f"r{index}", sample_length(rng, input_len, range_ratio)),)
        sessions.append(_single(Turn(prompt, sample_length(rng, output_len, range_ratio))))
    params = {
        "num_requests": num_requests,
        "input_len": input_len,
        "output_len": output_len,
        "range_ratio": range_ratio,
        "seed": seed,
    }
    return Workload(name, (Phase("main", tuple(sessions)),), params)


def shared_prefix_workload(
    *,
    prefixes: int,
    suffixes: int,
    prefix_len: int,
    suffix_len: int,
    output_len: int,
    seed: int = 0,
) -> Workload:
    """``prefixes`` x ``suffixes`` prompts: each prefix shared by ``suffixes`` requests.

    Sent round-robin over the prefixes (p0s0, p1s0, ..., p0s1, ...), so the first request of each
    prefix comes first (cold) and the others follow it (warm), as vLLM's prefix-repetition dataset
    and LMCache's prefix-suffix tuner shape it.
    """
    sessions = [
        _single(
            Turn((Segment(f"p{p}", prefix_len), Segment(f"p{p}s{s}", suffix_len)), output_len),
            group=f"prefix-{p}",
        )
        for s in range(suffixes)
        for p in range(prefixes)
    ]
    params = {
        "prefixes": prefixes,
        "suffixes": suffixes,
        "prefix_len": prefix_len,
        "suffix_len": suffix_len,
        "output_len": output_len,
        "seed": seed,
    }
    return Workload("shared-prefix", (Phase("main", tuple(sessions)),), params)


def multi_turn_workload(
    *,
    users: int,
    rounds: int,
    system_len: int,
    user_context_len: int,
    question_len: int,
    answer_len: int,
    seed: int = 0,
) -> Workload:
    """LMCache's multi-round QA: ``users`` conversations of ``rounds`` turns each.

    Every user shares one system prompt, has a context of its own before the first question, and
    sends each next question with the whole history (earlier questions and the model's real
    answers), so every turn's prompt extends the previous one.
    """
    system = (Segment("system", system_len),) if system_len > 0 else ()
    sessions = []
    for u in range(users):
        turns = []
        for r in range(rounds):
            prompt: tuple[Segment, ...] = (Segment(f"u{u}q{r}", question_len),)
            if r == 0 and user_context_len > 0:
                prompt = (Segment(f"u{u}context", user_context_len), *prompt)
            turns.append(Turn(prompt, answer_len))
        sessions.append(Session(tuple(turns), group=f"user-{u}", system=system, history=True))
    params = {
        "users": users,
        "rounds": rounds,
        "system_len": system_len,
        "user_context_len": user_context_len,
        "question_len": question_len,
        "answer_len": answer_len,
        "seed": seed,
    }
    return Workload("multi-turn", (Phase("main", tuple(sessions)),), params)


def repeat_order(documents: int, repeat_count: int, mode: RepeatMode, seed: int) -> list[int]:
    """The query round's document order: tile (fewest hits), interleave (most), random."""
    if mode == "tile":
        return [d for _ in range(repeat_count) for d in range(documents)]
    if mode == "interleave":
        return [d for d in range(documents) for _ in range(repeat_count)]
    if mode == "random":
        order = [d for _ in range(repeat_count) for d in range(documents)]
        random.Random(seed).shuffle(order)
        return order
    assert_never(mode)


def long_doc_workload(
    *,
    documents: int,
    document_len: int,
    question_len: int,
    output_len: int,
    repeat_count: int,
    repeat_mode: RepeatMode,
    seed: int = 0,
) -> Workload:
    """LMCache's long-document QA: a warm-up round that reads every document once, then a query
    round that asks about each document ``repeat_count`` times in ``repeat_mode`` order."""
    warm = tuple(
        _single(
            Turn((Segment(f"d{d}", document_len), Segment(f"d{d}warm", question_len)), output_len),
            group=f"doc-{d}",
        )
        for d in range(documents)
    )
    query = tuple(
        _single(
            Turn((Segment(f"d{d}", document_len), Segment(f"d{d}q{k}", question_len)), output_len),
            group=f"doc-{d}",
        )
        for k, d in enumerate(repeat_order(documents, repeat_count, repeat_mode, seed))
    )
    params = {
        "documents": documents,
        "document_len": document_len,
        "question_len": question_len,
        "output_len": output_len,
        "repeat_count": repeat_count,
        "repeat_mode": repeat_mode,
        "seed": seed,
    }
    return Workload("long-doc", (Phase("warm-up", warm), Phase("query", query)), params)


# --- dataset files -----------------------------------------------------------------------------


def file_workload(
    path: Path,
    *,
    num_requests: int | None,
    output_len: int | None,
    seed: int = 0,
    shuffle: bool = False,
) -> Workload:
    """Prompts from a file: JSONL (``{"prompt": ...}`` or ``{"messages": [...]}`` per line, with
    an optional ``max_tokens``) or ShareGPT (a JSON list of ``{"conversations": [...]}``; the first
    human turn is the prompt, the answer's length the output length)."""
    items = _read_dataset(path)
    if not items:
        raise DatasetError(f"{path} holds no prompts", hint="one JSON object per line, or ShareGPT")
    if shuffle:
        random.Random(seed).shuffle(items)
    count = num_requests if num_requests is not None else len(items)
    sessions = []
    for index in range(count):
        prompt, messages, length = items[index % len(items)]
        max_tokens = output_len if output_len is not None else length
        tokens = estimate_tokens(prompt)
        turn = Turn((Segment(f"f{index % len(items)}", tokens, text=prompt),), max_tokens, messages)
        sessions.append(_single(turn))
    params = {
        "path": str(path),
        "prompts_in_file": len(items),
        "num_requests": count,
        "output_len": output_len,
        "seed": seed,
        "shuffle": shuffle,
    }
    return Workload("file", (Phase("main", tuple(sessions)),), params, ignore_eos=False)


_Item = tuple[str, tuple[dict[str, Any], ...] | None, int | None]


def _read_dataset(path: Path) -> list[_Item]:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(
            f"dataset file {path} does not exist", hint="check the path given to --dataset"
        ) from None
    except IsADirectoryError:
        raise DatasetError(f"dataset {path} is a folder, not a file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read dataset file {path}: {exc}") from None
    stripped = raw.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise DatasetError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(data, list):
            raise DatasetError(f"{path}: expected a JSON list of conversations")
        entries: Sequence[tuple[int, Any]] = list(enumerate(data, start=1))
        where = "entry"
    else:
        parsed = []
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                parsed.append((number, json.loads(line)))
            except ValueError as exc:
                raise DatasetError(f"{path}:{number} is not valid JSON: {exc}") from None
        entries = parsed
        where = "line"
    items = []
    for number, entry in entries:
        item = _item(entry)
        if item is None:
            raise DatasetError(
                f"{path} {where} {number}: expected 'prompt', 'messages' or 'conversations'",
                hint='e.g. {"prompt": "Hello", "max_tokens": 64}',
            )
        if item[0]:
            items.append(item)
    return items


def _item(entry: Any) -> _Item | None:
    if not isinstance(entry, dict):
        return None
    length = entry.get("max_tokens", entry.get("output_len"))
    length = length if isinstance(length, int) and not isinstance(length, bool) else None
    prompt = entry.get("prompt")
    if isinstance(prompt, str):
        return prompt, None, length
    messages = entry.get("messages")
    if isinstance(messages, list) and all(isinstance(m, dict) for m in messages) and messages:
        text = "\n".join(str(m.get("content") or "") for m in messages)
        return text, tuple(messages), length
    conversations = entry.get("conversations")
    if isinstance(conversations, list):
        return _sharegpt(conversations)
    return None


def _sharegpt(conversations: list[Any]) -> _Item | None:
    turns = [c for c in conversations if isinstance(c, dict)]
    for index, turn in enumerate(turns):
        if turn.get("from") in ("human", "user") and isinstance(turn.get("value"), str):
            answer = turns[index + 1] if index + 1 < len(turns) else None
            length = None
            if answer is not None and isinstance(answer.get("value"), str):
                length = max(1, estimate_tokens(answer["value"]))
            return turn["value"], None, length
    return ("", None, None) if turns else None
