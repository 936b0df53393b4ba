"""An async client for OpenAI/OpenRouter-compatible endpoints (the infer proxy, a bare vLLM,
OpenRouter itself), over httpx.

- :func:`parse_endpoint` turns what a user typed (``127.0.0.1:8080``, ``http://h:8080/v1``,
  ``https://openrouter.ai/api/v1``) into :class:`EndpointURLs`: the server root (``/health``,
  ``/metrics``) and the API base (``/chat/completions``, ``/models``).
- :class:`Client` sends the requests: :meth:`~Client.list_models`, :meth:`~Client.chat`,
  :meth:`~Client.chat_stream` (parsed chunks, each stamped with its arrival time from
  :func:`time.perf_counter`), :meth:`~Client.health`, :meth:`~Client.metrics_text`.
- Every failure is an :mod:`infer_cli.errors` exception with a one-line message that names the URL
  and says what to do. Cancelling a stream (leaving the ``async for`` or cancelling the task)
  closes the connection, which is how OpenAI and OpenRouter cancel a generation.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from infer_cli.client import DEFAULT_URL
from infer_cli.errors import (
    APIStatusError,
    AuthenticationError,
    ClientError,
    EndpointUnreachableError,
    StreamError,
    UsageError,
)
from infer_cli.wire.sse import SSEDecoder

SERVE_HINT = "start one with `infer serve` or point --url / INFER_URL at a running endpoint"
KEY_HINT = "pass --api-key or set INFER_API_KEY"

__all__ = ["DEFAULT_URL", "Client", "EndpointURLs", "Health", "ModelListing", "StreamChunk"]

_API_SUFFIXES = ("/api/v1", "/v1")
_PASTED_ROUTES = ("/chat/completions", "/completions", "/models")


# --- endpoint ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointURLs:
    """Where an endpoint's routes live: the URL a user gave, resolved into the server root and
    the API base (the two differ by ``/v1`` or ``/api/v1``)."""

    url: str
    """The URL as the user gave it, normalised (scheme added, no trailing slash)."""
    root: str
    """Server root: ``/health`` and ``/metrics`` live here."""
    api: str
    """API base: ``/chat/completions`` and ``/models`` live here."""

    @property
    def openrouter_style(self) -> bool:
        return self.api.endswith("/api/v1")

    def api_url(self, path: str) -> str:
        return self.api + "/" + path.lstrip("/")

    def root_url(self, path: str) -> str:
        return self.root + "/" + path.lstrip("/")

    def listing_urls(self) -> list[str]:
        """Where to look for the model listing, best first: OpenRouter's, then OpenAI's."""
        candidates = [self.root_url("/api/v1/models"), self.api_url("/models")]
        if self.openrouter_style:
            candidates = [self.api_url("/models"), self.root_url("/v1/models")]
        return list(dict.fromkeys(candidates))

    @property
    def loopback(self) -> bool:
        host = urlsplit(self.root).hostname or ""
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


def parse_endpoint(url: str) -> EndpointURLs:
    """Root and API base of ``url``. A base ending in ``/v1`` or ``/api/v1`` is the API base as
    it is; a bare server gets ``/v1`` (served by the infer proxy, vLLM and OpenAI alike).
    """
    text = url.strip()
    if not text:
        raise UsageError("the endpoint URL is empty", hint=f"e.g. --url {DEFAULT_URL}")
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"not an http(s) URL: {url!r}", hint=f"e.g. --url {DEFAULT_URL} or an https:// URL"
        )
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise UsageError(f"bad port in URL {url!r}", hint=f"e.g. --url {DEFAULT_URL}") from None
    path = parts.path.rstrip("/")
    for route in _PASTED_ROUTES:
        if path.endswith(route) and path[: -len(route)].endswith(_API_SUFFIXES):
            path = path[: -len(route)]
            break
    base = f"{parts.scheme}://{parts.netloc}"
    normalised = base + path
    for suffix in _API_SUFFIXES:
        if path.endswith(suffix):
            return EndpointURLs(url=normalised, root=base + path[: -len(suffix)], api=normalised)
    return EndpointURLs(url=normalised, root=normalised, api=normalised + "/v1")


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamChunk:
    data: dict[str, Any]
    """One parsed ``chat.completion.chunk``."""
    at: float
    """When it arrived (:func:`time.perf_counter`)."""

    @property
    def content(self) -> str:
        """The text this chunk adds to the first choice (empty for role / usage chunks)."""
        return _text_field(self._delta(), "content")

    @property
    def reasoning(self) -> str:
        """The thinking this chunk adds to the first choice: ``reasoning_content`` (older vLLM with
        ``--reasoning-parser``) or ``reasoning`` (newer vLLM, OpenRouter); empty when there is none.
        """
        return reasoning_of(self._delta())

    def _delta(self) -> dict[str, Any]:
        for choice in self.data.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                delta = choice.get("delta")
                return delta if isinstance(delta, dict) else {}
        return {}

    @property
    def finish_reason(self) -> str | None:
        for choice in self.data.get("choices") or ():
            if isinstance(choice, dict) and choice.get("finish_reason"):
                return str(choice["finish_reason"])
        return None

    @property
    def usage(self) -> dict[str, Any] | None:
        usage = self.data.get("usage")
        return usage if isinstance(usage, dict) else None


@dataclass(frozen=True)
class ModelListing:
    models: list[dict[str, Any]]
    """The raw entries of ``data`` (OpenRouter's or OpenAI's shape)."""
    source: str
    """The URL that answered."""

    @property
    def ids(self) -> list[str]:
        return [str(m["id"]) for m in self.models if isinstance(m, dict) and "id" in m]


@dataclass(frozen=True)
class Health:
    status_code: int
    body: dict[str, Any] = field(default_factory=dict)
    latency: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status_code == 200


# --- the client ----------------------------------------------------------------------------------


class Client:
    """One pooled httpx client per endpoint; use as ``async with Client(url, key) as client``."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 600.0,
        connect_timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        self.endpoint: EndpointURLs = parse_endpoint(url)
        self.api_key = api_key or None
        all_headers = {"user-agent": _user_agent(), "x-title": "infer"}
        if self.api_key:
            all_headers["authorization"] = f"Bearer {self.api_key}"
        all_headers.update(headers or {})
        self._http = httpx.AsyncClient(
            headers=all_headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            # loopback never goes through an HTTP proxy; remote endpoints honour HTTPS_PROXY
            trust_env=not self.endpoint.loopback,
            transport=transport,
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- listing ---------------------------------------------------------------------------

    async def list_models(self) -> ModelListing:
        """The endpoint's models: OpenRouter's listing, else OpenAI's ``/v1/models``."""
        last: ClientError | None = None
        for url in self.endpoint.listing_urls():
            try:
                response = await self._send("GET", url)
            except APIStatusError as error:
                if error.status in (404, 405):
                    last = error
                    continue
                raise
            body = _json_or_none(response)
            data = body.get("data") if isinstance(body, dict) else None
            if isinstance(data, list):
                return ModelListing([m for m in data if isinstance(m, dict)], url)
            last = ClientError(f"{url} did not answer with a model list")
        raise last or ClientError(f"{self.endpoint.url} serves no model list")

    # --- completions -----------------------------------------------------------------------

    async def chat(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A whole (non-streamed) chat completion."""
        payload = {**body, "stream": False}
        response = await self._send("POST", self.endpoint.api_url("/chat/completions"), payload)
        answer = _json_or_none(response)
        if not isinstance(answer, dict):
            raise ClientError(f"{self.endpoint.url} answered with something that is not JSON")
        error = answer.get("error")
        if isinstance(error, dict) and not answer.get("choices"):
            message, status, _ = _error_fields(answer, response.status_code)
            raise APIStatusError(message, status=status or 502)
        return answer

    async def chat_stream(self, body: Mapping[str, Any]) -> AsyncIterator[StreamChunk]:
        """The chunks of a streamed chat completion, each with its arrival time.

        Raises :class:`~infer_cli.errors.StreamError` for OpenRouter's mid-stream error event (or a
        stream that breaks), after the chunks that came before it.
        """
        payload = {**body, "stream": True}
        url = self.endpoint.api_url("/chat/completions")
        request = self._http.build_request("POST", url, json=payload)
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, url) from None
        try:
            if response.status_code >= 400:
                await response.aread()
                raise self._status_error(response, url)
            decoder = SSEDecoder()
            async for raw in response.aiter_bytes():
                for event in decoder.feed(raw):
                    chunk = _chunk_of(event.data, event.done)
                    if chunk is None:
                        continue
                    if isinstance(chunk, str):  # [DONE]
                        return
                    yield StreamChunk(chunk, time.perf_counter())
            for event in decoder.close():
                chunk = _chunk_of(event.data, event.done)
                if isinstance(chunk, dict):
                    yield StreamChunk(chunk, time.perf_counter())
        except httpx.HTTPError as exc:
            raise StreamError(
                f"the stream from {self.endpoint.url} broke: {_describe(exc)}"
            ) from None
        finally:
            await response.aclose()

    # --- server root -----------------------------------------------------------------------

    async def health(self) -> Health:
        """``GET /health`` (a 503 with a body is an answer, not an error)."""
        url = self.endpoint.root_url("/health")
        started = time.perf_counter()
        try:
            response = await self._http.get(url)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, url) from None
        latency = time.perf_counter() - started
        body = _json_or_none(response)
        if response.status_code in (401, 403):
            raise self._status_error(response, url)
        return Health(response.status_code, body if isinstance(body, dict) else {}, latency)

    async def metrics_text(self) -> str:
        """``GET /metrics`` as Prometheus text."""
        response = await self._send("GET", self.endpoint.root_url("/metrics"))
        return response.text

    async def generation(self, generation_id: str) -> dict[str, Any] | None:
        """OpenRouter's ``/generation?id=`` stats of a finished generation (``None`` if unknown)."""
        url = self.endpoint.root_url("/api/v1/generation")
        if self.endpoint.openrouter_style:
            url = self.endpoint.api_url("/generation")
        try:
            response = await self._send("GET", url, params={"id": generation_id})
        except APIStatusError:
            return None
        body = _json_or_none(response)
        data = body.get("data") if isinstance(body, dict) else None
        return data if isinstance(data, dict) else None

    # --- plumbing --------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        url: str,
        payload: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        try:
            response = await self._http.request(method, url, json=payload, params=params)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, url) from None
        if response.status_code >= 400:
            raise self._status_error(response, url)
        return response

    def _transport_error(self, exc: httpx.HTTPError, url: str) -> ClientError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            hint = SERVE_HINT if self.endpoint.loopback else "check the URL and your network"
            return EndpointUnreachableError(
                f"cannot reach {self.endpoint.url} ({_describe(exc)})", hint=hint
            )
        if isinstance(exc, httpx.TimeoutException):
            return ClientError(f"{url} did not answer in time ({_describe(exc)})")
        return ClientError(f"request to {url} failed: {_describe(exc)}")

    def _status_error(self, response: httpx.Response, url: str) -> ClientError:
        message, _code, error_type = _error_fields(_json_or_none(response), response.status_code)
        status = response.status_code
        if status in (401, 403):
            what = "needs an API key" if not self.api_key else "refused the API key"
            if status == 403:
                what = "refused the request"
            return AuthenticationError(
                f"{self.endpoint.url} {what} ({status}: {message})",
                hint=KEY_HINT if status == 401 else None,
            )
        hint = None
        retry_after = response.headers.get("retry-after")
        if status in (429, 503) and retry_after:
            hint = f"try again in {retry_after} s"
        if status == 503 and self.endpoint.loopback:
            hint = (hint + "; " if hint else "") + "`infer status` shows what the engine is doing"
        return APIStatusError(
            f"{url} answered {status}: {message}", status=status, error_type=error_type, hint=hint
        )


