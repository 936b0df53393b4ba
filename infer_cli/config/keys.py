"""The API keys file: hashed keys on disk, read by the proxy and edited by ``infer keys``.

The file stores only hashes, one ``name:sha256hex`` line per key; keys from the profile and the
environment are plaintext, as the operator wrote them, and are hashed on reading. Plain SHA-256
without salt is enough here: keys are 256-bit random tokens, not passwords, so there is nothing to
guess. Nothing here ever shows a key's hash in an error, nor a line that might be a pasted key.

The store sits below both its users (``cli/keys.py`` and ``proxy/guards/auth.py``, which watches the
file and checks requests) and imports no web framework, so the ``infer keys`` commands stay fast.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from infer_cli import paths
from infer_cli.errors import UsageError
from infer_cli.files import write_atomic

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
