"""In-memory numpy/scipy reference of the benchmark workload (whole arrays in RAM).

Slope by Horn's 3×3 differences on the DEM extended by one linearly extrapolated ring (as
``sitekit.science.terrain.slope``); buffered polygons burnt with ``rasterio.features.rasterize`` (pixel
centre rule); distance = Euclidean distance transform (``scipy.ndimage.distance_transform_edt``)
to the pixels the substations and lines touch, i.e. to pixel centres (≤ ~21 m from the exact
distance to the geometry at 30 m pixels).

Usage: ``workload_numpy.py DATA_DIR OUT_DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def horn_slope_deg(z: np.ndarray, res_m: float) -> np.ndarray:
    """Horn (1981) slope [°] of a float32 DEM with NaN nodata (edges linearly extrapolated)."""
    zp = np.empty((z.shape[0] + 2, z.shape[1] + 2), np.float32)
    zp[1:-1, 1:-1] = z
    zp[0, 1:-1] = 2 * z[0] - z[1]
    zp[-1, 1:-1] = 2 * z[-1] - z[-2]
    zp[:, 0] = 2 * zp[:, 1] - zp[:, 2]
    zp[:, -1] = 2 * zp[:, -2] - zp[:, -3]
    a, b, c = zp[:-2, :-2], zp[:-2, 1:-1], zp[:-2, 2:]
    d, f = zp[1:-1, :-2], zp[1:-1, 2:]
    g, h, i = zp[2:, :-2], zp[2:, 1:-1], zp[2:, 2:]
    p = (c - a) + 2 * (f - d) + (i - g)
    p /= 8 * res_m
    q = (g + 2 * h + i) - (a + 2 * b + c)
    q /= -8 * res_m
    del zp
    np.hypot(p, q, out=p)
    del q
    np.arctan(p, out=p)
    np.degrees(p, out=p)
    return p


def run(data: Path, out: Path) -> dict:
    import geopandas as gpd
    import rasterio
    import rasterio.features
    import shapely
    from scipy import ndimage

    man = json.loads((data / "manifest.json").read_text())
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    with rasterio.open(data / man["dem"]) as src:
        profile = {
            "crs": src.crs,
            "transform": src.transform,
            "width": src.width,
            "height": src.height,
        }
        nod = src.nodata
    shape = (profile["height"], profile["width"])
    res = float(man["res_m"])

    # distance first: the EDT's float64 + index arrays are the memory peak, before the DEM loads
    feats = [gpd.read_file(data / man["grid"], layer=lay) for lay in man["grid_layers"]]
    geoms = [g for f in feats for g in f.geometry.values]
    burnt = rasterio.features.rasterize(
        ((g, 1) for g in geoms), out_shape=shape, transform=profile["transform"],
        all_touched=True, dtype=np.uint8,
    )  # fmt: skip
    dist_km = ndimage.distance_transform_edt(burnt == 0, sampling=(res, res)).astype(np.float32)
    dist_km /= 1000.0
    del burnt
    t["distance_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    polys = gpd.read_file(data / man["constraints"], layer=man["constraints_layer"])
    buf = shapely.buffer(polys.geometry.values, common.BUFFER_M, quad_segs=16)
    inpoly = rasterio.features.rasterize(
        ((g, 1) for g in buf), out_shape=shape, transform=profile["transform"], dtype=np.uint8
    )
    t["polygons_s"] = time.perf_counter() - t1

    t1 = time.perf_counter()
    with rasterio.open(data / man["dem"]) as src:
        z = src.read(1)
    z[z == nod] = np.nan
    t["read_s"] = time.perf_counter() - t1

    t1 = time.perf_counter()
    slope = horn_slope_deg(z, res)
    t["slope_s"] = time.perf_counter() - t1

    t1 = time.perf_counter()
    valid = np.isfinite(slope) & np.isfinite(z)
    with np.errstate(invalid="ignore"):
        eligible = (
            (slope <= common.SLOPE_MAX_DEG) & (z <= common.ELEV_MAX_M) & (inpoly == 0)
        )  # NaN slope/elevation compare False → not eligible
    del inpoly
    score = common.score_np(slope, dist_km, eligible, valid)
    mask = eligible.astype(np.uint8)
    t["score_s"] = time.perf_counter() - t1

    t1 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    prof = dict(common.OUT_PROFILE, count=1, **profile)
    with rasterio.open(out / "score.tif", "w", dtype="float32", nodata=np.nan, **prof) as dst:
        dst.write(score, 1)
    with rasterio.open(out / "mask.tif", "w", dtype="uint8", **prof) as dst:
        dst.write(mask, 1)
    t["write_s"] = time.perf_counter() - t1
    t["total_s"] = time.perf_counter() - t0
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("out", type=Path)
    a = ap.parse_args(argv)
    common.emit({"tool": "numpy", "steps": run(a.data, a.out)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
