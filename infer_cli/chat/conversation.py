"""A conversation and its JSON file format (``/save``, ``/load``, the autosaved last chat).

The file is one JSON object::

    {
      "format": "infer-chat",          # marks the file as a conversation
      "version": 1,
      "model": "smollm2-135m-instruct", # the model it was held with (null: unknown)
      "system": "You are terse.",       # the system prompt (null: none)
      "params": {"temperature": 0.2},   # sampling parameters sent with every request
      "messages": [
        {"role": "user", "content": "What is KV caching?"},
        {"role": "assistant", "content": "It keeps ...", "interrupted": true,
         "stats": {"ttft": 0.12, "completion_tokens": 40, ...}}
      ]
    }

Only ``messages`` is required when loading, so a bare OpenAI ``{"messages": [...]}`` or a bare list
of messages loads too (a leading ``system`` message becomes the system prompt). On an assistant
message, ``interrupted`` (stopped with Ctrl-C) and ``error`` (the stream failed) mark a partial
answer; ``stats`` are the figures shown after it. Neither is sent back to the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infer_cli.errors import ConversationError
from infer_cli.files import write_atomic

FORMAT = "infer-chat"
VERSION = 1
ROLES = ("user", "assistant", "system", "tool")


@dataclass
class Message:
    role: str
    content: str
    interrupted: bool = False
    error: str | None = None
    stats: dict[str, Any] | None = None

    def to_api(self) -> dict[str, Any]:
        return {"role": self.role, "content": self.content}

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.interrupted:
            data["interrupted"] = True
        if self.error:
            data["error"] = self.error
        if self.stats:
            data["stats"] = self.stats
        return data


@dataclass
class Conversation:
    system: str | None = None
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)

    def api_messages(self) -> list[dict[str, Any]]:
        """What the model is sent: the system prompt, then every message (no markers)."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + [message.to_api() for message in self.messages]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": self.model,
            "system": self.system,
            "params": dict(self.params),
            "messages": [message.to_json() for message in self.messages],
        }

    @property
    def turns(self) -> int:
        return sum(1 for message in self.messages if message.role == "user")


def save(conversation: Conversation, path: Path) -> Path:
    """Write atomically (a crash never leaves half a file); returns the absolute path."""
    path = path.expanduser()
    text = json.dumps(conversation.to_json(), indent=2, ensure_ascii=False) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text.encode("utf-8"))
    except OSError as exc:
        raise ConversationError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path.resolve()


def load(path: Path) -> Conversation:
    """Read a conversation file; every way it can be wrong is one :class:`ConversationError`."""
    path = path.expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConversationError(
            f"no conversation file {path}", hint="save one with /save FILE"
        ) from None
    except IsADirectoryError:
        raise ConversationError(f"{path} is a folder, not a conversation file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConversationError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConversationError(
            f"{path} is not a conversation: not JSON ({exc})",
            hint="expected the JSON that /save writes",
        ) from None
    return from_json(data, source=str(path))


def from_json(data: Any, *, source: str = "the data") -> Conversation:
    def bad(why: str) -> ConversationError:
        return ConversationError(
            f"{source} is not a conversation: {why}",
            hint='expected {"messages": [{"role": ..., "content": ...}, ...]} as /save writes',
        )

    if isinstance(data, list):
        data = {"messages": data}
    if not isinstance(data, dict):
        raise bad("the top level is not an object")
    declared = data.get("format")
    if declared is not None and declared != FORMAT:
        raise bad(f"its format is {declared!r}, not {FORMAT!r}")
    version = data.get("version", VERSION)
    if not isinstance(version, int) or version > VERSION:
        raise bad(f"format version {version!r} is newer than this infer reads ({VERSION})")
    raw_messages = data.get("messages")
    if not isinstance(raw_messages, list):
        raise bad("no 'messages' list")
    system = data.get("system")
    if system is not None and not isinstance(system, str):
        raise bad("'system' is not text")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise bad("'model' is not text")
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise bad("'params' is not an object")

    messages: list[Message] = []
    for number, raw in enumerate(raw_messages, 1):
        if not isinstance(raw, dict):
            raise bad(f"message {number} is not an object")
        role, content = raw.get("role"), raw.get("content")
        if role not in ROLES:
            raise bad(f"message {number} has role {role!r} (expected one of {', '.join(ROLES)})")
        if not isinstance(content, str):
            content = _text_of(content)
            if content is None:
                raise bad(f"message {number} has no text content")
        if role == "system" and not messages and system is None:
            system = content
            continue
        stats = raw.get("stats")
        error = raw.get("error")
        messages.append(
            Message(
                role=role,
                content=content,
                interrupted=bool(raw.get("interrupted", False)),
                error=error if isinstance(error, str) else None,
                stats=stats if isinstance(stats, dict) else None,
            )
        )
    return Conversation(system=system or None, model=model, params=dict(params), messages=messages)


def _text_of(content: Any) -> str | None:
    """OpenAI's list-of-parts content, flattened to its text parts."""
    if not isinstance(content, list):
        return None
    parts = [
        part.get("text")
        for part in content
        if isinstance(part, dict)
        and part.get("type") == "text"
        and isinstance(part.get("text"), str)
    ]
    return "".join(str(part) for part in parts) if parts else None
