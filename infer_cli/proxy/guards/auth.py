"""API keys at the proxy: the set of keys it accepts, and the middleware that checks them.

Keys come from the profile and the environment (plaintext, as the operator wrote them) and from a
keys file of hashes (``config/keys.py`` reads and writes it; the key ring here re-reads it when it
changes). A presented key is hashed once and compared with every known hash with
:func:`hmac.compare_digest`, never short-circuiting, so the time taken does not depend on which
key (or how much of one) matched.

Nothing here ever logs a key or its hash; a request is known by its key id only: the name from the
keys file, or ``key-`` and 8 hex digits of the hash for a key from the profile or the environment.
This module imports no web framework at module level.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from infer_cli.config.keys import ApiKey, read_keys_file
from infer_cli.errors import InferError
from infer_cli.proxy import errors

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("infer.proxy")

# --- the set of keys the proxy accepts ---------------------------------------------------------


class KeyRing:
    """Every key the proxy accepts: fixed ones plus those of a keys file, re-read when it changes.

    The file is checked at most every ``check_every`` seconds (one ``stat``); a change takes effect
    without a restart. With ``optional`` the file may not exist yet: it is watched all the same,
    and the proxy requires keys from the moment it appears. A file that becomes unreadable,
    malformed or deleted keeps the keys last read (and says so in the log), so editing it never
    opens the proxy by accident; a proxy opens only when restarted without keys.
    """

    def __init__(
        self,
        keys: Iterable[ApiKey] = (),
        file: Path | None = None,
        *,
        optional: bool = False,
        check_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._static = _unique(keys)
        self.file = file
        self._check_every = check_every
        self._clock = clock
        self._file_keys: tuple[ApiKey, ...] = ()
        self._file_stamp: tuple[int, int, int] | None = None
        self._file_seen = False
        """The file existed at some point: from then on, requests need a key."""
        self._checked_at = clock()
        if file is not None and not (optional and not file.exists()):
            self._file_keys = tuple(read_keys_file(file))
            self._file_stamp = _stamp(file)
            self._file_seen = True
        self._all = _unique(self._static + self._file_keys)

    @property
    def enabled(self) -> bool:
        """True when requests must present a key: fixed keys, or a keys file (even an empty
        one) that exists or existed."""
        if self._static:
            return True
        self._maybe_reload()
        return self._file_seen

    def keys(self) -> tuple[ApiKey, ...]:
        self._maybe_reload()
        return self._all

    def match(self, presented: str) -> str | None:
        """The id of the key ``presented`` is, or None; in constant time over all keys."""
        digest = hashlib.sha256(presented.encode()).digest()
        found: str | None = None
        for key in self.keys():
            if hmac.compare_digest(digest, key.digest) and found is None:
                found = key.id
        return found

    def describe(self) -> str:
        parts = []
        if self._static:
            parts.append(f"{len(self._static)} from the profile and environment")
        if self.file is not None and self._file_seen:
            parts.append(f"{len(self._file_keys)} from {self.file}")
        return ", ".join(parts)

    def _maybe_reload(self) -> None:
        if self.file is None:
            return
        now = self._clock()
        if now - self._checked_at < self._check_every:
            return
        self._checked_at = now
        try:
            stamp = _stamp(self.file)
            if stamp == self._file_stamp:
                return
            keys = tuple(read_keys_file(self.file))
        except FileNotFoundError:
            if self._file_seen and self._file_stamp is not None:
                log.warning(
                    "API keys file %s is gone; keeping the keys read before (restart to drop them)",
                    self.file,
                )
                self._file_stamp = None
            return
        except (OSError, InferError) as exc:
            message = exc.message if isinstance(exc, InferError) else str(exc)
            log.warning("API keys file not reloaded, keeping the keys read before: %s", message)
            self._file_stamp = None
            return
        if not self._file_seen:
            log.warning(
                "API keys file %s appeared: keys are required from now on (%d keys)",
                self.file,
                len(keys),
            )
        else:
            log.info("API keys file %s reloaded: %d keys", self.file, len(keys))
        self._file_keys, self._file_stamp, self._file_seen = keys, stamp, True
        self._all = _unique(self._static + keys)


def _unique(keys: Iterable[ApiKey]) -> tuple[ApiKey, ...]:
    seen: dict[bytes, ApiKey] = {}
    for key in keys:
        seen.setdefault(key.digest, key)
    return tuple(seen.values())


def _stamp(path: Path) -> tuple[int, int, int]:
    status = path.stat()
    return status.st_mtime_ns, status.st_size, status.st_ino


# --- the middleware ----------------------------------------------------------------------------


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            text: str = value.decode("latin-1")
            scheme, _, token = text.strip().partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


class AuthMiddleware:
    """401 unless the request carries a known key; the key's id goes to ``scope["state"]``.

    Paths in ``open_paths`` (``/health``, ``/metrics`` unless protected) pass without a key. With
    no keys configured every request passes, and ``key_id`` is None.
    """

    def __init__(self, app: ASGIApp, *, keys: KeyRing, open_paths: Sequence[str] = ()) -> None:
        self.app = app
        self.keys = keys
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["key_id"] = None
        if not self.keys.enabled or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        key_id = self.keys.match(token) if token is not None else None
        if key_id is None:
            message = (
                "missing API key: send 'Authorization: Bearer <key>'"
                if token is None
                else "invalid API key"
            )
            log.debug("401 for %s %s: %s", scope["method"], scope["path"], message)
            response = errors.error_response(
                401,
                message,
                error_type=errors.AUTHENTICATION,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        state["key_id"] = key_id
        await self.app(scope, receive, send)
