"""API keys: where they come from, how they are stored, and the middleware that checks them.

Keys come from the profile and the environment (plaintext, as the operator wrote them) and from a
keys file that stores only hashes, one ``name:sha256hex`` line per key. A presented key is hashed
once and compared with every known hash with :func:`hmac.compare_digest`, never short-circuiting,
so the time taken does not depend on which key (or how much of one) matched. Plain SHA-256 without
salt is enough here: keys are 256-bit random tokens, not passwords, so there is nothing to guess.

Nothing here ever logs a key or its hash; a request is known by its key id only: the name from the
keys file, or ``key-`` and 8 hex digits of the hash for a key from the profile or the environment.
This module imports no web framework at module level, so the ``infer keys`` commands stay fast.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from infer_cli import paths
from infer_cli.errors import InferError, UsageError
from infer_cli.files import write_atomic
from infer_cli.proxy import errors

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("infer.proxy")

KEY_PREFIX = "sk-infer-"
"""What keys made by :func:`add_key` start with (so that secret scanners can recognise them)."""
KEYS_FILE_NAME = "api_keys"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LINE_PATTERN = re.compile(r"(?P<name>[^:\s]+):(?P<digest>[0-9a-fA-F]{64})")


class KeysFileError(UsageError):
    """A keys file that cannot be read or has a malformed line."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    """What logs, metrics and later stages know the key by; never the key itself."""
    digest: bytes
    """SHA-256 of the key (32 bytes)."""

    def __repr__(self) -> str:
        return f"ApiKey(id={self.id!r})"


def hash_key(key: str) -> str:
    """The SHA-256 hex digest stored for ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


def plain_key(key: str) -> ApiKey:
    """A key given in plaintext (profile, environment): its id is a short prefix of its hash."""
    digest = hashlib.sha256(key.encode()).digest()
    return ApiKey(id="key-" + digest.hex()[:8], digest=digest)


def default_keys_file() -> Path:
    """Where ``add_key`` writes by default and the proxy looks when no file is configured."""
    return paths.home() / KEYS_FILE_NAME


# --- the keys file ----------------------------------------------------------------------------


def parse_keys_file(text: str, path: Path) -> list[ApiKey]:
    """The keys of a keys file: ``name:sha256hex`` lines; blank lines and ``#`` comments ignored."""
    keys: list[ApiKey] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE_PATTERN.fullmatch(line)
        if match is None:
            # The line is not echoed: it might be a plaintext key pasted by mistake.
            raise KeysFileError(
                f"{path}, line {number}: expected 'name:sha256hex'",
                hint="add keys with `infer keys add NAME`, or write sha256 hex digests, not keys",
            )
        name = match["name"]
        if name in seen:
            raise KeysFileError(f"{path}, line {number}: the key name {name!r} is used twice")
        seen.add(name)
        keys.append(ApiKey(id=name, digest=bytes.fromhex(match["digest"])))
    return keys


def read_keys_file(path: Path) -> list[ApiKey]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeysFileError(
            f"the API keys file {path} does not exist",
            hint="create it with `infer keys add NAME`, or fix proxy.api_keys_file",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeysFileError(f"cannot read the API keys file {path}: {exc}") from None
    return parse_keys_file(text, path)


def add_key(path: Path | str, name: str) -> str:
    """Make a new key named ``name``, store its hash in the keys file ``path``, return the key.

    The key is shown once (by the caller) and never stored in plaintext. The file is created with
    mode 0600 when missing. A name that is malformed or already used is an error.
    """
    path = Path(path)
    if NAME_PATTERN.fullmatch(name) is None:
        raise KeysFileError(
            f"{name!r} is not a valid key name",
            hint="use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    existing = read_keys_file(path) if path.exists() else []
    if any(key.id == name for key in existing):
        raise KeysFileError(
            f"a key named {name!r} already exists in {path}", hint="remove it first or pick another"
        )
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    current = path.read_bytes() if path.exists() else b""
    needs_newline = bool(current) and not current.endswith(b"\n")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(("\n" if needs_newline else "") + f"{name}:{hash_key(key)}\n")
    return key


def remove_key(path: Path | str, name: str) -> bool:
    """Delete the key ``name`` from the keys file; False when there was none by that name."""
    path = Path(path)
    if not path.exists():
        return False
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if line.strip().split(":", 1)[0] != name]
    if len(kept) == len(lines):
        return False
    write_atomic(path, "".join(kept).encode("utf-8"))
    return True


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
