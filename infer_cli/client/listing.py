"""One shape for a model listing entry, whichever listing it came from.

Three shapes reach ``infer models``: OpenRouter's provider listing (what the infer proxy serves at
``/api/v1/models``: flat ``context_length``, ``quantization``, ``supported_features``, prices in USD
per token as strings), OpenRouter's public listing (``architecture``, ``top_provider``,
``supported_parameters``), and OpenAI's ``/v1/models`` (``id`` and, from vLLM, ``max_model_len``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

# what OpenRouter's public listing says in supported_parameters, as provider features
_FEATURES_FROM_PARAMETERS = {
    "tools": "tools",
    "reasoning": "reasoning",
    "structured_outputs": "structured_outputs",
    "response_format": "json_mode",
    "logprobs": "logprobs",
    "web_search_options": "web_search",
}
PER_MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class ModelInfo:
    id: str
    name: str
    context_length: int | None = None
    prompt_price: float | None = None
    """USD per million prompt tokens."""
    completion_price: float | None = None
    cached_price: float | None = None
    """USD per million cached prompt tokens (``input_cache_read``)."""
    quantization: str | None = None
    features: list[str] = field(default_factory=list)
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def model_info(entry: dict[str, Any]) -> ModelInfo:
    model_id = str(entry.get("id", ""))
    pricing = entry.get("pricing") if isinstance(entry.get("pricing"), dict) else {}
    top = entry.get("top_provider") if isinstance(entry.get("top_provider"), dict) else {}
    context = _positive_int(
        entry.get("context_length"),
        (top or {}).get("context_length"),
        entry.get("max_model_len"),
    )
    features = entry.get("supported_features")
    if isinstance(features, list):
        feature_list = [str(f) for f in features]
    else:
        parameters = entry.get("supported_parameters")
        feature_list = [
            feature
            for parameter, feature in _FEATURES_FROM_PARAMETERS.items()
            if isinstance(parameters, list) and parameter in parameters
        ]
    quantization = entry.get("quantization")
    description = entry.get("description")
    return ModelInfo(
        id=model_id,
        name=str(entry.get("name") or model_id),
        context_length=context,
        prompt_price=_per_million((pricing or {}).get("prompt")),
        completion_price=_per_million((pricing or {}).get("completion")),
        cached_price=_per_million((pricing or {}).get("input_cache_read")),
        quantization=str(quantization) if quantization else None,
        features=feature_list,
        description=str(description) if description else None,
    )


def _per_million(value: Any) -> float | None:
    """A per-token price (string or number) as USD per million tokens, exactly scaled."""
    if value is None or isinstance(value, bool):
        return None
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        return None
    if not price.is_finite() or price < 0:
        return None
    return float(price * PER_MILLION)


def _positive_int(*values: Any) -> int | None:
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


async def fetch(url: str, api_key: str | None) -> tuple[str, list[ModelInfo]]:
    """The endpoint's models (OpenRouter's listing, else OpenAI's) and the URL that answered."""
    from infer_cli.client.api import Client

    async with Client(url, api_key) as client:
        listing = await client.list_models()
    return listing.source, [model_info(entry) for entry in listing.models]
