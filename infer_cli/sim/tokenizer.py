"""A deterministic stand-in tokenizer and chat template.

Text splits GPT-2 style into special tokens, words of up to 12 letters, numbers of up to 3 digits
and single punctuation marks (each with the space before it), and runs of whitespace. Splitting is
lossless (the tokens join back into the text) and stable across runs and machines; a token's id is
a CRC-32 of its text, so equal prompts give equal ids and the prefix cache can match them. Chat
messages render with ChatML (SmolLM2's template) before they are tokenized.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
"""Special tokens, whose ids are their positions (as in SmolLM2's vocabulary)."""

VOCAB_SIZE = 49152

_SPECIAL_IDS = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
_PATTERN = re.compile(
    "|".join(re.escape(token) for token in SPECIAL_TOKENS)
    + r"| ?(?:[^\W\d_]{1,12}|\d{1,3}|[^\w\s]|_)|\s+(?!\S)|\s+"
)


def split(text: str) -> list[str]:
    """The token strings of ``text``; ``"".join(split(text)) == text``."""
    return _PATTERN.findall(text)


_TEXTS: dict[int, str] = dict(enumerate(SPECIAL_TOKENS))
"""The text of every id made so far (ids are hashes: this is how they are read back)."""


@lru_cache(maxsize=1 << 16)
def token_id(token: str) -> int:
    """The id of one token string: fixed for special tokens, else a stable hash."""
    special = _SPECIAL_IDS.get(token)
    if special is not None:
        return special
    offset = len(SPECIAL_TOKENS)
    found = offset + zlib.crc32(token.encode("utf-8", "surrogatepass")) % (VOCAB_SIZE - offset)
    if len(_TEXTS) < VOCAB_SIZE:
        _TEXTS.setdefault(found, token)
    return found


def decode(ids: Iterable[int]) -> str:
    """The text of token ids: the text each id was made from (the first, on a hash collision),
    ``<unk:ID>`` for an id that no text seen by this process hashed to."""
    return "".join(_TEXTS.get(index, f"<unk:{index}>") for index in ids)


def encode(text: str) -> list[int]:
    """The token ids of ``text``."""
    return [token_id(token) for token in split(text)]


class TemplateError(ValueError):
    """Chat messages that the template cannot render (the message says why)."""


def render_chat(
    messages: Iterable[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = True,
    continue_final_message: bool = False,
) -> str:
    """One prompt from chat messages, ChatML style: ``<|im_start|>ROLE\\nTEXT<|im_end|>\\n``.

    With ``add_generation_prompt`` the prompt ends with the assistant's header; with
    ``continue_final_message`` the last message stays open so the model continues it.
    """
    parts: list[str] = []
    items = list(messages)
    if not items:
        raise TemplateError("'messages' must not be empty")
    for index, message in enumerate(items):
        if not isinstance(message, Mapping):
            raise TemplateError(f"messages[{index}] must be an object")
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise TemplateError(f"messages[{index}].role must be a non-empty string")
        text = message_text(message.get("content"), where=f"messages[{index}].content")
        last = index == len(items) - 1
        if last and continue_final_message:
            parts.append(f"<|im_start|>{role}\n{text}")
        else:
            parts.append(f"<|im_start|>{role}\n{text}<|im_end|>\n")
    if add_generation_prompt and not continue_final_message:
        parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def message_text(content: Any, *, where: str) -> str:
    """A message's text: a string, null, or a list of text parts (joined by newlines)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for index, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise TemplateError(
                    f"{where}[{index}] is of type {kind!r}; the simulated model reads text only"
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise TemplateError(f"{where}[{index}].text must be a string")
            texts.append(text)
        return "\n".join(texts)
    raise TemplateError(f"{where} must be a string, null or a list of content parts")
