"""Serving an ASGI app (the proxy, the simulator) with uvicorn on a socket bound up front, in the
caller's event loop.

``bind()`` claims the public port at once, so a port in use is reported before a long engine start.
``AppServer`` drives uvicorn's public ``Server.startup`` / ``main_loop`` / ``shutdown`` and never
installs signal handlers: the serve composer owns SIGINT and SIGTERM. uvicorn speaks HTTP/1.1 with
httptools (a dependency: its parser and its writes take less CPU than h11's for every streamed
chunk), through :class:`~infer_cli.wire.guarded_http.GuardedHttpProtocol`, which bounds what
one connection may cost (head size, read timeouts, open connections: :class:`ConnectionLimits`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import socket
from typing import Any

from infer_cli.errors import InferError, PortInUseError
from infer_cli.wire.guarded_http import ConnectionLimits

BACKLOG = 2048


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0 picks a free one)."""
    try:
        # As uvicorn does: IPv6 only for an IPv6 literal, so "localhost" means 127.0.0.1 everywhere.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        infos = socket.getaddrinfo(
            host, port, family=family, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise InferError(
            f"cannot listen on {host}: {exc.strerror}",
            hint="pass --host with an address of this machine",
        ) from None
    family, kind, _, _, address = infos[0]
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says so (with proto 0, small responses wait 40 ms for a delayed ACK).
    sock = socket.socket(family, kind, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # Listening now (not when uvicorn starts) is what makes the port ours: two sockets with
        # SO_REUSEADDR may both bind a port, but only one may listen on it.
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"port {port} on {host} is already in use", hint="stop what uses it or pass --port"
            ) from None
        if exc.errno == errno.EACCES:
            hint = "ports below 1024 need privileges; pass --port"
        elif exc.errno == errno.EADDRNOTAVAIL:
            hint = "pass --host with an address of this machine"
        else:
            hint = "check --host and --port"
        raise InferError(f"cannot listen on {host}:{port}: {exc.strerror}", hint=hint) from None
    return sock


class AppServer:
    """uvicorn serving ``app`` on ``sock`` as a task of the running event loop."""

    def __init__(
        self,
        app: Any,
        sock: socket.socket,
        *,
        log_level: str = "warning",
        shutdown_timeout: int = 3,
        limits: ConnectionLimits | None = None,
    ) -> None:
        import uvicorn

        from infer_cli.wire.guarded_http import GuardedHttpProtocol

        protocol = functools.partial(GuardedHttpProtocol, limits=limits or ConnectionLimits())
        self._sock = sock
        self._url = _url_of(sock)
        self._shutdown_timeout = shutdown_timeout
        self._config = uvicorn.Config(
            app,
            http=protocol,  # type: ignore[arg-type]  # a protocol factory, as uvicorn calls it
            ws="none",  # no route of the proxy is a WebSocket
            lifespan="on",
            log_config=None,  # leave the process's logging configuration alone
            log_level=log_level,
            server_header=False,
            timeout_graceful_shutdown=shutdown_timeout,
        )
        self._server = uvicorn.Server(self._config)
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` as actually bound."""
        return self._url

    async def start(self) -> None:
        """Run the app's startup, accept connections, and return; serving goes on in a task."""
        if self._task is not None or self._closed:
            raise RuntimeError("an AppServer starts once")
        server = self._server
        if not self._config.loaded:
            self._config.load()
        server.lifespan = self._config.lifespan_class(self._config)
        try:
            await server.startup(sockets=[self._sock])
        except SystemExit:
            self._close_socket()
            raise InferError(
                "the proxy failed to start", hint="run with --verbose for details"
            ) from None
        self._task = asyncio.create_task(self._serve(), name=f"infer proxy {self._url}")

    async def _serve(self) -> None:
        await self._server.main_loop()
        await self._server.shutdown(sockets=[self._sock])

    async def stop(self) -> None:
        """Stop accepting, give requests in flight ``shutdown_timeout`` s, close. Idempotent."""
        self._closed = True
        task = self._task
        if task is None:
            self._close_socket()
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self._shutdown_timeout + 2)
        except TimeoutError:
            self._server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            self._close_socket()

    def _close_socket(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


def _url_of(sock: socket.socket) -> str:
    address = sock.getsockname()
    host, port = address[0], address[1]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"http://{host}:{port}"
