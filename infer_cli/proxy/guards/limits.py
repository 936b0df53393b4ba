"""Rate limits per key (requests and tokens per minute, concurrent requests) and a global cap on
concurrent requests, answered with an immediate 429 (OpenRouter: "return early 429s if under
load, rather than queueing requests").

Correct under any concurrency because the whole decision is synchronous: the proxy runs on one
event loop, and :meth:`RateLimiter.acquire` checks every limit and records the admission with no
``await`` in between, so no two requests can both take the last unit of a budget. Every admitted
request releases its concurrency slots in a ``finally`` (normal end, client gone, upstream error,
exception, cancellation).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from infer_cli.proxy import errors

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from infer_cli.proxy.openrouter.generations import GenerationRecord

WINDOW_SECONDS = 60.0
ANONYMOUS = ""
"""The bucket of requests without a key id (an open proxy): they share one set of limits."""

# Why a request was turned away (the ``reason`` label of the rejection metric).
GLOBAL_CONCURRENCY = "concurrency"
KEY_CONCURRENCY = "key_concurrency"
REQUESTS_PER_MINUTE = "requests_per_minute"
TOKENS_PER_MINUTE = "tokens_per_minute"
REASONS = (GLOBAL_CONCURRENCY, KEY_CONCURRENCY, REQUESTS_PER_MINUTE, TOKENS_PER_MINUTE)

UNLIMITED_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Reads (model listing, generation stats, health) are cheap and never limited; the work is in
POSTs (completions, embeddings)."""


class SlidingWindow:
    """Amounts (requests, tokens) recorded over the last ``window`` seconds, in 1-second slots.

    Why a sliding window and not a token bucket: "N per minute" then means what an operator reads
    into it, at most N in *any* 60 s, with no burst of N plus the refill that a bucket allows; the
    ``Retry-After`` is exact (when the oldest counted slot leaves the window); and tokens, which
    are only known after a generation ended, are simply recorded late. Slots keep the memory at
    61 entries per key whatever the limit. A slot counts until ``window`` seconds after its *end*,
    so the limit is never exceeded; the price is that an entry may count up to one slot longer than
    ``window``.
    """

    def __init__(self, window: float = WINDOW_SECONDS, slot: float = 1.0) -> None:
        self.window = window
        self.slot = slot
        self._slots: deque[tuple[float, int]] = deque()  # (slot start, amount), oldest first
        self._total = 0

    def total(self, now: float) -> int:
        self._expire(now)
        return self._total

    def add(self, now: float, amount: int = 1) -> None:
        self._expire(now)
        start = math.floor(now / self.slot) * self.slot
        if self._slots and self._slots[-1][0] == start:
            self._slots[-1] = (start, self._slots[-1][1] + amount)
        else:
            self._slots.append((start, amount))
        self._total += amount

    def slot_of(self, now: float) -> float:
        """The start of the slot that an amount added at ``now`` goes to."""
        return math.floor(now / self.slot) * self.slot

    def adjust(self, now: float, start: float, delta: int) -> bool:
        """Change the amount of the slot starting at ``start`` by ``delta`` (never below 0);
        False when that slot has left the window.
        """
        self._expire(now)
        for index, (found, amount) in enumerate(self._slots):
            if found == start:
                changed = max(0, amount + delta)
                self._slots[index] = (found, changed)
                self._total += changed - amount
                return True
        return False

    def wait_until_at_most(self, now: float, allowed: int) -> float:
        """Seconds until the total is at most ``allowed`` (0 when it already is)."""
        self._expire(now)
        remaining = self._total
        if remaining <= allowed:
            return 0.0
        for start, amount in self._slots:
            remaining -= amount
            if remaining <= allowed:
                return max(0.0, self._expiry(start) - now)
        return self.window + self.slot  # only for a negative ``allowed``

    def _expiry(self, start: float) -> float:
        return start + self.slot + self.window

    def _expire(self, now: float) -> None:
        while self._slots and self._expiry(self._slots[0][0]) <= now:
            _, amount = self._slots.popleft()
            self._total -= amount


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_per_key: int | None = None
    concurrent: int | None = None
    """Across all keys."""

    @property
    def any(self) -> bool:
        return any(
            value is not None
            for value in (
                self.requests_per_minute,
                self.tokens_per_minute,
                self.concurrent_per_key,
                self.concurrent,
            )
        )


