"""The proxy's OpenAPI document (``/openapi.json``): what each route really takes and answers.

Routes declare their answers with the helpers here: every error in the proxy's one shape
(:class:`~infer_cli.proxy.openrouter.schemas.ErrorResponse`) under each status the route can answer,
a completion's 200 as JSON or, with ``stream: true``, as ``text/event-stream``, and request bodies
with what the served model accepts (its names, its maximum output). FastAPI documents a bad
parameter as 422 with its own body; the proxy answers it with 400 in its error shape
(:mod:`infer_cli.proxy.routes.handlers`), so :func:`install` takes FastAPI's 422 out of the
document.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from infer_cli.proxy.openrouter.schemas import ErrorResponse, message_json_schema

if TYPE_CHECKING:
    from fastapi import FastAPI
    from pydantic import BaseModel

    from infer_cli.proxy.openrouter.listing import ProviderInfo

ERRORS: dict[int, str] = {
    400: "Invalid request: JSON, fields, ranges or max_tokens (`metadata.errors` lists them)",
    401: "No API key, or an unknown one (only when the proxy has keys)",
    404: "Unknown model",
    408: "The engine did not answer in time",
    413: "The request body is larger than `proxy.max_body_bytes`",
    429: "A rate limit or concurrency cap of the key (`Retry-After` says when to retry)",
    502: "The engine failed, or answered with something invalid",
    503: "The engine is not ready: starting, restarting or failed (`Retry-After`)",
}
"""Every error status the proxy answers with, and what it means."""

KEYED = (401,)
"""What the API keys add to a route that is not open (every route but ``/health``)."""
LIMITED = (401, 429)
"""What keys and rate limits add to a ``POST`` route (limits count every method but reads)."""
ENGINE = (408, 413, 502, 503)
"""What a route that reaches the engine adds: its silence, the body cap, its failure, its state."""

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds until a retry may succeed",
        "schema": {"type": "string"},
    }
}

STREAM_DESCRIPTION = (
    "With `stream: true`, `text/event-stream`: `data: {chunk}` events (`choices[].delta` for chat,"
    " `choices[].text` for text), `: OPENROUTER PROCESSING` comments while the engine is silent,"
    " the usage chunk last, then `data: [DONE]`. A failure after the stream started is a chunk"
    ' with `error` and `finish_reason: "error"`, then `data: [DONE]`.'
)


def errors(*statuses: int, described: Mapping[int, str] | None = None) -> dict[int | str, Any]:
    """FastAPI ``responses`` for ``statuses``, each with the error shape and its meaning
    (``described`` overrides the meaning of some)."""
    responses: dict[int | str, Any] = {}
    for status in sorted(set(statuses)):
        response: dict[str, Any] = {
            "model": ErrorResponse,
            "description": (described or {}).get(status, ERRORS[status]),
        }
        if status in (429, 503):
            response["headers"] = copy.deepcopy(_RETRY_AFTER)
        responses[status] = response
    return responses


def completion_responses(answer: type[BaseModel]) -> dict[int | str, Any]:
    """A completion route's answers: the JSON completion or its SSE stream, and every error."""
    ok: dict[str, Any] = {
        "model": answer,
        "description": "The completion; " + STREAM_DESCRIPTION,
        # The stream's text is SSE, not a JSON value: no JSON schema describes it (an empty
        # schema, so that a validator does not judge event text as a JSON string).
        "content": {"text/event-stream": {"schema": {}}},
    }
    return {200: ok, **errors(400, 404, *LIMITED, *ENGINE)}


def request_body(model: type[BaseModel], info: ProviderInfo) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model``'s JSON body, narrowed to what ``info`` serves.

    The proxy answers 404 for a model name it does not serve and 400 for ``max_tokens`` over
    the profile's maximum output, and the engine 400 for a content part its model cannot read:
    the document says all three, so that a request that follows it is accepted.
    """
    schema = model.model_json_schema()
    properties = schema.get("properties", {})
    if "model" in properties:
        names = sorted({info.model, *info.aliases})
        properties["model"] = {
            "anyOf": [{"type": "string", "enum": names}, {"type": "null"}],
            "default": None,
            "description": "The served model's name (or an alias); default: it",
        }
    if info.max_output_length:
        for name in ("max_tokens", "max_completion_tokens"):
            _set_maximum(properties.get(name), info.max_output_length)
    if "messages" in properties:
        properties["messages"]["items"] = message_json_schema(part_types(info))
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_PARTS_OF_MODALITY = {
    "text": ("text",),
    "image": ("image_url", "image_embeds"),
    "audio": ("input_audio", "audio_url"),
    "video": ("video_url",),
    "file": ("file",),
}


def part_types(info: ProviderInfo) -> list[str]:
    """The content part types the served model reads (its input modalities; text always)."""
    kinds = ["text"]
    for modality in info.input_modalities:
        kinds += [kind for kind in _PARTS_OF_MODALITY.get(modality, ()) if kind not in kinds]
    return kinds


def _set_maximum(field: Any, maximum: int) -> None:
    """Add ``maximum`` to the integer branch of a field's schema (``int | None``)."""
    if not isinstance(field, dict):
        return
    for branch in field.get("anyOf", [field]):
        if isinstance(branch, dict) and branch.get("type") == "integer":
            branch["maximum"] = maximum


def install(app: FastAPI) -> None:
    """Serve the document without FastAPI's 422 answers (the proxy answers 400 instead)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _without_validation_errors(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_FASTAPI_SCHEMAS = ("HTTPValidationError", "ValidationError")
_BAD_PARAMETER = {
    "description": "A missing or invalid parameter",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
}


def _without_validation_errors(document: dict[str, Any]) -> dict[str, Any]:
    for operation in _operations(document):
        responses = operation.get("responses", {})
        if responses.pop("422", None) is not None:
            responses.setdefault("400", _BAD_PARAMETER)
    schemas = document.get("components", {}).get("schemas", {})
    for name in _FASTAPI_SCHEMAS:
        schemas.pop(name, None)
    return document


def _operations(document: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    for path in document.get("paths", {}).values():
        for operation in path.values():
            if isinstance(operation, dict):
                yield operation
