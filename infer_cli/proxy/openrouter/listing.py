"""What the proxy says about the model it serves: :class:`ProviderInfo`, built from a profile, and
the listing documents made from it.

Three forms of one listing: OpenRouter's flat provider format (``GET /api/v1/models``), its newer
``schema_version`` 2.4 format (``GET /api/v1/models?schema_version=2.4``) and the OpenAI form
(``GET /v1/models``). All three are pure functions of a :class:`ProviderInfo` and the context
length, which the profile may leave to the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from infer_cli.config.schema import DEFAULT_SAMPLING_PARAMETERS
from infer_cli.proxy.openrouter.pricing import Prices

if TYPE_CHECKING:
    from infer_cli.config.schema import Profile

SCHEMA_VERSION = "2.4"
OWNED_BY = "infer"


@dataclass(frozen=True)
class ProviderInfo:
    """The served model as OpenRouter lists it, and the prices its usage is charged at."""

    model: str
    """The served name: the listing's ``id`` and the ``model`` clients send."""
    aliases: frozenset[str] = frozenset()
    """Other names accepted in ``model`` (the Hugging Face id, the profile's model source)."""
    name: str = ""
    description: str = ""
    hugging_face_id: str | None = None
    created: int = 0
    quantization: str = "bf16"
    context_length: int | None = None
    """None: ask the engine (vLLM's ``max_model_len``)."""
    max_output_length: int | None = None
    """None: the context length."""
    input_modalities: tuple[str, ...] = ("text",)
    output_modalities: tuple[str, ...] = ("text",)
    supported_sampling_parameters: tuple[str, ...] = DEFAULT_SAMPLING_PARAMETERS
    supported_features: tuple[str, ...] = ()
    prices: Prices = field(default_factory=Prices)
    reasoning_parser: bool = False
    """The engine runs with a reasoning parser (``engine.reasoning_parser``): only then does vLLM
    take a thinking budget."""

    @property
    def display_name(self) -> str:
        return self.name or self.model

    def accepts(self, model: str) -> bool:
        """Whether a request for ``model`` is for this model."""
        return model == self.model or model in self.aliases

    def max_output(self, context_length: int | None) -> int | None:
        return self.max_output_length or context_length


def provider_info(profile: Profile) -> ProviderInfo:
    """The listing and prices a profile declares (its ``[model]`` and ``[openrouter]`` tables)."""
    from infer_cli.config.schema import PULLED_PREFIX

    section = profile.openrouter
    model = profile.model.name
    aliases = {alias for alias in (section.hugging_face_id,) if alias}
    source = profile.model.source.removeprefix(PULLED_PREFIX)
    if not source.startswith(("/", ".", "~")):
        aliases.add(source)
    aliases.discard(model)
    pricing = section.pricing
    return ProviderInfo(
        model=model,
        aliases=frozenset(aliases),
        name=section.name or model,
        description=section.description or profile.description,
        hugging_face_id=section.hugging_face_id,
        created=section.created or 0,
        quantization=section.quantization,
        context_length=profile.model.context_length,
        max_output_length=section.max_output_length,
        input_modalities=tuple(section.input_modalities),
        output_modalities=tuple(section.output_modalities),
        supported_sampling_parameters=tuple(section.supported_sampling_parameters),
        supported_features=tuple(section.supported_features),
        prices=Prices.parse(
            prompt=pricing.prompt,
            completion=pricing.completion,
            input_cache_read=pricing.input_cache_read,
            request=pricing.request,
            image=pricing.image,
        ),
        reasoning_parser=profile.engine.reasoning_parser is not None,
    )


def price_text(value: Decimal) -> str:
    """A price as OpenRouter wants it: a plain decimal string, never exponent notation."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def flat_listing(info: ProviderInfo, context_length: int | None) -> dict[str, Any]:
    """OpenRouter's flat provider format, with ``object: "list"`` for the earlier prototype."""
    prices = info.prices
    entry: dict[str, Any] = {
        "id": info.model,
        "hugging_face_id": info.hugging_face_id or "",
        "name": info.display_name,
        "created": info.created,
        "description": info.description,
        "input_modalities": list(info.input_modalities),
        "output_modalities": list(info.output_modalities),
        "quantization": info.quantization,
        "context_length": context_length,
        "max_output_length": info.max_output(context_length),
        "pricing": {
            "prompt": price_text(prices.prompt),
            "completion": price_text(prices.completion),
            "image": price_text(prices.image),
            "request": price_text(prices.request),
            "input_cache_read": price_text(prices.input_cache_read),
        },
        "supported_sampling_parameters": list(info.supported_sampling_parameters),
        "supported_features": list(info.supported_features),
        **public_fields(info, context_length),
    }
    return {"object": "list", "data": [entry], "links": {"next": None}, "total_count": 1}


# The request fields each provider feature brings with it, in OpenRouter's public vocabulary.
_FEATURE_PARAMETERS: dict[str, tuple[str, ...]] = {
    "tools": ("tools", "tool_choice"),
    "json_mode": ("response_format",),
    "structured_outputs": ("response_format", "structured_outputs"),
    "logprobs": ("logprobs", "top_logprobs"),
    "reasoning": ("reasoning", "include_reasoning"),
}


