"""The pumped-storage hydrology alone at a fine resolution over the whole study area.

Usage::

    python benchmarks/hydrology_scale.py --resolution 30 [--tile 2048] [--workers 2]

Reads the embedded DEM onto the study grid at ``--resolution`` (lazily, one window per chunk;
the demo DEM is 15″ modelled terrain, so at 30 m this measures size, not detail), masks it to
the study area, and runs the tiled depression fill (:mod:`sitekit.science.tiledfill`) and the
tiled D8 routing, flats, accumulation and dam sites (:mod:`sitekit.science.tiledflow`) in the
search's tiles, on a local in-process Dask cluster (sitekit's default). Only counts come back
(dam sites, sinks, holes), so nothing of the grid is gathered. Prints and appends to
``RESULTS_scale.md``: wall time, peak RSS of this process (all workers are in it), and the
counts. Run on demand, never in the tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=float, default=30.0)
    ap.add_argument("--tile", type=int, default=2048)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--results", type=Path, default=HERE / "RESULTS_scale.md")
    a = ap.parse_args(argv)

    from distributed import Client, LocalCluster

    from sitekit.engine.pipeline import Pipeline
    from sitekit.io.catalog import Catalog
    from sitekit.science.pumped_storage import PumpedStorageParams
    from sitekit.science.tiledfill import fill_depressions_tiled
    from sitekit.science.tiledflow import HOLE, SINK, dam_sites_tiled

    proc = psutil.Process()
    peak = [0]
    stop = threading.Event()

    def _poll() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(0.2)

    threading.Thread(target=_poll, daemon=True).start()
    t0 = time.perf_counter()
    cat = Catalog(ROOT / "layers" / "sichuan-west" / "catalog.yaml")
    grid = cat.grid(a.resolution, chunks=a.tile)  # the demo's own equal-area grid
    # the search's own input: the DEM masked to the study area (Pipeline.elevation), uncached
    z = Pipeline(cat, grid, None).elevation.data.astype(np.float32).rechunk((a.tile, a.tile))
    p = PumpedStorageParams()
    zf = fill_depressions_tiled(z)
    code, pp = dam_sites_tiled(zf, p.contour_interval_m, p.steps(a.resolution)[2])
    counts = [pp.sum(), (code == SINK).sum(), (code == HOLE).sum()]
    with (
        LocalCluster(n_workers=a.workers, threads_per_worker=1, processes=False,
                     dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        t1 = time.perf_counter()
        n_pp, n_sink, n_hole = (int(v) for v in client.compute(counts, sync=True))
        t_compute = time.perf_counter() - t1
    wall = time.perf_counter() - t0
    stop.set()
    ny, nx = grid.shape
    doc = {
        "resolution_m": a.resolution, "grid": [ny, nx], "mpx": round(ny * nx / 1e6, 1),
        "tile": a.tile, "chunks": len(z.chunks[0]) * len(z.chunks[1]), "wall_s": round(wall, 1),
        "compute_s": round(t_compute, 1), "peak_gib": round(peak[0] / 2**30, 2),
        "dam_sites": n_pp, "sinks": n_sink, "holes": n_hole,
    }  # fmt: skip
    print(json.dumps(doc))
    line = (
        f"\n## Hydrology alone, {a.resolution:g} m ({doc['mpx']} Mpx, {doc['chunks']} tiles of "
        f"{a.tile}²)\n\n- `benchmarks/hydrology_scale.py --resolution {a.resolution:g}`, "
        f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}, {psutil.cpu_count()} cores, "
        f"{a.workers} in-process workers; load at the end {os.getloadavg()[0]:.1f}\n"
        f"- tiled fill + tiled D8 routing, flats, accumulation and dam sites: wall "
        f"**{doc['wall_s']} s** (compute {doc['compute_s']} s), peak RSS **{doc['peak_gib']} "
        f"GiB** (one process holds every worker)\n"
        f"- {n_pp:,} dam sites, {n_sink:,} sinks, {n_hole:,} pixels outside the study area\n"
    )
    with open(a.results, "a") as f:
        f.write(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
