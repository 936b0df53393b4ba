"""The ``infer models`` table."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from infer_cli.client.listing import ModelInfo
from infer_cli.ui import console

# (header, justify, no_wrap)
COLUMNS = [
    ("ID", "left", True),
    ("NAME", "left", False),
    ("CONTEXT", "right", True),
    ("PROMPT", "right", True),
    ("COMPLETION", "right", True),
    ("CACHED", "right", True),
    ("QUANT", "left", True),
    ("FEATURES", "left", False),
]


def print_models(source: str, models: Sequence[ModelInfo]) -> None:
    if not models:
        console.info(f"{source} lists no model")
        return
    rows = [
        [
            model.id,
            model.name if model.name != model.id else "",
            _context(model.context_length),
            _price(model.prompt_price),
            _price(model.completion_price),
            _price(model.cached_price),
            model.quantization or "-",
            ", ".join(model.features) or "-",
        ]
        for model in models
    ]
    table = Table(show_edge=False, header_style="bold", pad_edge=False, box=None)
    widest_id = max(len(row[0]) for row in rows)
    for header, justify, no_wrap in COLUMNS:
        # a model id is never broken or cut: the name and features wrap to make room
        width = max(widest_id, len(header)) if header == "ID" else None
        table.add_column(header, justify=justify, no_wrap=no_wrap, min_width=width)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console.stdout.print(table)
    count = len(models)
    console.stderr.print(
        f"[dim]{count} model{'s' * (count != 1)} from {console.escape(source)}; "
        "prices in USD per million tokens[/]"
    )


def _context(tokens: int | None) -> str:
    if tokens is None:
        return "-"
    if tokens >= 1024 and tokens % 1024 == 0:
        return f"{tokens // 1024}k"
    return f"{tokens:,}"


def _price(per_million: float | None) -> str:
    if per_million is None:
        return "-"
    if per_million == 0:
        return "0"
    if per_million >= 1:
        return f"{per_million:.2f}"
    return f"{per_million:.4f}".rstrip("0")
