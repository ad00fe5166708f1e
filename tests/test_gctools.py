"""sitekit.engine.gctools (collections paused over a block, objects frozen) and run.tune_malloc."""

from __future__ import annotations

import gc
import weakref

import pytest

from sitekit.engine import gctools


@pytest.fixture(autouse=True)
def _restore_gc():
    was = gc.isenabled()
    yield
    gc.unfreeze()
    if was:
        gc.enable()
    else:  # pragma: no cover
        gc.disable()


def test_paused_disables_collections_and_freezes_nothing() -> None:
    gc.enable()
    gc.unfreeze()
    with gctools.paused():
        assert not gc.isenabled()
        kept = [[i] for i in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0  # a caller's objects are never pinned
    assert len(kept) == 1000
    # a cycle made in the block is collected afterwards
    with gctools.paused():
        a: list = []
        a.append(a)
        del a
    assert gc.collect() >= 1


def test_paused_keeps_a_disabled_collector_disabled_and_restores_on_error() -> None:
    gc.enable()
    with pytest.raises(RuntimeError), gctools.paused():
        raise RuntimeError("import failed")
    assert gc.isenabled()
    gc.disable()
    with gctools.paused():
        pass
    assert not gc.isenabled()


class _Node:
    """A weak-referenceable object that can sit in a reference cycle."""


def test_freeze_exempts_live_objects() -> None:
    gc.unfreeze()
    before = gc.get_freeze_count()
    node = _Node()
    node.self = node  # a cycle: only the cyclic collector can free it
    ref = weakref.ref(node)
    gctools.freeze()
    assert gc.get_freeze_count() >= before + 1
    del node
    gc.collect()
    assert ref() is not None  # frozen: the collector skips it even as garbage
    gc.unfreeze()
    gc.collect()
    assert ref() is None  # unfrozen, the same cycle is collected


def test_tune_malloc_sets_glibc_thresholds_for_in_process_workers() -> None:
    """On glibc, mallopt accepts both thresholds; allocations still work afterwards."""
    import platform

    import numpy as np

    from sitekit.engine.run import tune_malloc

    ok = tune_malloc()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert ok is True
    a = np.ones((2048, 2048))  # 32 MiB: on the heap now, below the 64 MiB mmap threshold
    assert float(a.sum()) == 2048.0 * 2048.0
