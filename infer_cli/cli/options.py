"""Options shared by several commands, declared once, and the short flags of the whole tool.

Each short flag means one thing everywhere (the README's table lists them): ``-u`` ``--url``,
``-m`` ``--model``, ``-p`` ``--profile``, ``-s`` ``--set``, ``-n`` ``--num-requests``, ``-c``
``--concurrency``, ``-o`` ``--output``, ``-i`` ``--interval``, ``-w`` ``--watch``, ``-q``
``--quiet``, ``-r`` ``--rate``, ``-d`` ``--duration``, ``-v`` ``--verbose``, ``-V``
``--version``, ``-h`` ``--help``. Options that would need a second meaning of a letter
(``infer chat --system``, ``--option``, ``--continue``) have no short flag.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, get_args

import typer

from infer_cli.client import resolve_url

__all__ = [
    "ApiKeyOption",
    "JsonOption",
    "ModelOption",
    "ProfileOption",
    "SetOption",
    "UrlOption",
    "in_panel",
    "resolve_url",
]

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")
]

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="SECTION.KEY=VALUE",
        help="Override one profile setting, e.g. --set engine.max_num_seqs=128 (repeatable).",
        show_default=False,
    ),
]

ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        "-p",
        envvar="INFER_PROFILE",
        metavar="NAME",
        help="Profile name or path to a .toml file (default: 'cpu' on a machine without a GPU).",
        show_default=False,
    ),
]

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        "-u",
        envvar="INFER_URL",
        metavar="URL",
        help="Endpoint: infer's proxy, a vLLM server, or any OpenAI/OpenRouter-compatible base URL "
        "(https://openrouter.ai/api/v1 works). Default: http://INFER_HOST:INFER_PORT, the "
        "address 'infer serve' takes from the same variables (http://127.0.0.1:8080).",
        show_default=False,
    ),
]
"""Resolve the value with :func:`resolve_url` (None: ``INFER_HOST`` / ``INFER_PORT``)."""

ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="INFER_API_KEY",
        metavar="KEY",
        help="API key sent as Authorization: Bearer.",
        show_default=False,
    ),
]

ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        envvar="INFER_MODEL",
        metavar="MODEL",
        help="Model id (default: the first the endpoint lists).",
        show_default=False,
    ),
]


def in_panel(option: Any, panel: str) -> Any:
    """``option`` (one of the ``Annotated`` options above) shown under ``panel`` in a command's
    help: the same flags, environment variable and help text, declared once."""
    kind, info = get_args(option)
    moved = copy.copy(info)
    moved.rich_help_panel = panel
    return Annotated[kind, moved]
