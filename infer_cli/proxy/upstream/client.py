"""Talking to the engine: the pooled client, which headers cross the proxy, and transport errors as
statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from infer_cli.proxy import errors
from infer_cli.proxy.errors import ProxyError
from infer_cli.proxy.upstream.transport import ResponseBody, Sent, UpstreamTransport

if TYPE_CHECKING:
    from infer_cli.proxy.context import ProxyConfig

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# The client's own key never reaches the engine; the length is recomputed; the proxy asks for
# identity encoding so that it can add comments (and later rewrite usage) in the byte stream.
_DROP_FROM_REQUEST = HOP_BY_HOP | {
    "host",
    "authorization",
    "content-length",
    "accept-encoding",
    "expect",
}
# uvicorn writes its own Date; the body may be re-chunked, so the length does not carry over.
# A redirect's Location (or Content-Location) would name the engine's internal address.
_DROP_FROM_RESPONSE = HOP_BY_HOP | {
    "content-length",
    "date",
    "server",
    "location",
    "content-location",
}

_ERROR_TEXT_LIMIT = 64 * 1024


@dataclass(frozen=True)
class UpstreamRequest:
    method: str
    url: str
    headers: list[tuple[str, str]]
    content: bytes
    stream: bool
    """The client asked for an SSE stream (``"stream": true``), so keep-alive comments apply."""
    model: str
    """The model the client asked for (or the served one), for error events."""


class UpstreamStreamError(ProxyError):
    """The engine failed after its response started: the status can no longer be sent as an HTTP
    status.
    """


KEEPALIVE_EXPIRY = 30.0
"""Seconds an idle connection to an ``https://`` upstream is kept for the next request."""
ENGINE_KEEPALIVE_EXPIRY = 4.0
"""The same for an ``http://`` engine: less than the 5 s after which uvicorn (vLLM's server, and
the simulator's) closes an idle connection, so that the proxy never sends a request on a connection
that the engine is closing at that moment (which fails the request)."""


class UpstreamClient(httpx.AsyncClient):
    """The proxy's client: ``http://`` engines through :class:`UpstreamTransport`, anything else
    through httpx's own transport.

    :meth:`open` sends a request to an ``http://`` engine on that transport directly: the same
    request (the client's default headers under the request's own, the client's timeouts), without
    the per-request work of :meth:`httpx.AsyncClient.send` (auth and redirect flows, cookie jar,
    event hooks), none of which the proxy uses. That is a tenth of a millisecond per request.
    """

    def __init__(self, *, engine: UpstreamTransport, **options: Any) -> None:
        super().__init__(mounts={"http://": engine}, **options)
        self.engine = engine
        self._urls: dict[str, httpx.URL] = {}

    def handles(self, url: str) -> bool:
        return url.startswith("http://")

    async def open(
        self, method: str, url: str, headers: list[tuple[str, str]], content: bytes
    ) -> httpx.Response:
        request = self._request(method, url, headers, content)
        response = await self.engine.handle_async_request(request)
        response.request = request
        return response

    def open_now(
        self, method: str, url: str, headers: list[tuple[str, str]], content: bytes
    ) -> tuple[httpx.Request, Sent] | None:
        """:meth:`open`'s request written now, when an idle connection allows
        (:meth:`UpstreamTransport.send_now`); else None."""
        request = self._request(method, url, headers, content)
        sent = self.engine.send_now(request)
        return None if sent is None else (request, sent)

    def _request(
        self, method: str, url: str, headers: list[tuple[str, str]], content: bytes
    ) -> httpx.Request:
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= _URL_CACHE_SIZE:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        merged = httpx.Headers(self.headers)
        merged.update(headers)
        return httpx.Request(
            method,
            parsed,
            headers=merged,
            content=content,
            extensions={"timeout": self.timeout.as_dict()},
        )


_URL_CACHE_SIZE = 256


