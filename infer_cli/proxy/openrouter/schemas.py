"""Pydantic models of what the proxy's own routes accept and answer: request validation and the
OpenAPI document.

Requests are validated with these models but forwarded as the client sent them (unknown fields
included), so the models check types and ranges and allow everything else. Request models are flat
(no nested models) so that their JSON schema can be inlined into the OpenAPI document as is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from infer_cli.proxy.state import EngineStatus


def _whole(value: object) -> object:
    """A JSON number without a fraction (``2.0``) as the integer it is (JSON Schema, vLLM)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


WHOLE = BeforeValidator(_whole)
"""``Annotated[int, Field(...), WHOLE]``: an integer, also written ``2.0``; never a string or a
boolean (the models are strict). Bounds go before it, or the OpenAPI document loses them."""
Integer = Annotated[int, WHOLE]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class _SamplingRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = Field(
        default=None, description="The served model name (or one of its aliases); default: it"
    )
    stream: bool = False
    max_tokens: Annotated[int, Field(ge=1), WHOLE] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1), WHOLE] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: Annotated[int, Field(ge=-1), WHOLE] | None = None
    min_p: float | None = Field(default=None, ge=0, le=1)
    top_a: float | None = Field(default=None, ge=0, le=1, description="Accepted and ignored")
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    repetition_penalty: float | None = Field(default=None, gt=0, le=2)
    seed: Integer | None = None
    stop: str | list[str] | None = None
    n: Annotated[int, Field(ge=1), WHOLE] | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | Integer | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20), WHOLE] | None = None
    user: str | None = None
    stream_options: dict[str, Any] | None = None
    # OpenRouter-only fields: accepted, never sent to the engine.
    provider: dict[str, Any] | None = Field(default=None, description="OpenRouter routing; ignored")
    models: list[str] | None = Field(default=None, description="OpenRouter fallbacks; ignored")
    route: str | None = Field(default=None, description="OpenRouter routing; ignored")
    transforms: list[str] | None = Field(default=None, description="OpenRouter; ignored")
    plugins: list[dict[str, Any]] | None = Field(default=None, description="OpenRouter; ignored")
    reasoning: dict[str, Any] | None = Field(
        default=None,
        description="OpenRouter's {effort, max_tokens, exclude, enabled}: sent to vLLM as "
        "reasoning_effort, thinking_token_budget and include_reasoning",
    )
    usage: dict[str, Any] | None = Field(
        default=None, description="OpenRouter (deprecated): usage is always returned"
    )
    session_id: str | None = Field(default=None, description="OpenRouter sticky routing; ignored")


MESSAGE_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
"""Chat roles OpenAI's API (and so vLLM's chat templates) know."""
CONTENT_PART_TYPES = (
    "text",
    "image_url",
    "input_audio",
    "file",
    "refusal",
    "audio_url",
    "video_url",
    "image_embeds",
)
"""Content part types of OpenAI's chat API, and those vLLM adds (audio, video, embeddings)."""


def check_messages(messages: list[dict[str, Any]]) -> None:
    """Every message has a known role and well-typed content; ValueError says which does not."""
    for index, message in enumerate(messages):
        role = message.get("role")
        if not isinstance(role, str):
            raise ValueError(f"message {index} has no 'role' string")
        if role not in MESSAGE_ROLES:
            raise ValueError(
                f"message {index} has the role {role[:40]!r}; "
                f"one of {', '.join(MESSAGE_ROLES)} is allowed"
            )
        _check_content(index, message.get("content"))


def _check_content(index: int, content: object) -> None:
    """A message's content: null, a string, or a list of typed parts (a text part with text)."""
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise ValueError(f"message {index} content must be a string, null or a list of parts")
    for number, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str) or kind not in CONTENT_PART_TYPES:
            shown = f"the type {kind[:40]!r}" if isinstance(kind, str) else "no type"
            raise ValueError(
                f"message {index} content part {number} has {shown}; "
                f"one of {', '.join(CONTENT_PART_TYPES)} is allowed"
            )
        if kind == "text" and not isinstance(part.get("text"), str):
            raise ValueError(
                f"message {index} content part {number} is text without a 'text' string"
            )


