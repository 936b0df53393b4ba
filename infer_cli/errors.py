"""The one exception tree of infer.

Every error a user can cause or meet is an :class:`InferError`. Services raise them; only
``infer_cli.cli`` turns them into an exit code and a single line of output (what went wrong, where,
and what to do).
"""

from __future__ import annotations

from pathlib import Path

EXIT_INTERRUPTED = 130
"""Exit code of a command the user stopped with Ctrl-C (128 + SIGINT, as shells report it)."""


class InferError(Exception):
    """Base of every error infer reports to a user."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, log_path: Path | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.log_path = log_path

    def one_line(self) -> str:
        parts = [self.message.rstrip(".")]
        if self.log_path is not None:
            parts.append(f"log: {self.log_path}")
        if self.hint:
            parts.append(self.hint.rstrip("."))
        return "; ".join(parts)


# --- bad usage (exit code 2) -------------------------------------------------------------------


class UsageError(InferError):
    """The user asked for something that cannot work as asked."""

    exit_code = 2


class ProfileError(UsageError):
    """A profile is missing, unreadable, or does not validate."""


class ProfileNotFoundError(ProfileError):
    pass


class SettingError(UsageError):
    """A ``--set`` or ``INFER_*`` override is malformed or names an unknown key."""


# --- failures of the work (exit code 1) --------------------------------------------------------


class PortInUseError(InferError):
    pass


class EngineError(InferError):
    """vLLM or LMCache could not be found, started, or kept running."""


class EngineNotInstalledError(EngineError):
    pass


class EngineStartError(EngineError):
    """An engine process died or timed out while starting."""


class EngineCrashedError(EngineError):
    """An engine process died after it was ready."""


class InstallError(InferError):
    """Building the engine environment or preparing a model failed."""


class ModelError(InferError):
    """A model is missing or cannot be prepared."""


# --- talking to an endpoint (infer chat, models, status, bench) ------------------------------


class ClientError(InferError):
    """A request to an OpenAI/OpenRouter-compatible endpoint failed."""


class EndpointUnreachableError(ClientError):
    """Nothing answers at the URL (refused, unknown host, timed out while connecting)."""


class AuthenticationError(ClientError):
    """The endpoint refused the API key (401) or the key's rights (403)."""


class APIStatusError(ClientError):
    """The endpoint answered with an error status (its message and type are kept)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        error_type: str | None = None,
        hint: str | None = None,
    ):
        super().__init__(message, hint=hint)
        self.status = status
        self.error_type = error_type


class StreamError(ClientError):
    """The endpoint reported an error after the answer had started (or the stream broke)."""

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.status = status


class ModelNotFoundError(UsageError):
    """The endpoint does not serve the model asked for."""


class ConversationError(UsageError):
    """A conversation file is missing, unreadable, or not a conversation."""
