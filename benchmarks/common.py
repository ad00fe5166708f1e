"""The benchmark workload's definition, shared by every tool, and the output checks.

Workload (identical in all tools):

* slope [°] by Horn (1981) 3×3 differences;
* excluded = slope > 25° OR pixel centre inside a redline polygon buffered by 500 m OR
  elevation > 5000 m; DEM nodata (and slope nodata around it) is never eligible;
* distance [km] from each pixel to the nearest grid feature (substation points + lines);
* score = 0.6·clip(1 − slope/25, 0, 1) + 0.4·clip(1 − distance/50, 0, 1), 0 where excluded, NaN
  where the slope or the elevation is nodata;
* outputs ``score.tif`` (float32, nodata NaN) and ``mask.tif`` (uint8, 1 = eligible), tiled 512²,
  DEFLATE.

References
----------
Horn, B.K.P. (1981): Hill shading and the reflectance map. Proc. IEEE 69(1), 14–47.
Malczewski, J. (2004): GIS-based land-use suitability analysis: a critical overview.
Progress in Planning 62(1), 3–65 (weighted linear combination of fuzzy memberships).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

SLOPE_MAX_DEG = 25.0
BUFFER_M = 500.0
ELEV_MAX_M = 5000.0
DIST_MAX_KM = 50.0
W_SLOPE = 0.6
W_DIST = 0.4
#: creation options of every output GeoTIFF (rasterio keywords; GDAL -co spelled in upper case)
OUT_PROFILE = {
    "driver": "GTiff",
    "tiled": True,
    "blockxsize": 512,
    "blockysize": 512,
    "compress": "deflate",
    "num_threads": "all_cpus",
    "bigtiff": "if_safer",
}


def score_np(
    slope_deg: np.ndarray, dist_km: np.ndarray, eligible: np.ndarray, valid: np.ndarray
) -> np.ndarray:
    """The weighted score of one block (0 where not eligible, NaN where not ``valid``)."""
    m_s = np.clip(1.0 - slope_deg / SLOPE_MAX_DEG, 0.0, 1.0)
    m_d = np.clip(1.0 - dist_km / DIST_MAX_KM, 0.0, 1.0)
    s = np.where(eligible, W_SLOPE * m_s + W_DIST * m_d, 0.0).astype(np.float32)
    s[~valid] = np.nan
    return s


def emit(result: dict) -> None:
    """Print a workload's timings as the last stdout line (parsed by run.py)."""
    sys.stdout.write("BENCH_RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def summarise_outputs(out_dir: Path, step: int = 2048) -> dict:
    """Eligible fraction (mask == 1 over all pixels), mean score of valid pixels, NaN fraction."""
    import rasterio
    from rasterio.windows import Window

    n_elig = n_tot = n_valid = 0
    s_sum = 0.0
    with rasterio.open(out_dir / "mask.tif") as m, rasterio.open(out_dir / "score.tif") as s:
        h, w = m.height, m.width
        for r0 in range(0, h, step):
            win = Window(0, r0, w, min(step, h - r0))
            mk = m.read(1, window=win)
            sc = s.read(1, window=win, masked=True).astype(np.float64).filled(np.nan)
            n_elig += int((mk == 1).sum())
            n_tot += mk.size
            ok = np.isfinite(sc)
            n_valid += int(ok.sum())
            s_sum += float(sc[ok].sum())
    return {
        "eligible_fraction": n_elig / n_tot,
        "mean_score": s_sum / max(n_valid, 1),
        "nodata_fraction": 1.0 - n_valid / n_tot,
    }


def compare_outputs(a: Path, b: Path, step: int = 2048) -> dict:
    """Pixel-wise agreement of two tools' outputs: mask mismatch fraction, score max/mean |Δ|."""
    import rasterio
    from rasterio.windows import Window

    mism = n = 0
    dmax = dsum = 0.0
    nd = 0
    with (
        rasterio.open(a / "mask.tif") as ma,
        rasterio.open(b / "mask.tif") as mb,
        rasterio.open(a / "score.tif") as sa,
        rasterio.open(b / "score.tif") as sb,
    ):
        h, w = ma.height, ma.width
        for r0 in range(0, h, step):
            win = Window(0, r0, w, min(step, h - r0))
            x, y = ma.read(1, window=win), mb.read(1, window=win)
            mism += int((x != y).sum())
            n += x.size
            p = sa.read(1, window=win, masked=True).astype(np.float64).filled(np.nan)
            q = sb.read(1, window=win, masked=True).astype(np.float64).filled(np.nan)
            ok = np.isfinite(p) & np.isfinite(q)
            d = np.abs(p[ok] - q[ok])
            if d.size:
                dmax = max(dmax, float(d.max()))
                dsum += float(d.sum())
                nd += d.size
    return {
        "mask_mismatch_fraction": mism / n,
        "score_max_abs_diff": dmax,
        "score_mean_abs_diff": dsum / max(nd, 1),
    }
