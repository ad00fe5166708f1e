"""The I/O floor: read the workload's inputs and write outputs of the same sizes and formats only.

Reads the DEM in 1024-row strips (GDAL_NUM_THREADS=ALL_CPUS decoding), reads the three vector
layers, and writes ``score.tif`` (float32, NaN nodata) and ``mask.tif`` (uint8) with the same
creation options as every tool (tiled 512², DEFLATE, NUM_THREADS=ALL_CPUS). So that compression
costs what it costs for a real score (about a third of it zeros), the written values are a trivial
function of the DEM: ``score = 0 where z > 3500 m else z·1e-4``, ``mask = z ≤ 3500 m``.

Usage: ``io_floor.py DATA_DIR OUT_DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def run(data: Path, out: Path, strip: int = 1024) -> dict:
    import geopandas as gpd
    import rasterio
    from rasterio.windows import Window

    os.environ.setdefault("GDAL_NUM_THREADS", "ALL_CPUS")
    man = json.loads((data / "manifest.json").read_text())
    t0 = time.perf_counter()
    t: dict[str, float] = {}
    gpd.read_file(data / man["constraints"], layer=man["constraints_layer"])
    for lay in man["grid_layers"]:
        gpd.read_file(data / man["grid"], layer=lay)
    t["vectors_s"] = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    with rasterio.open(data / man["dem"]) as src:
        prof = dict(
            common.OUT_PROFILE,
            count=1,
            crs=src.crs,
            transform=src.transform,
            width=src.width,
            height=src.height,
        )
        with (
            rasterio.open(out / "score.tif", "w", dtype="float32", nodata=np.nan, **prof) as s,
            rasterio.open(out / "mask.tif", "w", dtype="uint8", **prof) as m,
        ):
            for r0 in range(0, src.height, strip):
                win = Window(0, r0, src.width, min(strip, src.height - r0))
                z = src.read(1, window=win)
                high = z > 3500.0
                s.write(np.where(high, np.float32(0), z * np.float32(1e-4)), 1, window=win)
                m.write((~high).astype(np.uint8), 1, window=win)
    t["total_s"] = time.perf_counter() - t0
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("out", type=Path)
    a = ap.parse_args(argv)
    common.emit({"tool": "io", "steps": run(a.data, a.out)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