def message_json_schema(part_types: Iterable[str] = CONTENT_PART_TYPES) -> dict[str, Any]:
    """The JSON schema of one chat message as :func:`check_messages` takes it, with content parts
    of ``part_types`` (for the OpenAPI document: the validation is :func:`check_messages`)."""
    others = [kind for kind in part_types if kind != "text"]
    parts: list[dict[str, Any]] = [
        {
            "type": "object",
            "required": ["type", "text"],
            "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
        }
    ]
    if others:
        parts.append(
            {"type": "object", "required": ["type"], "properties": {"type": {"enum": others}}}
        )
    content = [
        {"type": "string"},
        {"type": "null"},
        {"type": "array", "items": parts[0] if len(parts) == 1 else {"anyOf": parts}},
    ]
    return {
        "type": "object",
        "required": ["role"],
        "properties": {"role": {"enum": list(MESSAGE_ROLES)}, "content": {"anyOf": content}},
    }


class ChatCompletionRequest(_SamplingRequest):
    """``POST /v1/chat/completions``: OpenAI's chat request plus OpenRouter's extra fields."""

    messages: list[dict[str, Any]] = Field(
        min_length=1, json_schema_extra={"items": message_json_schema()}
    )
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None

    @field_validator("messages")
    @classmethod
    def _roles(cls, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        check_messages(messages)
        return messages


_Text = Annotated[str, Field(min_length=1)]
_Tokens = Annotated[list[Annotated[int, Field(ge=0), WHOLE]], Field(min_length=1)]
_TokenLists = Annotated[list[_Tokens], Field(min_length=1)]


class CompletionRequest(_SamplingRequest):
    """``POST /v1/completions``: OpenAI's (legacy) text completion request."""

    prompt: _Text | Annotated[list[_Text], Field(min_length=1)] | _Tokens | _TokenLists = Field(
        description="Text, token ids, or a batch of either; never empty (vLLM refuses that)"
    )
    echo: bool | None = None
    suffix: str | None = None


# --- answers (documentation only; the proxy relays the engine's JSON, rewritten) ---------------


class PromptTokensDetails(_Open):
    cached_tokens: int = 0
    cache_write_tokens: int | None = None


class CompletionTokensDetails(_Open):
    reasoning_tokens: int = 0


class CostDetails(_Open):
    upstream_inference_cost: float
    upstream_inference_prompt_cost: float
    upstream_inference_completions_cost: float


class Usage(_Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails | None = None
    cost: float = Field(description="USD, from the listed prices")
    cost_details: CostDetails


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


class ChatChoice(_Open):
    index: int
    message: dict[str, Any]
    finish_reason: FinishReason | None
    native_finish_reason: str | None = Field(description="The engine's own finish reason")


class ChatCompletion(_Open):
    id: str = Field(description="chatcmpl-...; the id for GET /api/v1/generation")
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class TextChoice(_Open):
    index: int
    text: str
    finish_reason: FinishReason | None
    native_finish_reason: str | None


class TextCompletion(_Open):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage


class ErrorDetail(_Open):
    code: int = Field(description="The HTTP status")
    message: str
    type: str = Field(description="OpenAI-style error type")
    metadata: ErrorMetadata


class ErrorMetadata(_Open):
    error_type: str = Field(description="OpenRouter's typed error: invalid_request, timeout, ...")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ProviderPricing(BaseModel):
    prompt: str
    completion: str
    image: str
    request: str
    input_cache_read: str


class ProviderModel(_Open):
    id: str
    hugging_face_id: str
    name: str
    created: int
    description: str
    input_modalities: list[str]
    output_modalities: list[str]
    quantization: str
    context_length: int | None
    max_output_length: int | None
    pricing: ProviderPricing
    supported_sampling_parameters: list[str]
    supported_features: list[str]


class TokenPrice(_Open):
    type: str = Field(description="prompt, cached_prompt, completion or request")
    unit: str
    cost_usd: str = Field(description="USD per unit, a plain decimal string")


class Modality(_Open):
    type: str = Field(description="text, image, ...")
    pricing: list[TokenPrice] | None = None


class ProviderModelV24(_Open):
    """OpenRouter's ``schema_version`` 2.4 model document: modalities own limits and prices."""

    schema_version: Literal["2.4"]
    id: str
    name: str
    hugging_face_id: str
    created: int
    description: str
    quantization: str
    input_modalities: list[Modality]
    output_modalities: list[Modality]
    supported_features: list[str]
    pricing: list[TokenPrice] | None = Field(default=None, description="Per-request prices")


class ProviderListing(BaseModel):
    object: Literal["list"] = "list"
    data: list[ProviderModel] | list[ProviderModelV24] = Field(
        description="The flat format; with ?schema_version=2.4 the 2.4 model documents instead"
    )


class OpenAIModel(_Open):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    max_model_len: int | None


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


class GenerationStats(BaseModel):
    id: str
    model: str
    created_at: str = Field(description="ISO 8601, when the request arrived")
    streamed: bool
    cancelled: bool
    total_cost: float
    usage: float = Field(description="Same as total_cost")
    upstream_inference_cost: float
    latency: float = Field(description="Milliseconds from arrival to the end")
    generation_time: float = Field(
        description="Milliseconds spent generating: the latency (there is no moderation step)"
    )
    time_to_first_token: float | None = Field(description="Milliseconds; null when not streamed")
    tokens_prompt: int
    tokens_completion: int
    native_tokens_prompt: int
    native_tokens_completion: int
    native_tokens_cached: int
    finish_reason: str | None
    native_finish_reason: str | None
    status: int = Field(description="HTTP status the client got")
    error: str | None
    api_type: str
    provider_name: str


class GenerationStatsResponse(BaseModel):
    data: GenerationStats


class LastRestart(_Open):
    reason: str = Field(description="Why, quoted from the log, without internal addresses")
    at: float = Field(description="Unix time")


class Replicas(_Open):
    ready: int = Field(ge=0, description="Replicas serving now")
    total: int = Field(ge=0)
    each: dict[str, Literal["starting", "ready", "restarting", "failed"]]


class Workers(_Open):
    ready: int = Field(ge=0, description="Other machines' engines that answer")
    total: int = Field(ge=0)
    unreachable: list[str] = Field(description="'worker-N': N is the position in replicas.workers")


class Health(_Open):
    """``GET /health``: 200 when the engine is ready, 503 (with ``Retry-After``) otherwise."""

    status: Literal["ok", "unavailable"]
    model: str
    profile: str | None
    engine: EngineStatus
    uptime: float = Field(description="Seconds since the proxy started")
    version: str
    restarts: int = Field(ge=0, description="Engine restarts so far")
    last_restart: LastRestart | None = Field(default=None, description="After the first restart")
    detail: str | None = Field(default=None, description="Why it is not ready, in words")
    replicas: Replicas | None = Field(default=None, description="With several engine replicas")
    workers: Workers | None = Field(default=None, description="With engines on other machines")


class TokenizeRequest(_Open):
    """``POST /tokenize``: vLLM's request, ``prompt`` or ``messages`` (which wins)."""

    model: str | None = None
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = Field(
        default=None, min_length=1, json_schema_extra={"items": message_json_schema()}
    )

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "anyOf": [
                {"required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
                {"required": ["messages"], "properties": {"messages": {"type": "array"}}},
            ]
        },
    )


class DetokenizeRequest(_Open):
    """``POST /detokenize``: vLLM's request."""

    model: str | None = None
    tokens: list[Annotated[int, Field(ge=0), WHOLE]]


class TokenizeAnswer(_Open):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeAnswer(_Open):
    prompt: str
