"""Global vs tiled depression filling: wall time and peak memory on a synthetic fractal DEM.

Run on demand (not in CI)::

    .venv/bin/python benchmarks/tiledfill.py                    # 25 and 100 Mpx, tiles 1024²
    .venv/bin/python benchmarks/tiledfill.py --sizes 4 --modes tiled   # quick smoke test
    .venv/bin/python benchmarks/tiledfill.py --report-only      # rewrite the RESULTS.md section

The DEM is ``synth.dem_tile`` (the benchmark's fractal value-noise terrain, 30 m pixels, ~0.3 %
nodata voids as NaN), generated once into ``WORKDIR/dem-<size>.npy``. Each mode runs as a
subprocess measured by ``run.measure`` (wall time, CPU, peak RSS summed over the process tree
polled every 0.2 s with psutil, PSS, largest single process), on a ``LocalCluster`` of
``--workers`` worker processes × 1 thread:

* ``global``: one task reads the whole DEM and runs ``hydrology.fill_depressions`` (today's path);
* ``tiled``: ``tiledfill.fill_depressions_tiled`` over ``--tile``² chunks read from the file,
  written block by block into an ``.npy`` by the workers (``da.store``).

The two outputs are then compared pixel for pixel (must be identical). Results go to
``WORKDIR/results.json`` and to the "Tiled depression filling" section of ``RESULTS.md``.

References
----------
Barnes, R. (2016). Parallel priority-flood depression filling for trillion cell digital
elevation models on desktops or clusters. Computers & Geosciences 96, 56–68.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import run as harness  # noqa: E402
import synth  # noqa: E402

BEGIN, END = "<!-- tiledfill:begin -->", "<!-- tiledfill:end -->"
GIB = 2**30


# ---------------------------------------------------------------------------------- data
def generate(size: int, work: Path) -> Path:
    """The DEM of ``size`` Mpx as a float32 ``.npy`` (NaN for nodata), made once."""
    n = synth.side_of(size)
    path = work / f"dem-{size}.npy"
    if path.exists() and np.load(path, mmap_mode="r").shape == (n, n):
        return path
    work.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, "w+", np.float32, (n, n))
    for r0 in range(0, n, 1024):
        z = synth.dem_tile((r0, min(r0 + 1024, n)), (0, n))
        z[z == synth.NODATA] = np.nan
        out[r0 : r0 + z.shape[0]] = z
    out.flush()
    del out
    tmp.replace(path)
    return path


def _read(path: str, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    return np.array(np.load(path, mmap_mode="r")[r0:r1, c0:c1])


class NpyTarget:
    """A ``da.store`` target writing into an existing ``.npy`` from the workers (picklable)."""

    def __init__(self, path: str, shape: tuple[int, int]) -> None:
        self.path, self.shape, self.dtype, self.ndim = path, shape, np.dtype(np.float32), 2

    def __setitem__(self, key, value) -> None:
        m = np.load(self.path, mmap_mode="r+")  # shared mapping: the page cache writes it back
        m[key] = value


def _global_task(src: str, dst: str) -> float:
    try:  # the global fill moves from pumped_storage to hydrology (issue 27)
        from sitekit.science.hydrology import fill_depressions
    except ImportError:
        from sitekit.science.pumped_storage import fill_depressions

    z = np.load(src)
    t0 = time.perf_counter()
    out = fill_depressions(z)
    dt_s = time.perf_counter() - t0
    np.save(dst, out)
    return dt_s


# ---------------------------------------------------------------------------------- child
def child(a: argparse.Namespace) -> None:
    """One measured run (in its own process tree)."""
    t0 = time.perf_counter()
    import dask
    import dask.array as da
    from distributed import Client, LocalCluster

    from sitekit.science.tiledfill import fill_depressions_tiled

    t_imp = time.perf_counter()
    cluster = LocalCluster(
        n_workers=a.workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster)
    client.run(lambda: __import__("sitekit.science.tiledfill"))  # imports and numba caches warm
    t_cl = time.perf_counter()
    src, dst = str(a.src), str(a.dst)
    n = np.load(src, mmap_mode="r").shape
    info: dict = {"tool": a.child, "imports_s": t_imp - t0, "cluster_s": t_cl - t_imp}
    if a.child == "global":
        info["fill_task_s"] = client.submit(_global_task, src, dst, pure=False).result()
    else:
        t = a.tile
        read = dask.delayed(_read, pure=True)
        rows = [
            [
                da.from_delayed(
                    read(src, r, min(r + t, n[0]), c, min(c + t, n[1])),
                    (min(r + t, n[0]) - r, min(c + t, n[1]) - c),
                    np.float32,
                )
                for c in range(0, n[1], t)
            ]
            for r in range(0, n[0], t)
        ]
        filled = fill_depressions_tiled(da.block(rows))
        np.lib.format.open_memmap(dst, "w+", np.float32, n).flush()
        da.store(filled, NpyTarget(dst, n), lock=False)
    info["compute_s"] = time.perf_counter() - t_cl
    client.close()
    cluster.close()
    info["total_s"] = time.perf_counter() - t0
    print("BENCH_RESULT " + json.dumps(info), flush=True)


# ---------------------------------------------------------------------------------- parent
def identical(p: Path, q: Path) -> bool:
    a, b = np.load(p, mmap_mode="r"), np.load(q, mmap_mode="r")
    if a.shape != b.shape:
        return False
    return all(
        np.array_equal(a[r : r + 1024], b[r : r + 1024], equal_nan=True)
        for r in range(0, a.shape[0], 1024)
    )


def notes(doc: dict) -> list[str]:
    """Ratios tiled/global per size, and what each mode holds."""
    out = []
    by = {(r["size"], r["mode"]): r for r in doc["runs"] if "skipped" not in r}
    for size in sorted({s for s, _ in by}):
        g, t = by.get((size, "global")), by.get((size, "tiled"))
        if not (g and t):
            continue
        out.append(
            f"{size} Mpx: tiled/global — wall {t['wall_s'] / g['wall_s']:.2f}×, CPU "
            f"{t['cpu_s'] / g['cpu_s']:.2f}×, peak RSS of all processes "
            f"{t['peak_rss_gib'] / g['peak_rss_gib']:.2f}×, largest process "
            f"{t['max_single_rss_gib'] / g['max_single_rss_gib']:.2f}×."
        )
    out += [
        "The global task holds the whole DEM, its fill and a flag byte per pixel in one worker "
        "(≈ 9 B/px + the flood front); the tiled fill holds per task one tile's flood "
        "(≈ 14 B/px of a tile) and, between its two passes, the input tiles (4 B/px, spread "
        "over the workers, spillable), and one small task holds the spill graph "
        "(O(tile perimeter)). The fill alone is measured here: today's hydrology task also "
        "routes flow and accumulates it globally (the ~50 B/px of issue 27).",
        "CPU is user + sys of the whole process tree (`/usr/bin/time`), so it counts the "
        "worker processes. On this shared machine both grow with the load (wall time most: "
        "`Percent of CPU` fell to ~50 % at load 7–8): compare rows of similar load.",
    ]
    return out


HEAD = [
    "| size | mode | wall [s] | fill compute [s] | CPU [s] | peak RSS, all processes [GiB] "
    "| largest process [GiB] | load | output identical | when (UTC), commit |",
    "|---|---|---|---|---|---|---|---|---|---|",
]


def _rows(runs: list[dict]) -> list[str]:
    out = []
    for r in runs:
        i = r.get("internal", {})
        out.append(
            f"| {r['size']} Mpx | {r['mode']} | "
            + (
                f"skipped: {r['skipped']} | | | | | | |"
                if "skipped" in r
                else f"{r['wall_s']:.1f} | {i.get('compute_s', float('nan')):.1f} | "
                f"{r.get('cpu_s', float('nan')):.1f} | {r['peak_rss_gib']:.2f} | "
                f"{r.get('max_single_rss_gib', float('nan')):.2f} | {r['load_start']:.1f} | "
                f"{r.get('identical', '')} | {r.get('date', '')}, {r.get('commit', '')} |"
            )
        )
    return out


def report(doc: dict) -> str:
    L = [
        BEGIN,
        "## Tiled depression filling (issue 27)",
        "",
        "Written by `benchmarks/tiledfill.py` (`--report-only` restores this section after "
        "`run.py` rewrites the file). Global = today's one-task `fill_depressions` on a worker; "
        "tiled = `sitekit.science.tiledfill.fill_depressions_tiled` (Barnes 2016: per-tile Priority-Flood,"
        " one spill-graph task, a second per-tile pass). Synthetic fractal DEM (`synth.dem_tile`,"
        " float32, ~0.3 % nodata voids), LocalCluster of "
        f"{doc['args']['workers']} worker processes × 1 thread, tiles {doc['args']['tile']}². "
        "Peak RSS: the largest sum over the whole process tree (client, nanny, workers), polled "
        "every 0.2 s with psutil; largest process: `/usr/bin/time`'s maximum RSS of one "
        "process. Load = 1-min load average at the start (2 cores, shared machine: > 2 means "
        "other jobs competed).",
        "",
        *HEAD,
        *_rows(doc["runs"]),
    ]
    if doc.get("previous"):
        L += ["", "Earlier runs (the machine's load differed):", "", *HEAD]
        L += _rows(doc["previous"])
    L += ["", *[f"- {x}" for x in notes(doc)], END]
    return "\n".join(L) + "\n"


def write_section(path: Path, text: str) -> None:
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + text + old[old.index(END) + len(END) + 1 :]
    else:
        new = old.rstrip("\n") + "\n\n" + text
    tmp = path.with_suffix(".tmp")
    tmp.write_text(new)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="25,100", help="Mpx, comma-separated")
    p.add_argument("--modes", default="global,tiled")
    p.add_argument("--tile", type=int, default=1024)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--workdir", type=Path, default=HERE / "work" / "tiledfill")
    p.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--time-limit-min", type=float, default=5.0)
    p.add_argument("--mem-limit-gib", type=float, default=16.0)
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--child", choices=["global", "tiled"], help=argparse.SUPPRESS)
    p.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--dst", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        child(a)
        return 0
    work = a.workdir
    store = work / "results.json"
    if a.report_only:
        write_section(a.results, report(json.loads(store.read_text())))
        return 0
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    doc = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "args": {"tile": a.tile, "workers": a.workers},
        "runs": [],
    }
    sizes = [int(s) for s in a.sizes.split(",")]
    if store.exists():  # keep the runs of other sizes (one size per invocation is fine)
        old = json.loads(store.read_text())
        doc["runs"] = [r for r in old["runs"] if r["size"] not in sizes]
        doc["previous"] = old.get("previous", []) + [r for r in old["runs"] if r["size"] in sizes]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for size in sizes:
        src = generate(size, work)
        outs = {}
        for mode in a.modes.split(","):
            dst = work / f"out-{size}-{mode}.npy"
            cmd = [sys.executable, __file__, "--child", mode, "--src", str(src), "--dst", str(dst)]
            cmd += ["--tile", str(a.tile), "--workers", str(a.workers)]
            r = harness.measure(
                cmd,
                work / "logs" / f"{size}-{mode}",
                env,
                a.time_limit_min * 60,
                int(a.mem_limit_gib * GIB),
            )
            r.update(size=size, mode=mode, date=doc["date"], commit=commit)
            if "error" in r:
                print("\n".join(r["error"]), file=sys.stderr)
            if "skipped" not in r and "error" not in r:
                outs[mode] = dst
            doc["runs"].append(r)
            print(json.dumps(r, default=str), flush=True)
        if len(outs) == 2:
            same = identical(outs["global"], outs["tiled"])
            for r in doc["runs"]:
                if r["size"] == size and r["mode"] in outs:
                    r["identical"] = "yes" if same else "**NO**"
    doc["runs"].sort(key=lambda r: (r["size"], r["mode"]))
    store.write_text(json.dumps(doc, indent=1, default=str))
    write_section(a.results, report(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