@dataclass(frozen=True)
class Rejection:
    reason: str
    message: str
    retry_after: int
    """Whole seconds, at least 1."""
    limit: int

    @property
    def error_type(self) -> str:
        if self.reason == GLOBAL_CONCURRENCY:
            return errors.PROVIDER_OVERLOADED
        return errors.RATE_LIMIT_EXCEEDED


@dataclass
class _KeyState:
    requests: SlidingWindow = field(default_factory=SlidingWindow)
    tokens: SlidingWindow = field(default_factory=SlidingWindow)
    active: int = 0


class RateLimiter:
    """The limits' bookkeeping. Not thread-safe by design: one event loop owns it."""

    def __init__(self, limits: Limits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._keys: dict[str, _KeyState] = {}
        self.active = 0
        """Requests admitted and not yet released, all keys together."""

    def acquire(self, key_id: str | None) -> Rejection | None:
        """Admit one request of ``key_id`` (taking its slots), or say why not. Never awaits."""
        limits = self.limits
        key = self._state(key_id)
        now = self._clock()
        if limits.concurrent is not None and self.active >= limits.concurrent:
            return Rejection(
                GLOBAL_CONCURRENCY,
                f"the server is at its limit of {limits.concurrent} concurrent requests; "
                "retry shortly",
                1,
                limits.concurrent,
            )
        if limits.concurrent_per_key is not None and key.active >= limits.concurrent_per_key:
            return Rejection(
                KEY_CONCURRENCY,
                f"rate limit exceeded: {limits.concurrent_per_key} concurrent requests per key",
                1,
                limits.concurrent_per_key,
            )
        rpm = limits.requests_per_minute
        if rpm is not None and key.requests.total(now) + 1 > rpm:
            wait = key.requests.wait_until_at_most(now, rpm - 1)
            return Rejection(
                REQUESTS_PER_MINUTE,
                f"rate limit exceeded: {rpm} requests per minute per key",
                _seconds(wait),
                rpm,
            )
        tpm = limits.tokens_per_minute
        if tpm is not None and key.tokens.total(now) >= tpm:
            wait = key.tokens.wait_until_at_most(now, tpm - 1)
            return Rejection(
                TOKENS_PER_MINUTE,
                f"rate limit exceeded: {tpm} tokens per minute per key",
                _seconds(wait),
                tpm,
            )
        if rpm is not None:
            key.requests.add(now)
        key.active += 1
        self.active += 1
        return None

    def reserve(self, key_id: str | None, tokens: int) -> Rejection | Reservation:
        """Count an estimate of a request's tokens against the key's tokens per minute at once,
        or say why not (the key's count, in-flight estimates included, is at the limit). Never
        awaits. The :class:`Reservation` is settled with the real count when the request ends.
        """
        tpm = self.limits.tokens_per_minute
        if tpm is None:
            return Reservation(self, key_id, 0.0, 0, settled=True)
        key = self._state(key_id)
        now = self._clock()
        if key.tokens.total(now) >= tpm:
            wait = key.tokens.wait_until_at_most(now, tpm - 1)
            return Rejection(
                TOKENS_PER_MINUTE,
                f"rate limit exceeded: {tpm} tokens per minute per key",
                _seconds(wait),
                tpm,
            )
        amount = max(0, tokens)
        key.tokens.add(now, amount)
        return Reservation(self, key_id, key.tokens.slot_of(now), amount)

    def _settle(self, reservation: Reservation, tokens: int) -> None:
        if self.limits.tokens_per_minute is None:
            return
        window = self._state(reservation.key_id).tokens
        now = self._clock()
        delta = max(0, tokens) - reservation.amount
        if not window.adjust(now, reservation.slot, delta) and delta > 0:
            window.add(now, delta)  # the estimate has left the window: count what exceeded it

    def release(self, key_id: str | None) -> None:
        """Give back the concurrency slots of one admitted request of ``key_id``."""
        key = self._state(key_id)
        key.active = max(0, key.active - 1)
        self.active = max(0, self.active - 1)

    def charge(self, key_id: str | None, tokens: int) -> None:
        """Count ``tokens`` against the key's tokens per minute (after a generation ended)."""
        if self.limits.tokens_per_minute is not None and tokens > 0:
            self._state(key_id).tokens.add(self._clock(), tokens)

    def observe(self, record: GenerationRecord) -> None:
        """Generation observer: prompt and completion tokens count against the key's budget
        (unless the request reserved them at admission and settled already)."""
        if not record.charged:
            self.charge(record.key_id, record.prompt_tokens + record.completion_tokens)

    def active_for(self, key_id: str | None) -> int:
        state = self._keys.get(key_id or ANONYMOUS)
        return state.active if state is not None else 0

    def _state(self, key_id: str | None) -> _KeyState:
        # Key ids come from configured keys only (or the anonymous bucket): the dict is bounded.
        name = key_id or ANONYMOUS
        state = self._keys.get(name)
        if state is None:
            state = self._keys[name] = _KeyState()
        return state


@dataclass
class Reservation:
    """Tokens of one request counted against its key's budget at admission (see
    :meth:`RateLimiter.reserve`); :meth:`settle` replaces the estimate with the real count, in the
    same one-second slot, once."""

    limiter: RateLimiter
    key_id: str | None
    slot: float
    amount: int
    settled: bool = False

    def settle(self, tokens: int) -> None:
        if self.settled:
            return
        self.settled = True
        self.limiter._settle(self, tokens)


def reserve_tokens(
    limiter: RateLimiter | None,
    key_id: str | None,
    tokens: int,
    on_reject: Callable[[str], None] | None = None,
) -> Reservation | None:
    """Reserve ``tokens`` for a request of ``key_id``, or raise the 429 to answer with (None when
    no tokens-per-minute limit applies)."""
    if limiter is None or limiter.limits.tokens_per_minute is None:
        return None
    outcome = limiter.reserve(key_id, tokens)
    if isinstance(outcome, Reservation):
        return outcome
    if on_reject is not None:
        on_reject(outcome.reason)
    raise errors.ProxyError(
        429,
        outcome.message,
        error_type=outcome.error_type,
        metadata={"reason": outcome.reason, "limit": outcome.limit},
        headers={"Retry-After": str(outcome.retry_after)},
    )


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


def limited(scope: Scope) -> bool:
    """Whether rate limits apply to a request: every method but reads."""
    return scope["method"] not in UNLIMITED_METHODS


class LimitsMiddleware:
    """429 with ``Retry-After`` for a request over a limit; slots released however it ends.

    Runs after the auth middleware, which put the key id in ``scope["state"]``. A request is
    admitted (its slots taken, its request counted) when the app has read its whole body, not when
    its head arrives: a client trickling bodies holds a connection, never a slot. The 429 is raised
    from that read, so that the route answers it like any error of the body; an app that answers
    without reading the body takes no slot.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        on_reject: Callable[[str], None] | None = None,
        applies: Callable[[Scope], bool] = limited,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.on_reject = on_reject
        self.applies = applies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.applies(scope):
            await self.app(scope, receive, send)
            return
        key_id = scope.get("state", {}).get("key_id")
        admitted = False

        async def receive_then_admit() -> Message:
            nonlocal admitted
            message = await receive()
            if (
                not admitted
                and message["type"] == "http.request"
                and not message.get("more_body", False)
            ):
                self._admit(key_id)
                admitted = True
            return message

        try:
            await self.app(scope, receive_then_admit, send)
        except OverLimit as refused:
            # An app that does not answer errors itself (the proxy's routes all do).
            await refused.response()(scope, receive, send)
        finally:
            if admitted:
                self.limiter.release(key_id)

    def _admit(self, key_id: str | None) -> None:
        rejection = self.limiter.acquire(key_id)
        if rejection is None:
            return
        if self.on_reject is not None:
            self.on_reject(rejection.reason)
        raise OverLimit(
            429,
            rejection.message,
            error_type=rejection.error_type,
            metadata={"reason": rejection.reason, "limit": rejection.limit},
            headers={"Retry-After": str(rejection.retry_after)},
        )


class OverLimit(errors.ProxyError):
    """A request refused by :class:`LimitsMiddleware` once its body was read."""
