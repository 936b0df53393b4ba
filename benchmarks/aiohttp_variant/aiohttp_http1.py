"""aiohttp in place of ``infer_cli.wire.http1`` on infer's two hot paths (see ``sitecustomize.py``):
the same interfaces as what they replace, so that only the HTTP/1.1 client differs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import aiohttp
import httpx
from yarl import URL

from infer_cli import __version__
from infer_cli.bench.http import HTTPFailure
from infer_cli.proxy.upstream.transport import ResponseBody

_NOT_FORWARDED = {b"host", b"content-length", b"transfer-encoding"}
_closing: set[asyncio.Future[None]] = set()


def _session(limit: int, keepalive: float) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=limit, limit_per_host=0, keepalive_timeout=keepalive, ttl_dns_cache=None
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
        timeout=aiohttp.ClientTimeout(total=None),
    )


# --- the proxy's engine transport -----------------------------------------------------------------


class AiohttpBody(ResponseBody):
    """A response body read through aiohttp (a ResponseBody, so the proxy reads it as it is)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._response.content.iter_any():
                yield data
        except TimeoutError:
            raise httpx.ReadTimeout("the engine sent nothing in time") from None
        except aiohttp.ClientError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from None

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            if self._response.content.at_eof():
                self._response.release()
            else:
                self._response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_connections: int, max_idle: int, keepalive_expiry: float) -> None:
        self._limit = max_connections
        self._keepalive = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = _session(self._limit, self._keepalive)
        timeouts = request.extensions.get("timeout", {})
        text = str(request.url)
        url = self._urls.get(text)
        if url is None:
            url = self._urls[text] = URL(text, encoded=True)
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.lower() not in _NOT_FORWARDED
        ]
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.get("pool"),
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )
        try:
            response = await self._session.request(
                request.method, url, data=request.content, headers=headers, timeout=timeout
            )
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc)) from None
        except TimeoutError:
            raise httpx.ReadTimeout("the engine sent no response in time") from None
        except aiohttp.ClientError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from None
        return httpx.Response(
            response.status,
            headers=list(response.raw_headers),
            stream=AiohttpBody(response),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": b"OK"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


# --- the load generator ---------------------------------------------------------------------------


def _failure(exc: BaseException) -> HTTPFailure:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return HTTPFailure("connect", str(exc))
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | OSError):
        return HTTPFailure("disconnect", f"the connection broke: {exc}")
    return HTTPFailure("protocol", str(exc))


class AiohttpResponse:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = {name.lower(): value for name, value in response.headers.items()}

    async def iter_body(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._response.content.iter_any():
                yield data
        except aiohttp.ClientError as exc:
            raise _failure(exc) from None

    async def read(self) -> bytes:
        return b"".join([part async for part in self.iter_body()])

    def release(self) -> None:
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpPool:
    """``infer_cli.bench.http.Pool``'s interface over one aiohttp session."""

    def __init__(
        self,
        url: str,
        *,
        size: int,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = URL(url)
        self.size = size
        self.connect_timeout = connect_timeout
        self._headers = {"User-Agent": f"infer-bench/{__version__}", **(headers or {})}
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)

    def head(
        self, method: str, path: str, content_type: str, length: int
    ) -> tuple[str, URL, dict[str, str]]:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self.url.with_path(path, encoded=True)
        return method, url, {**self._headers, "Content-Type": content_type}

    async def request(self, head: tuple[str, URL, dict[str, str]], body: bytes) -> AiohttpResponse:
        if self._session is None:
            self._session = _session(0, 15.0)
        method, url, headers = head
        try:
            response = await self._session.request(
                method, url, data=body, headers=headers, timeout=self._timeout
            )
        except (aiohttp.ClientError, OSError) as exc:
            raise _failure(exc) from None
        return AiohttpResponse(response)

    def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            _closing.add(asyncio.ensure_future(session.close()))
