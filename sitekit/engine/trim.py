"""Hand freed heap memory back to the system while a run computes (glibc ``malloc_trim``).

glibc returns a thread arena's free memory only from the top of its heaps; blocks freed in
between stay resident. Worker threads free many 4–33 MB block temporaries in every order, so a
process's RSS climbs far above what it uses: at 90 m the in-process run held 4.3–5.3 GiB after
its layers were computed, of which ~1 GiB was in use (sampled with a trim every 10 s: 0.8–1.2
GiB after each). A worker process's RSS counts against its ``memory_limit``, and the nanny
restarts it for pages it does not use. Each process of sitekit's LocalCluster therefore runs one
thread that calls ``malloc_trim(0)`` every :data:`TRIM_INTERVAL_S` seconds (:class:`Trim`).
External clusters keep their own settings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

#: seconds between two ``malloc_trim(0)`` calls in each process of a LocalCluster (:class:`Trim`)
TRIM_INTERVAL_S = 5.0
_trim_lock = threading.Lock()
_trim_users = 0
_trim_stop: threading.Event | None = None


def _malloc_trim() -> Callable[[], Any] | None:
    """glibc's ``malloc_trim(0)`` (None elsewhere)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or "libc" not in name:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    return lambda: fn(0)


def hold_trimmer() -> bool:
    """Start (or join) this process's trimmer thread: every :data:`TRIM_INTERVAL_S` it hands the
    heap's free pages back to the system (``malloc_trim(0)``). False without glibc."""
    global _trim_users, _trim_stop
    trim = _malloc_trim()
    if trim is None:
        return False
    with _trim_lock:
        _trim_users += 1
        if _trim_users == 1:
            stop = _trim_stop = threading.Event()

            def _loop() -> None:
                while not stop.wait(TRIM_INTERVAL_S):
                    trim()

            threading.Thread(target=_loop, name="sitekit-malloc-trim", daemon=True).start()
    return True


def release_trimmer() -> None:
    """Leave the trimmer (:func:`hold_trimmer`); the last user stops it."""
    global _trim_users
    with _trim_lock:
        _trim_users = max(0, _trim_users - 1)
        if _trim_users == 0 and _trim_stop is not None:
            _trim_stop.set()


class Trim(WorkerPlugin):
    """Worker plugin (``Client.register_plugin``): each worker holds its process's trimmer
    (:func:`hold_trimmer`) while it runs. Registered on sitekit's own LocalCluster only."""

    name = "sitekit-malloc-trim"

    def setup(self, worker: Any) -> None:
        self.held = hold_trimmer()

    def teardown(self, worker: Any) -> None:
        if getattr(self, "held", False):
            release_trimmer()
