"""YAML with comments: PyYAML writes the values, :class:`Commented` puts a comment above a key.

PyYAML cannot write comments, so the document is emitted key by key: a mapping or list holding a
:class:`Commented` somewhere below is walked here, and every plain subtree is handed to PyYAML
whole. :func:`plain` strips the comments, giving exactly what a YAML parser reads back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(frozen=True)
class Commented:
    """A value with the comment (one or more lines) written above its key."""

    comment: str
    value: Any


def plain(node: Any) -> Any:
    """The data without its comments."""
    if isinstance(node, Commented):
        return plain(node.value)
    if isinstance(node, dict):
        return {key: plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [plain(item) for item in node]
    return node


def dump(node: Any, *, header: str = "") -> str:
    """The YAML text of ``node``, with ``header`` as comment lines on top."""
    lines = [_comment(line, 0) for line in header.splitlines()] if header else []
    lines += _emit(node, 0)
    return "\n".join(lines) + "\n"


def dump_plain(node: Any) -> str:
    """PyYAML's block style, keys in the order given, long strings unfolded."""
    text: str = yaml.dump(
        plain(node),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=10_000,
        allow_unicode=True,
    )
    return text


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (a profile in a ConfigMap) as literal blocks, readable as they are."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _has_comments(node: Any) -> bool:
    if isinstance(node, Commented):
        return True
    if isinstance(node, dict):
        return any(_has_comments(value) for value in node.values())
    if isinstance(node, list):
        return any(_has_comments(item) for item in node)
    return False


def _emit(node: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(node, dict) and _has_comments(node):
        lines: list[str] = []
        for key, value in node.items():
            if isinstance(value, Commented):
                lines += [_comment(line, indent) for line in value.comment.splitlines()]
                value = value.value
            if _has_comments(value) and isinstance(value, dict | list) and value:
                lines.append(f"{pad}{_key(key)}:")
                lines += _emit(value, indent + 2)
            else:
                lines += [pad + line for line in dump_plain({key: value}).splitlines()]
        return lines
    if isinstance(node, list) and _has_comments(node):
        lines = []
        for item in node:
            if isinstance(item, Commented):
                lines += [_comment(line, indent) for line in item.comment.splitlines()]
                item = item.value
            inner = _emit(item, indent + 2)
            first = next(i for i, line in enumerate(inner) if not line.lstrip().startswith("#"))
            inner[first] = f"{pad}- {inner[first][indent + 2 :]}"
            lines += inner
        return lines
    return [pad + line for line in dump_plain(node).splitlines()]


def _key(key: Any) -> str:
    text = dump_plain({key: None})  # "key: null", the key quoted where YAML needs it
    return text[: text.rindex(":")]


def _comment(line: str, indent: int) -> str:
    return f"{' ' * indent}# {line}".rstrip()
