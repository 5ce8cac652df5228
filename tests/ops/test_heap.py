"""A serving process settles its heap before it takes messages: start-up's garbage freed, what is alive frozen, the
young generation collected less often but still automatically."""

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


def dropped_cycle() -> weakref.ref[Node]:
    """A cycle nobody can reach any more, and a way to see whether it was freed."""
    node = Node()
    node.other = node
    return weakref.ref(node)


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """The test process's collector as it was (settle_heap changes process-wide state)."""
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    (gc.enable if enabled else gc.disable)()


def test_settle_heap_frees_start_up_garbage_and_freezes_what_is_alive(restored_gc: None) -> None:
    garbage = dropped_cycle()
    alive = Node()
    settle_heap()
    assert garbage() is None  # freed, not frozen for the process's life
    assert gc.isenabled() and gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    assert id(alive) not in set(map(id, gc.get_objects()))  # frozen: no pass walks it again


def test_cycles_made_while_serving_are_still_collected_automatically(restored_gc: None) -> None:
    settle_heap()
    garbage = dropped_cycle()
    # Enough growth for passes over the young and the middle generation, whichever the cycle is in by now.
    kept = [[] for _ in range(12 * YOUNG_THRESHOLD)]
    assert garbage() is None
    assert len(kept) == 12 * YOUNG_THRESHOLD


async def test_only_the_serving_entry_settles_the_heap_and_before_the_adapter_runs(
    restored_gc: None, redis_url: str, prefix: str, fake_openai: FakeOpenAI
) -> None:
    seen: list[tuple[int, int]] = []

    async def adapter(runtime: Runtime) -> int:
        seen.append((gc.get_freeze_count(), gc.get_threshold()[0]))
        return 0

    settings = settings_for_test(redis_url, prefix, fake_openai.base_url)
    default_young = gc.get_threshold()[0]
    assert await _with_runtime(settings, adapter) == 0  # console, janitor, threads
    assert await _with_runtime(settings, adapter, serve=True) == 0  # slack, discord
    assert seen == [(0, default_young), (seen[1][0], YOUNG_THRESHOLD)] and seen[1][0] > 0