def create_client(config: ProxyConfig) -> httpx.AsyncClient:
    """One pooled client per app. ``trust_env=False``: loopback traffic must never go through an
    HTTP proxy.

    Plain ``http://`` engines (the usual case: vLLM on loopback) go through the proxy's own pool
    (:mod:`infer_cli.proxy.upstream.transport`), built for many concurrent streams; ``https://``
    upstreams through httpx's.
    """
    max_idle = min(config.max_connections, 256)
    engine = UpstreamTransport(
        max_connections=config.max_connections,
        max_idle=max_idle,
        keepalive_expiry=ENGINE_KEEPALIVE_EXPIRY,
    )
    return UpstreamClient(
        engine=engine,
        timeout=httpx.Timeout(
            connect=config.connect_timeout,
            read=config.request_timeout,
            write=config.request_timeout,
            pool=config.request_timeout,
        ),
        limits=httpx.Limits(
            max_connections=config.max_connections,
            max_keepalive_connections=max_idle,
            keepalive_expiry=KEEPALIVE_EXPIRY,
        ),
        follow_redirects=False,
        trust_env=False,
    )


FORWARDED_REQUEST_HEADERS = frozenset({"content-type", "accept", "x-request-id"})
"""The only client headers the engine gets: what it needs to read the body and answer, and the
request id it logs. Everything else (``X-Title``, ``HTTP-Referer``, cookies, ...) stays here."""


def request_headers(
    raw: Iterable[tuple[bytes, bytes]], api_key: str | None
) -> list[tuple[str, str]]:
    """The client's headers as sent upstream: only :data:`FORWARDED_REQUEST_HEADERS` with a
    printable ASCII value (a UTF-8 ``X-Title`` is no reason to fail), then the proxy's own.
    """
    pairs = [(name.decode("latin-1").lower(), value) for name, value in raw]
    drop = _DROP_FROM_REQUEST | _connection_tokens(
        (name, value.decode("latin-1")) for name, value in pairs if name == "connection"
    )
    headers = [
        (name, value.decode("ascii"))
        for name, value in pairs
        if name in FORWARDED_REQUEST_HEADERS and name not in drop and _printable(value)
    ]
    headers.append(("accept-encoding", "identity"))
    if api_key:
        headers.append(("authorization", f"Bearer {api_key}"))
    return headers


def _printable(value: bytes) -> bool:
    return value.isascii() and all(32 <= byte < 127 or byte == 9 for byte in value)


def response_headers(headers: httpx.Headers) -> list[tuple[bytes, bytes]]:
    """The engine's response headers as sent to the client (raw ASGI form)."""
    pairs = [(name.lower(), value) for name, value in headers.raw]
    drop = _DROP_FROM_RESPONSE | _connection_tokens(
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in pairs
    )
    return [(name, value) for name, value in pairs if name.decode("latin-1") not in drop]


def _connection_tokens(pairs: Iterable[tuple[str, str]]) -> set[str]:
    """Headers named in ``Connection`` are hop-by-hop too (RFC 9110, 7.6.1)."""
    tokens: set[str] = set()
    for name, value in pairs:
        if name.lower() == "connection":
            tokens.update(token.strip().lower() for token in value.split(",") if token.strip())
    return tokens


def start_response(
    client: httpx.AsyncClient, request: UpstreamRequest
) -> asyncio.Task[httpx.Response]:
    """:func:`open_response` as a task, with the request already on its way to the engine when an
    idle connection allows (a task's own first turn comes one pass of the event loop later)."""
    if isinstance(client, UpstreamClient) and client.handles(request.url):
        try:
            opened = client.open_now(request.method, request.url, request.headers, request.content)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return asyncio.ensure_future(_failed(upstream_error(exc, started=False)))
        if opened is not None:
            built, sent = opened
            task = asyncio.ensure_future(_answer(built, sent))
            task.add_done_callback(lambda _: sent.abandon())  # cancelled before its first turn
            return task
    return asyncio.ensure_future(open_response(client, request))


async def _answer(request: httpx.Request, sent: Sent) -> httpx.Response:
    try:
        response = await sent.response()
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise upstream_error(exc, started=False) from exc
    response.request = request
    return response


