"""A serving process settles its heap before it takes messages: start-up's objects frozen, fewer young collections."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from bot.__main__ import _with_runtime
from bot.ops.heap import YOUNG_THRESHOLD, settle_heap
from bot.runtime import Runtime
from tests.fakes.openai_server import FakeOpenAI
from tests.support.fixtures import settings_for_test


class Node:
    """A container that can point at itself: garbage only the cycle collector can free."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """The test process's collector as it was (settle_heap changes process-wide state)."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settle_heap_freezes_what_is_alive_and_still_collects_cycles_made_later(restored_gc: None) -> None:
    before = Node()
    settle_heap()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    visible = set(map(id, gc.get_objects()))  # what the collector still walks: nothing made before the freeze
    assert id(before) not in visible

    later = Node()
    later.other = later  # a cycle made while serving
    gone = weakref.ref(later)
    del later
    gc.collect()
    assert gone() is None


async def test_the_serving_entry_settles_the_heap_before_the_adapter_runs(
    restored_gc: None, redis_url: str, prefix: str, fake_openai: FakeOpenAI
) -> None:
    seen: list[tuple[int, int]] = []

    async def adapter(runtime: Runtime) -> int:
        seen.append((gc.get_freeze_count(), gc.get_threshold()[0]))
        return 0

    settings = settings_for_test(redis_url, prefix, fake_openai.base_url)
    gc.unfreeze()
    assert await _with_runtime(settings, adapter, serve=True) == 0
    assert seen and seen[0][0] > 0 and seen[0][1] == YOUNG_THRESHOLD
