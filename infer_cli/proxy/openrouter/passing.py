"""Which streamed chunks pass to the client as they are, told from their bytes.

Most of a stream is chunks that the proxy forwards unchanged and only counts: one choice, some
text, no finish reason yet. Parsing each one's JSON to learn that cost more than anything else the
proxy did per chunk. An engine writes those chunks alike, byte for byte, but for their text: the
same id, creation time, model and fields around it. So the exchange parses chunks until it meets
one such plain chunk, learns the bytes before and after its text (a :class:`ChunkTemplate`), and
from then on a chunk that is those bytes around a string needs no parse: it passes, and it carries
output when the string is not empty. Anything else (a finish reason, usage, an error, a changed
field, a text with a quote or a line break in it) does not match, and is parsed as before.

A match is exact for valid JSON: a JSON string's body holds no unescaped quote, so a chunk made of
the learned prefix, a run of bytes with no quote (and not ending in a backslash), and the learned
suffix has the learned chunk's structure, with another text. The text itself is not validated: an
engine chunk whose text is not valid JSON (a raw control character, a bad escape) passes unchanged
either way, but is counted as output here where a parse would leave it uncounted.
"""

from __future__ import annotations

from typing import Any

_CHOICE_KEYS = frozenset(
    {
        "index",
        "delta",
        "text",
        "logprobs",
        "finish_reason",
        "stop_reason",
        "token_ids",  # vLLM writes "token_ids":null in every chunk unless they were asked for
        "prompt_token_ids",
    }
)
_BACKSLASH = 0x5C


class ChunkTemplate:
    """The bytes around the text of one stream's plain chunks: see the module's docstring."""

    __slots__ = ("_least", "_prefix", "_suffix")

    def __init__(self, prefix: bytes, suffix: bytes) -> None:
        self._prefix = prefix
        self._suffix = suffix
        self._least = len(prefix) + len(suffix)

    @classmethod
    def learn(cls, event: bytes, chunk: dict[str, Any], *, text: bool) -> ChunkTemplate | None:
        """The template of ``event`` (one ``data:`` line, parsed as ``chunk``) when it is a plain
        chunk: one choice, unfinished, with text (a string) and nothing else that counts as output,
        no usage. None otherwise.
        """
        if not (event.startswith(b"data: {") and event.endswith(b"}\n\n")):
            return None
        if event.find(b"\n", 6) != len(event) - 2 or event.find(b"\r") >= 0:
            return None
        if chunk.get("usage") is not None or "error" in chunk:
            return None
        choices = chunk.get("choices")
        if type(choices) is not list or len(choices) != 1 or type(choices[0]) is not dict:
            return None
        choice = choices[0]
        if not choice.keys() <= _CHOICE_KEYS or choice.get("finish_reason") is not None:
            return None
        if choice.get("logprobs") is not None:
            return None
        if text:
            if "delta" in choice or type(choice.get("text")) is not str:
                return None
            key = b'"text":"'
        else:
            delta = choice.get("delta")
            if "text" in choice or type(delta) is not dict or delta.keys() != {"content"}:
                return None
            if type(delta["content"]) is not str:
                return None
            key = b'"content":"'
        start = event.find(key)
        if start < 0 or event.find(key, start + 1) >= 0:
            return None
        start += len(key)
        end = _string_end(event, start)
        if end < 0:
            return None
        return cls(event[:start], event[end:])

    def output(self, event: bytes) -> bool | None:
        """For one read of the stream: whether it is a plain chunk of this template with output
        (True), one with an empty text (False), or anything else (None: parse it)."""
        if len(event) < self._least:
            return None
        if not (event.startswith(self._prefix) and event.endswith(self._suffix)):
            return None
        start, end = len(self._prefix), len(event) - len(self._suffix)
        if start == end:
            return False
        if (
            event.find(b'"', start, end) >= 0
            or event.find(b"\n", start, end) >= 0
            or event.find(b"\r", start, end) >= 0
            or event[end - 1] == _BACKSLASH
        ):
            return None
        return True


def _string_end(data: bytes, start: int) -> int:
    """Where the JSON string whose body begins at ``start`` closes (the index of its quote)."""
    at = start
    while True:
        at = data.find(b'"', at)
        if at < 0:
            return -1
        escapes = 0
        while data[at - 1 - escapes] == _BACKSLASH:
            escapes += 1
        if escapes % 2 == 0:
            return at
        at += 1