async def _failed(error: ProxyError) -> httpx.Response:
    raise error


async def open_response(client: httpx.AsyncClient, request: UpstreamRequest) -> httpx.Response:
    """Send ``request`` and return once the engine's status and headers arrived (the body is not
    read). A transport failure raises :func:`upstream_error`'s :class:`ProxyError`.
    """
    try:
        if isinstance(client, UpstreamClient) and client.handles(request.url):
            return await client.open(request.method, request.url, request.headers, request.content)
        built = client.build_request(
            request.method, request.url, headers=request.headers, content=request.content
        )
        return await client.send(built, stream=True)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise upstream_error(exc, started=False) from exc


async def iter_body(response: httpx.Response) -> AsyncIterator[bytes]:
    """The engine's body bytes as they arrive; a failure mid-way raises
    :class:`UpstreamStreamError`.
    """
    stream = response.stream
    # The engine transport's body as it is: httpx's layers over it add nothing here.
    source = stream if isinstance(stream, ResponseBody) else response.aiter_raw()
    try:
        async for chunk in source:
            if chunk:
                yield chunk
    except httpx.HTTPError as exc:
        raise upstream_error(exc, started=True) from exc


def upstream_error(exc: httpx.HTTPError | httpx.InvalidURL, *, started: bool) -> ProxyError:
    """The one mapping of a transport failure to the status the client gets: 502 when the engine
    cannot be reached or drops the connection, 408 (OpenRouter's timeout status) when it stays
    silent longer than the read timeout, 503 when every pooled connection stays busy. Once the
    engine's answer ``started``, an :class:`UpstreamStreamError` (the status can no longer be
    sent as an HTTP status).
    """
    error = UpstreamStreamError if started else ProxyError
    what = _describe(exc)
    if isinstance(exc, httpx.PoolTimeout):
        return error(
            503,
            "every connection to the engine stayed busy; try again",
            error_type=errors.PROVIDER_OVERLOADED,
            headers={"Retry-After": str(errors.RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, httpx.ConnectTimeout):
        message = f"the engine did not accept a connection: {what}"
    elif isinstance(exc, httpx.TimeoutException):
        verb = "stopped sending" if started else "did not answer in time"
        return error(408, f"the engine {verb}: {what}", error_type=errors.TIMEOUT)
    elif isinstance(exc, httpx.ConnectError):
        message = f"cannot reach the engine: {what}"
    elif started:
        message = f"the engine broke off its answer: {what}"
    else:
        message = f"the engine failed to answer: {what}"
    return error(502, message, error_type=errors.PROVIDER_UNAVAILABLE)


async def error_message(response: httpx.Response) -> str:
    """The message of an engine's error answer (vLLM: ``{"error": {"message": ...}}``), read with a
    size cap.
    """
    data = bytearray()
    try:
        async for chunk in response.aiter_raw():
            data += chunk
            if len(data) >= _ERROR_TEXT_LIMIT:
                break
    except httpx.HTTPError:
        pass
    text = bytes(data[:_ERROR_TEXT_LIMIT]).decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        inner = parsed.get("error", parsed)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        if isinstance(parsed.get("detail"), str):
            return str(parsed["detail"])
    return text.strip() or f"the engine answered {response.status_code}"


def _describe(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


DRAIN_BYTES = 64 * 1024
DRAIN_SECONDS = 1.0
"""After ``[DONE]`` the rest of the engine's body (its end, normally) is read and dropped, up to
this much for this long, so that the connection can carry the next request."""


async def drain(source: AsyncIterator[bytes]) -> None:
    """Read what follows ``[DONE]`` (the end of the chunked body, normally): a response read to its
    end gives its connection back to the pool; one closed early costs a new connection.
    """
    drained = 0
    with contextlib.suppress(TimeoutError, UpstreamStreamError):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for raw in source:
                drained += len(raw)
                if drained > DRAIN_BYTES:
                    return
