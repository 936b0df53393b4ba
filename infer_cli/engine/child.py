"""The child's side of a start: the environment it gets, dying with infer, its exit in words.

On Linux the kernel is asked to send the child SIGTERM when infer dies, so a ``kill -9`` of infer
does not leave an engine behind. (``PR_SET_PDEATHSIG`` fires when the *thread* that forked dies;
asyncio forks in the event-loop thread, which lives as long as infer serves.)
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping

_PR_SET_PDEATHSIG = 1
_SECRET_NAMES = frozenset({"VLLM_API_KEY"})  # set per command; never the parent's


def die_with_parent(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn``, run in the child between fork and exec: die with infer (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up in the parent, not after fork
    except (OSError, AttributeError):
        return None
    term = int(signal.SIGTERM)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, term, 0, 0, 0)
        if os.getppid() != parent:  # infer died before the request took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def child_environment(parent: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment without infer's own settings and secrets.

    ``INFER_*`` variables (client keys in ``INFER_API_KEYS``, the upstream key, the proxy's
    settings) mean nothing to vLLM or LMCache and must not leak into processes that log their
    environment or run user code; what an engine needs arrives in its command's ``env``.
    """
    return {
        name: value
        for name, value in parent.items()
        if not name.startswith("INFER_") and name not in _SECRET_NAMES
    }


def exit_text(code: int) -> str:
    """``exited with code -9 (SIGKILL)``: a return code in words."""
    if code < 0:
        try:
            return f"exited with code {code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"exited with code {code}"
