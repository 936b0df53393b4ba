"""``[openrouter]``: how the model is listed for OpenRouter, with its prices."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from infer_cli.config.strict import Strict

Quantization = Literal[
    "int4", "int8", "fp4", "mxfp4", "nvfp4", "fp6", "fp8", "mxfp8", "fp16", "bf16", "fp32"
]
SamplingParameter = Literal[
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "top_a",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "stop",
    "seed",
    "max_tokens",
    "logit_bias",
    "logprobs",
    "top_logprobs",
]
Feature = Literal["tools", "json_mode", "structured_outputs", "logprobs", "web_search", "reasoning"]
InputModality = Literal["text", "image", "file", "audio", "video"]
OutputModality = Literal[
    "text", "image", "embeddings", "audio", "video", "rerank", "speech", "transcription"
]


class Pricing(Strict):
    """USD per token, as strings (OpenRouter's rule: no float error)."""

    prompt: str = "0"
    completion: str = "0"
    input_cache_read: str = "0"
    image: str = "0"
    request: str = "0"

    @field_validator("*")
    @classmethod
    def _decimal(cls, value: str) -> str:
        from decimal import Decimal, InvalidOperation

        try:
            number = Decimal(value)
        except InvalidOperation:
            raise ValueError(
                f"{value!r} is not a decimal price in USD per token (e.g. '0.0000002')"
            ) from None
        if number < 0:
            raise ValueError("prices cannot be negative")
        return value


class OpenRouterSection(Strict):
    """How the model is listed for OpenRouter (``/api/v1/models``)."""

    name: str | None = None
    description: str | None = None
    hugging_face_id: str | None = None
    created: int | None = Field(default=None, ge=0, description="Unix time the model was released")
    quantization: Quantization = "bf16"
    max_output_length: int | None = Field(default=None, gt=0)
    input_modalities: list[InputModality] = Field(default_factory=lambda: _text_only())
    output_modalities: list[OutputModality] = Field(default_factory=lambda: _text_only())
    supported_sampling_parameters: list[SamplingParameter] = Field(
        default_factory=lambda: _default_sampling()
    )
    supported_features: list[Feature] = Field(default_factory=list)
    pricing: Pricing = Field(default_factory=Pricing)


def _text_only() -> list[Any]:
    return ["text"]


DEFAULT_SAMPLING_PARAMETERS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "stop",
    "seed",
    "max_tokens",
    "logit_bias",
)
"""What a listing declares when the profile names no sampling parameters."""


def _default_sampling() -> list[Any]:
    return list(DEFAULT_SAMPLING_PARAMETERS)
