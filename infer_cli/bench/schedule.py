"""When requests are due: constant concurrency, or a request rate with Poisson or gamma arrivals.

``burstiness`` is the gamma shape, as in ``vllm bench serve``: 1 is a Poisson process, below 1
burstier, above 1 more even; the mean interval is always ``1 / rate``. Pure and seeded.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator


def intervals(rate: float, burstiness: float, seed: int) -> Iterator[float]:
    """Seconds between successive arrivals, for ever (all 0 when ``rate`` is infinite)."""
    if burstiness <= 0:
        raise ValueError("burstiness must be positive")
    if rate <= 0:
        raise ValueError("rate must be positive")
    if math.isinf(rate):
        while True:
            yield 0.0
    rng = random.Random(seed)
    scale = 1.0 / (rate * burstiness)
    while True:
        yield rng.gammavariate(burstiness, scale)


def arrival_times(count: int, rate: float, burstiness: float = 1.0, seed: int = 0) -> list[float]:
    """Offsets in seconds from the start of the run: the first request at 0."""
    times: list[float] = []
    clock = 0.0
    gaps = intervals(rate, burstiness, seed)
    for index in range(count):
        if index:
            clock += next(gaps)
        times.append(clock)
    return times