# --- helpers -------------------------------------------------------------------------------------

REASONING_FIELDS = ("reasoning_content", "reasoning")
"""Where servers put a reasoning model's thinking, in a stream's ``delta`` or an answer's
``message``; when both carry text (a server in transition), the first is taken, not both."""


def reasoning_of(message: Mapping[str, Any]) -> str:
    """The thinking of a ``delta`` or ``message`` (empty when there is none)."""
    for name in REASONING_FIELDS:
        text = _text_field(message, name)
        if text:
            return text
    return ""


def _text_field(message: Mapping[str, Any], name: str) -> str:
    text = message.get(name)
    return text if isinstance(text, str) else ""


def _chunk_of(data: str, done: bool) -> dict[str, Any] | str | None:
    """A parsed chunk, ``"done"`` at ``[DONE]``, ``None`` for an empty event; raises for an error
    event.
    """
    if done:
        return "done"
    if not data.strip():
        return None
    try:
        chunk = json.loads(data)
    except ValueError:
        raise StreamError(f"the stream carried something that is not JSON: {data[:80]!r}") from None
    if not isinstance(chunk, dict):
        return None
    error = chunk.get("error")
    if isinstance(error, dict):
        message, status, _ = _error_fields(chunk, None)
        raise StreamError(message, status=status)
    return chunk


def _error_fields(body: Any, status: int | None) -> tuple[str, int | None, str | None]:
    """``(message, code, error_type)`` from OpenRouter's / OpenAI's error body."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or "").strip() or _reason(status)
        code = error.get("code")
        metadata = error.get("metadata")
        error_type = metadata.get("error_type") if isinstance(metadata, dict) else None
        error_type = error_type or error.get("type")
        return (
            " ".join(message.split()),
            code if isinstance(code, int) else status,
            str(error_type) if error_type else None,
        )
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return body["detail"], status, None
    if isinstance(error, str):
        return error, status, None
    return _reason(status), status, None


def _reason(status: int | None) -> str:
    if status is None:
        return "error"
    try:
        from http import HTTPStatus

        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _user_agent() -> str:
    from infer_cli import __version__

    return f"infer/{__version__}"
