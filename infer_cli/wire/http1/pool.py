"""Connections lent out per origin: a slot for each exchange, idle connections kept for the next.

- Idle connections sit on a stack per origin, the most recently used taken first and checked when
  taken: one past ``keepalive_expiry``, closed by the server (the protocol saw the EOF) or with
  anything unread on its socket is closed, not lent.
- At most ``max_connections`` exchanges hold a connection (None: no limit); more wait for a slot,
  first come first served, up to the pool timeout (``httpx.PoolTimeout``).
- At most ``max_idle`` idle connections are kept.

No retries: whether a request may be sent again is the caller's call (the proxy never resends, the
load generator resends once on a reused connection that the server had closed).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import time

import httpx

from infer_cli.wire.http1.connection import Connection, Origin


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class Pool:
    """HTTP/1.1 connections to any number of origins: see the module's docstring."""

    def __init__(
        self,
        *,
        max_connections: int | None = 1024,
        max_idle: int = 256,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._idle: dict[Origin, list[Connection]] = {}
        self._idle_count = 0
        self._active = 0
        """Connections lent out (being connected, or carrying an exchange)."""
        self._waiting: collections.deque[asyncio.Future[bool]] = collections.deque()
        self._closed = False

    @property
    def active(self) -> int:
        return self._active

    @property
    def idle(self) -> int:
        return self._idle_count

    async def acquire(
        self, origin: Origin, *, connect_timeout: float | None, pool_timeout: float | None
    ) -> Connection:
        """A connection to ``origin``: an idle one, else a new one. Give it back with
        :meth:`release` once its response is read (or abandoned).
        """
        if self._closed:
            raise RuntimeError("the connection pool is closed")
        await self._acquire_slot(pool_timeout)
        try:
            connection = self._take_idle(origin)
            if connection is None:
                connection = await self._connect(origin, connect_timeout)
        except BaseException:
            self._release_slot()
            raise
        return connection

    def acquire_idle(self, origin: Origin) -> Connection | None:
        """An idle connection to ``origin`` at once, when one is kept and a slot is free with nobody
        waiting for one; else None (and no slot taken): :meth:`acquire` then waits or connects."""
        if self._closed or self._waiting or not self._idle.get(origin):
            return None
        if self.max_connections is not None and self._active >= self.max_connections:
            return None
        connection = self._take_idle(origin)
        if connection is not None:
            self._active += 1
        return connection

    def release(self, connection: Connection) -> None:
        """An exchange is over: its connection is kept for the next if it can carry one, else
        closed (a body not read to its end closes it, so the server sees the client go away).
        """
        if not self._closed and self._idle_count < self.max_idle and connection.reusable():
            connection.idle_since = time.monotonic()
            connection.on_lost = self._forget
            self._idle.setdefault(connection.origin, []).append(connection)
            self._idle_count += 1
        else:
            connection.close()
        self._release_slot()

    def close(self) -> None:
        """Close every idle connection; lent ones close when they are released."""
        self._closed = True
        for stack in self._idle.values():
            for connection in stack:
                connection.on_lost = None
                connection.close()
        self._idle.clear()
        self._idle_count = 0

    # --- slots ----------------------------------------------------------------------------------

    async def _acquire_slot(self, timeout: float | None) -> None:
        limit = self.max_connections
        if (limit is None or self._active < limit) and not self._waiting:
            self._active += 1
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiting.append(waiter)
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            granted = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self._release_slot()  # handed over just as this request gave up
            else:
                self._discard(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if not granted:
            self._discard(waiter)
            raise httpx.PoolTimeout("every connection stayed busy")

    def _release_slot(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(True)  # the slot passes straight to the next in line
                return
        self._active -= 1

    def _discard(self, waiter: asyncio.Future[bool]) -> None:
        with contextlib.suppress(ValueError):
            self._waiting.remove(waiter)

    # --- connections ----------------------------------------------------------------------------

    def _take_idle(self, origin: Origin) -> Connection | None:
        stack = self._idle.get(origin)
        if not stack:
            limit = self.max_connections
            if limit is not None and self._active + self._idle_count > limit:
                self._close_one_idle()
            return None
        oldest = time.monotonic() - self.keepalive_expiry
        while stack:
            connection = stack.pop()
            self._idle_count -= 1
            connection.on_lost = None
            if connection.idle_since >= oldest and connection.alive():
                return connection
            connection.close()
        return None

    def _close_one_idle(self) -> None:
        for stack in self._idle.values():
            if stack:
                connection = stack.pop(0)
                self._idle_count -= 1
                connection.on_lost = None
                connection.close()
                return

    def _forget(self, connection: Connection) -> None:
        """An idle connection was closed by the server: out of the pool."""
        stack = self._idle.get(connection.origin)
        if stack is not None and connection in stack:
            stack.remove(connection)
            self._idle_count -= 1
        connection.on_lost = None

    async def _connect(self, origin: Origin, timeout: float | None) -> Connection:
        scheme, raw_host, port = origin
        host = raw_host.decode("ascii")
        tls: ssl.SSLContext | None = None
        if scheme == b"https":
            if self._ssl_context is None:
                self._ssl_context = ssl.create_default_context()
            tls = self._ssl_context
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: Connection(origin, loop),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} in time") from None
        except OSError as exc:  # ssl.SSLError is one
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from None
        return connection
