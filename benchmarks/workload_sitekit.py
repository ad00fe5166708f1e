"""The benchmark workload with the sitekit library on a ``distributed.LocalCluster``, out of core.

Graph (all lazy, chunked on a :class:`sitekit.grid.Grid` built with ``Grid.from_bounds``):

* DEM: ``sitekit.io.layers.open_raster`` (``--reader io``: the synthetic DEM lies on the grid, so it takes
  the aligned path, a windowed read per block, no WarpedVRT) or a plain windowed ``rasterio`` read
  per block through ``Grid.map_blocks`` (``--reader window``);
* ``sitekit.science.terrain.slope`` (Horn, ``map_overlap``);
* ``sitekit.science.constraints.evaluate`` with ``PolygonConstraint(buffer_m=500)`` and two
  ``RasterThreshold`` (slope > 25°, elevation > 5000 m);
* ``sitekit.science.proximity.distance_to_features`` (exact distance to points + lines);
* ``sitekit.science.scoring.weighted_score`` (linear memberships, weighted overlay and the exclusion in
  one pass per block; ``--scoring composed``: ``membership`` + ``weighted_overlay`` + masking as
  separate dask operations).

Workers are thread pools inside the benchmark process by default (``--processes``: separate
processes, as ``sitekit run`` uses): the kernels (numba ``nogil``, GDAL, NumPy) release the GIL,
and finished blocks reach the writing client by reference instead of being pickled over TCP.

Output is written block by block, never materialised whole: the score and mask blocks of every
chunk are computed by the cluster as one graph (shared intermediates); the client receives each
finished block (``as_completed``) and releases it. By default (``--writer workers``) each worker
also compresses its block's 512 px DEFLATE tiles with GDAL (``sitekit.outputs.tilewrite.encode_tiles``)
and the client only appends the bytes (``sitekit.outputs.tilewrite.TileWriter``); ``--writer client``
sends raw blocks and the client writes their windows through GDAL (compressing on
``NUM_THREADS=ALL_CPUS``), as until the ninth session. The per-task compute time of every
graph layer is collected from the scheduler's task stream to show which step takes the time.

Usage: ``workload_sitekit.py DATA_DIR OUT_DIR [--workers 2] [--threads 1] [--chunks 1024]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from sitekit.engine import gctools  # noqa: E402  (light: gc only)


def build(data: Path, opts: argparse.Namespace) -> tuple:
    """The grid, the lazy (2, rows, cols) score + mask array, the manifest and the step arrays."""
    import dask.array as da
    import geopandas as gpd
    import pandas as pd
    import rasterio

    from sitekit.grid import Grid, parse_crs
    from sitekit.io.catalog import LayerSpec
    from sitekit.io.layers import open_raster
    from sitekit.science import constraints, proximity, scoring, terrain

    man = json.loads((data / "manifest.json").read_text())
    grid = Grid.from_bounds(
        tuple(man["bounds"]), man["res_m"], parse_crs(man["crs_wkt"]), chunks=opts.chunks,
        name="benchmark",
    )  # fmt: skip
    if grid.shape != (man["side_px"], man["side_px"]):
        raise SystemExit(f"grid {grid.shape} does not match the DEM ({man['side_px']}²)")
    dem_path = data / man["dem"]
    if opts.reader == "io":
        spec = LayerSpec(
            id="dem",
            kind="raster",
            path=str(dem_path),
            role="terrain",
            units="m",
            resampling="nearest",
        )
        dem = open_raster(dem_path, spec, grid, "benchmark DEM")
    else:
        path_s, nod = str(dem_path), float(man["nodata"])

        def _read(window: tuple[int, int, int, int]) -> np.ndarray:
            r0, r1, c0, c1 = window
            with rasterio.open(path_s) as src:
                z = src.read(1, window=((r0, r1), (c0, c1)))
            z[z == nod] = np.nan
            return z

        dem = grid.wrap(
            grid.map_blocks(_read, dtype=np.float32, name="read-dem-" + grid.token), "dem", "m"
        )
    slope = terrain.slope(dem)
    polys = gpd.read_file(data / man["constraints"], layer=man["constraints_layer"])
    feats = pd.concat(
        [gpd.read_file(data / man["grid"], layer=lay) for lay in man["grid_layers"]],
        ignore_index=True,
    )
    res = constraints.evaluate(
        [
            constraints.PolygonConstraint(
                "redline", "ecological redline", "生态保护红线", polys, buffer_m=common.BUFFER_M
            ),
            constraints.RasterThreshold(
                "steep", "slope > 25°", "坡度大于25°", slope, ">", common.SLOPE_MAX_DEG
            ),
            constraints.RasterThreshold(
                "high", "elevation > 5000 m", "海拔高于5000米", dem, ">", common.ELEV_MAX_M
            ),
        ],
        grid,
    )
    dist = proximity.distance_to_features(grid, feats)
    valid = ~da.isnan(slope.data) & ~da.isnan(dem.data)
    # 0 = excluded, 1 = eligible, 2 = nodata (slope or DEM)
    status = da.where(valid, (~res.excluded.data).astype(np.uint8), np.uint8(2))
    status = grid.wrap(status, "status", "1")
    cache = None
    if opts.cache:  # sitekit.engine.cache (the engine's on-disk cache of intermediate layers)
        from sitekit.engine.cache import LayerCache, digest

        files = [data / man[k] for k in ("dem", "constraints", "grid")]
        cache = LayerCache(
            opts.cache,
            grid,
            digest([(f.name, f.stat().st_size) for f in files], man["version"], man["seed"]),
        )
        slope = cache.wrap("slope", {"method": "horn"}, slope)
        dist = cache.wrap("grid_distance", {"exact": True}, dist)
        status = cache.wrap(
            "status",
            {
                "slope_max": common.SLOPE_MAX_DEG,
                "buffer_m": common.BUFFER_M,
                "elev_max": common.ELEV_MAX_M,
            },
            status,
        )
    eligible = status.data == 1
    if opts.scoring == "fused":  # sitekit.science.scoring.weighted_score: one pass per block
        score = scoring.weighted_score(
            [
                (slope.data, "linear", {"low": common.SLOPE_MAX_DEG, "high": 0.0}),
                (dist.data, "linear", {"low": common.DIST_MAX_KM, "high": 0.0}),
            ],
            opts.weights,
            eligible=eligible,
            valid=status.data != 2,
        )
    else:  # membership + weighted_overlay + masking, one dask operation each
        m_slope = scoring.membership(slope.data, "linear", low=common.SLOPE_MAX_DEG, high=0.0)
        m_dist = scoring.membership(dist.data, "linear", low=common.DIST_MAX_KM, high=0.0)
        score = scoring.weighted_overlay([m_slope, m_dist], opts.weights)
        score = da.where(status.data == 2, np.nan, da.where(eligible, score, 0.0))
        score = score.astype(np.float32)
    mask = eligible.astype(np.uint8)
    both = da.map_blocks(
        lambda s, m: np.stack([s, m.astype(np.float32)]),
        score, mask, new_axis=0, chunks=((2,), *score.chunks), dtype=np.float32,
    )  # fmt: skip
    parts = {
        "read DEM": dem.data,
        "slope (incl. read)": slope.data,
        "polygon constraint (buffer + rasterise)": res.masks["redline"].data,
        "all constraints (incl. read, slope)": res.excluded.data,
        "distance to grid features": dist.data,
        "score + mask (everything, not written)": both,
    }
    return grid, both, man, parts, cache


def _worker_cpu() -> tuple[int, float, float]:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return os.getpid(), r.ru_utime, r.ru_stime


def _per_process(run: dict) -> dict:
    """client.run results once per process: in-process workers share one (and its rusage)."""
    return {pid: (u, s) for pid, u, s in run.values()}


def _profile(client: object, parts: dict) -> dict:
    """Compute each step alone (its sum) and record wall and summed worker CPU seconds."""
    out = {}
    first = next(iter(parts.values()))
    client.compute(first[:1, :1].sum()).result()  # warm-up: imports and deserialisation on workers
    for name, arr in parts.items():
        before = _per_process(client.run(_worker_cpu))
        t0 = time.perf_counter()
        client.compute(arr.astype(np.float64).sum()).result()
        wall = time.perf_counter() - t0
        after = _per_process(client.run(_worker_cpu))
        both = after.keys() & before.keys()  # a worker restarted meanwhile is left out
        user = sum(after[w][0] - before[w][0] for w in both)
        sys_ = sum(after[w][1] - before[w][1] for w in both)
        out[name] = {
            "wall_s": round(wall, 2),
            "cpu_s": round(user + sys_, 2),
            "sys_s": round(sys_, 2),
        }
    return out


def _finished(client, tasks: dict) -> Iterator[tuple[tuple[int, int], Any]]:
    """(key, result) of each task of ``tasks`` ({(i, j): delayed}) as it finishes; each future is
    dropped once its result is taken, so the cluster releases that block."""
    from distributed import as_completed

    keys = list(tasks)
    futures = client.compute([tasks[k] for k in keys])
    where = {f.key: k for f, k in zip(futures, keys, strict=True)}
    done = as_completed(futures)
    del futures  # as_completed drops each future once yielded
    for fut in done:
        key, result = where[fut.key], fut.result()
        del fut
        yield key, result


def _write_client(client, blocks, row0, col0, out: Path, prof: dict) -> tuple[float, float]:
    """Each finished block comes to the client, which writes (GDAL compresses) its windows."""
    import rasterio
    from rasterio.windows import Window

    with (
        # GDAL's block cache defaults to 5 % of RAM and fills with dirty output tiles written
        # out of order (README, finding 5): bound it to 256 MiB. rasterio passes the int to
        # GDALSetCacheMax64 as *bytes*; until the fourth session this said 256 (bytes), which
        # cost ~8 CPU-s at 268 Mpx
        rasterio.Env(GDAL_CACHEMAX=256 << 20),
        rasterio.open(out / "score.tif", "w", dtype="float32", nodata=np.nan, **prof) as s,
        rasterio.open(out / "mask.tif", "w", dtype="uint8", **prof) as m,
    ):
        tasks = {
            (i, j): blocks[i, j] for i in range(blocks.shape[0]) for j in range(blocks.shape[1])
        }
        t_write = 0.0
        for (i, j), arr in _finished(client, tasks):
            tw = time.perf_counter()
            win = Window(int(col0[j]), int(row0[i]), arr.shape[2], arr.shape[1])
            s.write(arr[0], 1, window=win)
            m.write(arr[1].astype(np.uint8), 1, window=win)
            t_write += time.perf_counter() - tw
        tc = time.perf_counter()
    return t_write, tc


def _encode_both(arr: np.ndarray, f_score: object, f_mask: object) -> tuple:
    from sitekit.outputs.tilewrite import encode_tiles

    return encode_tiles(arr[0], f_score), encode_tiles(arr[1].astype(np.uint8), f_mask)


def _write_encoded(client, blocks, row0, col0, out: Path, prof: dict) -> tuple[float, float]:
    """Workers compress the tiles of each finished block (``sitekit.outputs.tilewrite``); the client
    appends the bytes to the two GeoTIFFs and writes their tile index at the end."""
    import dask

    from sitekit.outputs.tilewrite import TileFormat, TileWriter, aligned

    tile = prof["blockxsize"]
    if not aligned((tuple(np.diff(row0)), tuple(np.diff(col0))), tile):
        raise SystemExit(f"--writer workers needs chunks that are multiples of {tile} px")
    compress = prof["compress"].upper()
    f_score = TileFormat("float32", tile, compress, 1, float("nan"))
    f_mask = TileFormat("uint8", tile, compress, 1, None)
    geo = dict(width=prof["width"], height=prof["height"], crs=prof["crs"],
               transform=prof["transform"])  # fmt: skip
    with (
        TileWriter(out / "score.tif", f_score, **geo) as s,
        TileWriter(out / "mask.tif", f_mask, **geo) as m,
    ):
        encode = dask.delayed(_encode_both, pure=True)
        tasks = {
            (i, j): encode(blocks[i, j], f_score, f_mask)
            for i in range(blocks.shape[0])
            for j in range(blocks.shape[1])
        }
        t_write = 0.0
        for (i, j), (tiles_s, tiles_m) in _finished(client, tasks):
            tw = time.perf_counter()
            shape = (int(row0[i + 1] - row0[i]), int(col0[j + 1] - col0[j]))
            s.write(int(row0[i]), int(col0[j]), shape, tiles_s)
            m.write(int(row0[i]), int(col0[j]), shape, tiles_m)
            t_write += time.perf_counter() - tw
        tc = time.perf_counter()
    return t_write, tc


def run(data: Path, out: Path, opts: argparse.Namespace) -> dict:
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    with gctools.paused():  # heavy imports without cyclic collections, as the sitekit CLI does
        import dask
        import dask.array  # noqa: F401
        import geopandas  # noqa: F401
        import rasterio  # noqa: F401
        from distributed import Client, LocalCluster, get_task_stream

        # the engine's settings (README, finding 3) and its task-time summary
        from sitekit.engine.run import local_cluster_config, task_seconds, tune_malloc
    t["imports_s"] = time.perf_counter() - t0
    t_cluster = time.perf_counter()
    os.environ.setdefault("GDAL_NUM_THREADS", "ALL_CPUS")

    cfg = local_cluster_config(malloc=opts.malloc == "tuned")
    if opts.malloc == "tuned" and not opts.processes:
        t["malloc_tuned"] = tune_malloc()  # in-process workers: this process, as sitekit run does
    if opts.no_fuse:
        cfg["optimization.fuse.active"] = False
    with (
        dask.config.set(cfg),
        LocalCluster(
            n_workers=opts.workers, threads_per_worker=opts.threads, processes=opts.processes,
            dashboard_address=":0", silence_logs=50,
        ) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        t["cluster_s"] = time.perf_counter() - t_cluster
        t1 = time.perf_counter()
        grid, both, man, parts, cache = build(data, opts)
        t["graph_s"] = time.perf_counter() - t1
        if cache is not None:
            t["cache_hits"], t["cache_misses"] = list(cache.hits), list(cache.misses)
        if opts.profile:
            t["profile"] = _profile(client, parts)
            return t
        blocks = both.to_delayed()[0]  # (nby, nbx) array of delayed blocks
        t1 = time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)
        prof = dict(
            common.OUT_PROFILE,
            count=1,
            crs=grid.crs.to_wkt(),
            transform=grid.transform,
            width=grid.shape[1],
            height=grid.shape[0],
        )
        row0 = np.cumsum((0, *both.chunks[1]))
        col0 = np.cumsum((0, *both.chunks[2]))
        with get_task_stream(client) as ts:
            if opts.writer == "workers":
                t_write, tc = _write_encoded(client, blocks, row0, col0, out, prof)
            else:
                t_write, tc = _write_client(client, blocks, row0, col0, out, prof)
        t["close_s"] = time.perf_counter() - tc
        t["client_write_s"] = t_write
        t["compute_write_s"] = time.perf_counter() - t1
        t["task_compute_s"] = task_seconds(ts.data)
        if cache is not None:
            cache.commit()
    t["total_s"] = time.perf_counter() - t0
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--workers", type=int, default=2, help="workers (thread pools or processes)")
    ap.add_argument("--threads", type=int, default=1, help="threads per worker")
    ap.add_argument(
        "--processes",
        action="store_true",
        help="workers as separate processes (blocks are pickled to the client) instead of "
        "thread pools in this process (sitekit's kernels release the GIL)",
    )
    ap.add_argument("--chunks", type=int, default=1024, help="dask chunk edge [px]")
    ap.add_argument(
        "--reader",
        choices=("io", "window"),
        default="io",
        help="DEM blocks via sitekit.io.layers.open_raster (io) or plain windowed reads",
    )
    ap.add_argument(
        "--scoring",
        choices=("fused", "composed"),
        default="fused",
        help="scoring.weighted_score (one pass per block) or membership + weighted_overlay + "
        "masking as separate dask operations",
    )
    ap.add_argument(
        "--malloc",
        choices=("tuned", "default"),
        default="tuned",
        help="glibc malloc: tuned (worker processes: an mmap threshold in their env; in-process "
        "workers: sitekit.engine.run.tune_malloc on this process) or the defaults",
    )
    ap.add_argument(
        "--no-fuse",
        action="store_true",
        help="disable dask's task fusion (for a per-step breakdown; slower)",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="compute each step alone on the cluster (CPU and wall per step), no output",
    )
    ap.add_argument(
        "--writer",
        choices=("workers", "client"),
        default="workers",
        help="workers compress the output tiles and the client appends them (sitekit/outputs/tilewrite.py), "
        "or the client writes each finished block through GDAL",
    )
    ap.add_argument(
        "--cache", type=Path, help="sitekit.engine.cache folder for slope, distance, mask"
    )
    ap.add_argument(
        "--weights",
        default=f"{common.W_SLOPE},{common.W_DIST}",
        help="slope,distance weights (change them for a weights-only re-run)",
    )
    a = ap.parse_args(argv)
    a.weights = [float(v) for v in a.weights.split(",")]
    steps = run(a.data, a.out, a)
    common.emit(
        {
            "tool": "sitekit",
            "workers": a.workers,
            "threads": a.threads,
            "processes": a.processes,
            "chunks": a.chunks,
            "reader": a.reader,
            "scoring": a.scoring,
            "malloc": a.malloc,
            "fuse": not a.no_fuse,
            "cache": str(a.cache) if a.cache else None,
            "writer": a.writer,
            "weights": a.weights,
            "steps": steps,
        }
    )
    gctools.freeze()  # no full collection at exit, as the sitekit CLI does
    return 0


if __name__ == "__main__":
    sys.exit(main())