def supported_parameters(info: ProviderInfo) -> list[str]:
    """Every request parameter the model takes: its sampling parameters and its features'."""
    names = list(info.supported_sampling_parameters)
    for feature in info.supported_features:
        names.extend(_FEATURE_PARAMETERS.get(feature, ()))
    return list(dict.fromkeys(names))


def public_fields(info: ProviderInfo, context_length: int | None) -> dict[str, Any]:
    """The fields of OpenRouter's public model document (what its SDK's ``models.list()``
    validates) that the provider format lacks. Only what the profile states or what holds for
    every infer endpoint; null where nothing is known (default sampling parameters: the
    model's generation config, read by vLLM, not by the proxy).
    """
    return {
        "canonical_slug": info.model,
        "architecture": {
            "modality": "+".join(info.input_modalities) + "->" + "+".join(info.output_modalities),
            "input_modalities": list(info.input_modalities),
            "output_modalities": list(info.output_modalities),
            "instruct_type": None,
        },
        "top_provider": {
            "context_length": context_length,
            "max_completion_tokens": info.max_output(context_length),
            "is_moderated": False,  # the proxy moderates nothing
        },
        "per_request_limits": None,
        "supported_parameters": supported_parameters(info),
        "default_parameters": None,
        "supported_voices": None,
        "links": {"details": "/api/v1/models"},
    }


# How each sampling parameter's values are constrained, for the 2.4 format.
_PARAMETER_SPECS: dict[str, dict[str, Any]] = {
    "temperature": {"type": "range", "min": 0, "max": 2},
    "top_p": {"type": "range", "min": 0, "max": 1},
    "top_k": {"type": "integer", "min": 0},
    "min_p": {"type": "range", "min": 0, "max": 1},
    "top_a": {"type": "range", "min": 0, "max": 1},
    "frequency_penalty": {"type": "range", "min": -2, "max": 2},
    "presence_penalty": {"type": "range", "min": -2, "max": 2},
    "repetition_penalty": {"type": "range", "min": 0, "max": 2},
    "stop": {"type": "string_list"},
    "seed": {"type": "integer"},
    "max_tokens": {"type": "integer", "min": 1},
    "logit_bias": {"type": "map"},
    "logprobs": {"type": "boolean"},
    "top_logprobs": {"type": "integer", "min": 0, "max": 20},
}


def _token_price(kind: str, value: Decimal) -> dict[str, str]:
    return {"type": kind, "unit": "token", "cost_usd": price_text(value)}


def schema_v24_listing(info: ProviderInfo, context_length: int | None) -> dict[str, Any]:
    """OpenRouter's ``schema_version`` 2.4 format: modalities own their limits and prices."""
    prices = info.prices
    max_output = info.max_output(context_length)
    inputs: list[dict[str, Any]] = []
    for kind in info.input_modalities:
        modality: dict[str, Any] = {"type": kind}
        if kind == "text":
            modality["supported_inputs"] = {
                "max_context_length": {"value": context_length, "unit": "token"}
            }
            modality["pricing"] = [
                _token_price("prompt", prices.prompt),
                _token_price("cached_prompt", prices.cached_prompt),
            ]
        inputs.append(modality)
    outputs: list[dict[str, Any]] = []
    for kind in info.output_modalities:
        modality = {"type": kind}
        if kind == "text":
            parameters = {
                name: dict(_PARAMETER_SPECS.get(name, {"type": "any"}))
                for name in info.supported_sampling_parameters
            }
            if "max_tokens" in parameters and max_output:
                parameters["max_tokens"]["max"] = max_output
            modality.update(
                {
                    "max_length": {"value": max_output, "unit": "token"},
                    "streaming": True,
                    "supported_parameters": parameters,
                    "pricing": [_token_price("completion", prices.completion)],
                }
            )
        outputs.append(modality)
    entry: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "id": info.model,
        "name": info.display_name,
        "hugging_face_id": info.hugging_face_id or "",
        "created": info.created,
        "description": info.description,
        "quantization": info.quantization,
        "input_modalities": inputs,
        "output_modalities": outputs,
        "supported_features": list(info.supported_features),
    }
    if prices.request:
        entry["pricing"] = [
            {"type": "request", "unit": "request", "cost_usd": price_text(prices.request)}
        ]
    return {"object": "list", "data": [entry]}


def openai_listing(info: ProviderInfo, context_length: int | None) -> dict[str, Any]:
    """The OpenAI form of ``/v1/models``, with vLLM's ``root`` and ``max_model_len`` kept."""
    entry: dict[str, Any] = {
        "id": info.model,
        "object": "model",
        "created": info.created,
        "owned_by": OWNED_BY,
        "root": info.hugging_face_id or info.model,
        "max_model_len": context_length,
        "context_length": context_length,
    }
    return {"object": "list", "data": [entry]}
