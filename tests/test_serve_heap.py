"""The serve process's collector settings (``infer_cli.serve.heap``)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from infer_cli.serve import heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_settle_freezes_the_live_heap_and_raises_the_young_threshold() -> None:
    kept = [[index] for index in range(1000)]  # live container objects, tracked by the collector
    _, middle, old = gc.get_threshold()

    heap.settle()

    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, middle, old)
    assert gc.get_count()[0] < heap.YOUNG_THRESHOLD


@pytest.mark.usefixtures("restored_gc")
def test_garbage_made_after_settle_is_still_collected() -> None:
    heap.settle()

    class Node:
        other: object = None

    first, second = Node(), Node()
    first.other, second.other = second, first  # a cycle only the collector frees
    watched = weakref.ref(first)
    del first, second
    assert watched() is not None  # only a collection frees it

    gc.collect()
    assert watched() is None  # made after the freeze: not in the permanent generation
