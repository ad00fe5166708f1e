"""Keep CPython's cyclic garbage collector off the long-lived objects of imports.

sitekit's stack (dask, distributed, numba, pandas, geopandas, xarray, pyproj) creates a few
hundred thousand long-lived objects on import. Each full collection walks all of them, and the
interpreter runs one more over everything at exit. Measured on the 2-core machine
(``import sitekit.engine.run`` and the benchmark's other imports, then exit): 2.5–2.8 s with the
defaults, 1.9–2.1 s with :func:`freeze` before exit, 1.6–1.9 s with imports under
:func:`paused` and a freeze after them as well (the CLI does not freeze after imports: a freeze
is only safe where nothing more is to be freed). ``gc.freeze`` moves every object alive now into
a permanent generation that collections skip (Python docs, ``gc.freeze``; the approach of
Instagram's Django fleet, engineering blog "Dismissing Python Garbage Collection at Instagram",
2017). Objects created later are collected as usual.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Run the block (heavy imports) without cyclic collections.

    Reference counting still frees non-cyclic garbage inside the block; the collector is
    re-enabled afterwards only if it was enabled before. Nothing is frozen here: a library call
    (or a CLI command run in-process by a test runner) must not pin its caller's objects."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def freeze() -> None:
    """Exempt every object alive now from later collections, the one at exit included.

    Frozen objects are never collected, cyclic garbage alive at that moment included, so call it
    only where nothing more is to be freed: just before the process exits (the CLI's ``main``,
    the benchmark workload). Freezing before the compute in ``run_job`` was tried and dropped:
    it kept a run's catalogue, layers and graphs from ever being collected."""
    gc.freeze()
