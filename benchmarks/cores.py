"""How much faster two threads are than one on this machine, for pure compute (no I/O, no dask).

The "2 workers vs 1 worker" target can only be met if the hardware itself scales: on a VM the two
"cores" may share a physical core or memory bandwidth. This times the same work run twice in a
row on one thread and once on each of two threads, for two kernels sitekit's workload uses:

* NumPy elementwise: ``(sin(a) ** 2).sum()`` on a 4096² float64 array (memory-bound-ish);
* sitekit's Horn slope kernel (``terrain._horn_slope``, numba, ``nogil``) on a 2050² DEM block.

Usage: ``benchmarks/cores.py [--repeats 5]``; prints the speed-up of each (median of the repeats).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _speedup(work, repeats: int) -> tuple[float, float, float]:
    """(median serial s for 2 units, median 2-thread s for 2 units, serial / threaded)."""
    work()  # warm-up (numba compilation or cache load)
    ser, par = [], []
    with ThreadPoolExecutor(2) as pool:
        for _ in range(repeats):
            t0 = time.perf_counter()
            work()
            work()
            ser.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            list(pool.map(lambda _: work(), range(2)))
            par.append(time.perf_counter() - t0)
    s, p = statistics.median(ser), statistics.median(par)
    return s, p, s / p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args(argv)
    from sitekit.science.terrain import _horn_slope

    rng = np.random.default_rng(0)
    arr = rng.random((4096, 4096))
    dem = np.cumsum(rng.normal(0, 5, (2050, 2050)), axis=1).astype(np.float32)
    d = np.full(2050, 30.0)

    def numpy_work() -> None:
        (np.sin(arr) ** 2).sum()

    def slope_work() -> None:
        _horn_slope(dem, d, d, np.empty((2050, 2050), np.float32), 1, 1)

    for name, work in (("numpy sin", numpy_work), ("numba Horn slope", slope_work)):
        s, p, r = _speedup(work, a.repeats)
        print(f"{name:18s} 1 thread {s:6.3f} s   2 threads {p:6.3f} s   speed-up {r:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
