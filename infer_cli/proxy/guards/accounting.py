"""Counting a request's tokens before the engine has: an estimate for the tokens-per-minute
reservation, an upper bound for the ``max_tokens`` default, and the engine's own count (its
``/tokenize``) for a request that ended without the engine's usage (a client that went away).

The estimate is four characters a token (English text with a BPE tokenizer) plus a few tokens of
chat template per message. The upper bound counts UTF-8 bytes instead of characters: a byte-level
tokenizer never makes a token of less than one byte, so the engine's count is at most that (plus
the template's own tokens, bounded by :data:`TEMPLATE_MARGIN` and :data:`MESSAGE_OVERHEAD`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from infer_cli.proxy.state import UpstreamState

log = logging.getLogger("infer.proxy")

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 8
"""Tokens a chat template adds around one message (role header, end marker), at most."""
TEMPLATE_MARGIN = 64
"""Tokens a chat template adds to the whole prompt (a default system prompt, the reply header)."""
TOKENIZE_TIMEOUT = 2.0


@dataclass(frozen=True)
class PromptSize:
    estimate: int
    """Likely prompt tokens."""
    upper: int
    """At most this many prompt tokens (the exact count when the client sent token ids)."""


def prompt_size(payload: dict[str, Any], *, text: bool) -> PromptSize:
    """The size of the prompt of a (validated) chat or text completion request."""
    if text:
        prompt = payload.get("prompt")
        exact = _token_ids(prompt)
        if exact is not None:
            return PromptSize(exact, exact)
        pieces = prompt if isinstance(prompt, list) else [prompt]
        return _of_text([piece for piece in pieces if isinstance(piece, str)], overhead=0)
    messages = payload.get("messages")
    texts: list[str] = []
    count = 0
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        count += 1
        texts.extend(_message_texts(message))
    tools = payload.get("tools")
    if tools:
        texts.append(json.dumps(tools, separators=(",", ":")))
    return _of_text(texts, overhead=TEMPLATE_MARGIN + MESSAGE_OVERHEAD * count)


def completion_allowance(payload: dict[str, Any]) -> int | None:
    """The most completion tokens the request may make: ``max_tokens`` times ``n``; None when
    the request does not say."""
    asked = payload.get("max_completion_tokens") or payload.get("max_tokens")
    if not isinstance(asked, int) or isinstance(asked, bool):
        return None
    choices = payload.get("n")
    return asked * (choices if isinstance(choices, int) and choices > 1 else 1)


def tokenize_body(payload: dict[str, Any], *, text: bool) -> dict[str, Any] | None:
    """What to send to the engine's ``/tokenize`` to count the prompt of ``payload`` (the
    engine's copy); None when the prompt is not one text or one conversation."""
    if text:
        prompt = payload.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        return (
            {"model": payload.get("model"), "prompt": prompt} if isinstance(prompt, str) else None
        )
    body: dict[str, Any] = {"model": payload.get("model"), "messages": payload.get("messages")}
    for name in (
        "tools",
        "chat_template_kwargs",
        "continue_final_message",
        "add_generation_prompt",
    ):
        if name in payload:
            body[name] = payload[name]
    return body


async def engine_count(
    client: httpx.AsyncClient, state: UpstreamState, body: dict[str, Any]
) -> int | None:
    """The engine's own token count of ``body`` (a ``/tokenize`` request); None if it cannot
    say (not ready, an error, no answer within :data:`TOKENIZE_TIMEOUT`)."""
    import httpx

    if not state.ready or state.url is None:
        return None
    headers = {"content-type": "application/json"}
    if state.api_key:
        headers["authorization"] = f"Bearer {state.api_key}"
    try:
        response = await client.post(
            state.url.rstrip("/") + "/tokenize",
            content=json.dumps(body, separators=(",", ":")).encode(),
            headers=headers,
            timeout=TOKENIZE_TIMEOUT,
        )
        answer = response.json() if response.is_success else None
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        log.debug("cannot count a prompt with the engine: %s", exc)
        return None
    count = answer.get("count") if isinstance(answer, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else None


def _of_text(texts: list[str], *, overhead: int) -> PromptSize:
    chars = sum(len(piece) for piece in texts)
    # An ASCII text has as many bytes as characters: no need to encode it to know.
    size = sum(len(piece) if piece.isascii() else len(piece.encode()) for piece in texts)
    return PromptSize(-(-chars // CHARS_PER_TOKEN) + overhead, size + overhead)


def _message_texts(message: dict[str, Any]) -> list[str]:
    texts: list[str] = []
    content = message.get("content")
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
    for name in ("name", "reasoning_content", "reasoning"):
        if isinstance(message.get(name), str):
            texts.append(message[name])
    if message.get("tool_calls"):
        texts.append(json.dumps(message["tool_calls"], separators=(",", ":")))
    return texts


def _token_ids(prompt: object) -> int | None:
    """How many ids a prompt of token ids has (one list, or a batch of lists); None otherwise."""
    if not isinstance(prompt, list) or not prompt:
        return None
    if all(isinstance(item, int) for item in prompt):
        return len(prompt)
    if all(isinstance(item, list) for item in prompt):
        return sum(len(item) for item in prompt)
    return None
