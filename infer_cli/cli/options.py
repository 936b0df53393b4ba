"""Options shared by several commands, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

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
    ),
]

ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        "-p",
        envvar="INFER_PROFILE",
        help="Profile name or path to a .toml file (default: 'cpu' on a machine without a GPU).",
        show_default=False,
    ),
]

UrlOption = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="INFER_URL",
        help="Endpoint: infer's proxy, a vLLM server, or any OpenAI/OpenRouter-compatible base URL "
        "(https://openrouter.ai/api/v1 works).",
    ),
]

ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="INFER_API_KEY",
        help="API key sent as Authorization: Bearer.",
        show_default=False,
    ),
]
