"""Deterministic synthetic benchmark data: a fractal DEM, constraint polygons, grid points and lines.

The DEM is a sum of octaves of value noise (Perlin 1985, "An image synthesizer", SIGGRAPH 85;
the spectral-synthesis view of fractal terrain of Fournier, Fussell & Carpenter 1982, CACM 25(6)):
each octave takes pseudo-random values on a square lattice of ``s`` pixels, hashed from the
global lattice index (SplitMix64, Steele, Lea & Flood 2014), and interpolates them with a cubic
B-spline. A pixel's value depends only on its global row/column, so the raster is generated tile by
tile (memory ~ one 2048² tile) and is seamless across tiles. High-frequency octaves are modulated by
a low-frequency "roughness" field, so plateaus and valleys alternate with steep ranges, and an
independent noise field punches ~0.3 % nodata voids (like SRTM voids) into the DEM.

Sizes (30 m pixels, sitekit Albers CRS ``sitekit.grid.DEFAULT_CRS``): ``1`` = 1024² (smoke test),
``16`` = 4000², ``67`` = 8192², ``268`` = 16384² px. Written once per size into
``WORKDIR/data/<size>/`` and reused while ``manifest.json`` matches :data:`VERSION` and the seed:

* ``dem.tif`` — float32, nodata −9999, tiled 512², DEFLATE;
* ``constraints.gpkg`` layer ``redlines`` — 200 irregular star-shaped polygons (96 vertices);
* ``grid.gpkg`` layers ``substations`` (points, 1 per 500 km²) and ``lines`` (each substation
  joined to its 2 nearest neighbours by a wiggly polyline with a vertex every ~600 m).

Usage: ``.venv/bin/python benchmarks/synth.py --sizes 1,16 [--workdir benchmarks/work]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

VERSION = 5
SEED = 20240611
RES_M = 30.0
#: top-left corner (x, y) [m] of every benchmark grid in the sitekit Albers CRS (101 °E, 30 °N),
#: on multiples of the pixel size so that ``Grid.from_bounds`` (which snaps) matches the DEM
ORIGIN = (-249_990.0, 249_990.0)
SIDES = {1: 1024, 16: 4000, 67: 8192, 268: 16384}
NODATA = -9999.0
TILE = 2048
N_POLYGONS = 200
GTIFF = {
    "driver": "GTiff",
    "tiled": True,
    "blockxsize": 512,
    "blockysize": 512,
    "compress": "deflate",
    "num_threads": "all_cpus",
    "bigtiff": "if_safer",
}

#: GeoPackage 1.2, readable without warnings by older GDAL (Debian's 3.6 gdal-bin)
GPKG = {"dataset_options": {"VERSION": "1.2"}}

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)
_M3 = np.uint64(0x165667B19E3779F9)
_F1 = np.uint64(0xBF58476D1CE4E5B9)
_F2 = np.uint64(0x94D049BB133111EB)


def side_of(size: int) -> int:
    """Raster edge [px] of a benchmark size given in Mpx (1, 16, 67, 268 or any other Mpx)."""
    return SIDES.get(int(size), round(math.sqrt(int(size) * 1e6)))


def bounds_of(size: int) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) [m] of a benchmark grid."""
    n = side_of(size)
    x0, y1 = ORIGIN
    return (x0, y1 - n * RES_M, x0 + n * RES_M, y1)


# ----------------------------------------------------------------------------------- noise
def _hash01(iy: np.ndarray, ix: np.ndarray, octave: int, seed: int) -> np.ndarray:
    """Uniform [-1, 1) float64 from integer lattice indices (SplitMix64 finaliser)."""
    with np.errstate(over="ignore"):
        h = iy.astype(np.uint64) * _M1 ^ ix.astype(np.uint64) * _M2
        h ^= np.uint64((octave * 0x1F123BB5 + seed) & 0xFFFFFFFFFFFF) * _M3
        h ^= h >> np.uint64(30)
        h *= _F1
        h ^= h >> np.uint64(27)
        h *= _F2
        h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) * (2.0 / 2.0**53) - 1.0


def _bspline_weights(t: np.ndarray) -> tuple[np.ndarray, ...]:
    t2, t3 = t * t, t * t * t
    return (
        (1 - t) ** 3 / 6.0,
        (3 * t3 - 6 * t2 + 4) / 6.0,
        (-3 * t3 + 3 * t2 + 3 * t + 1) / 6.0,
        t3 / 6.0,
    )


def value_noise(
    rows: tuple[int, int], cols: tuple[int, int], spacing: int, octave: int, seed: int
) -> np.ndarray:
    """One octave of cubic-B-spline value noise on global pixel rows/cols (float32, ~[-1, 1])."""
    off = _hash01(np.array([octave]), np.array([7]), 99, seed)
    oy = int((off[0] + 1) * 0.5 * spacing) + 4 * spacing
    ox = int((off[0] + 1) * 0.25 * spacing) + 4 * spacing
    ry = np.arange(*rows) + oy + 0.5
    cx = np.arange(*cols) + ox + 0.5
    iy = np.floor(ry / spacing).astype(np.int64)
    ix = np.floor(cx / spacing).astype(np.int64)
    wy = _bspline_weights(ry / spacing - iy)
    wx = _bspline_weights(cx / spacing - ix)
    ly = np.arange(iy.min() - 1, iy.max() + 3)
    lx = np.arange(ix.min() - 1, ix.max() + 3)
    lat = _hash01(ly[:, None], lx[None, :], octave, seed).astype(np.float32)
    jx = ix - lx[0] - 1
    a = np.zeros((len(ly), len(cx)), np.float32)  # interpolate along x: (Ly, W)
    for k in range(4):
        a += np.take(lat, jx + k, axis=1) * wx[k].astype(np.float32)[None, :]
    jy = iy - ly[0] - 1
    out = np.zeros((len(ry), len(cx)), np.float32)
    for k in range(4):
        out += np.take(a, jy + k, axis=0) * wy[k].astype(np.float32)[:, None]
    return out


#: (spacing px, amplitude m) of the large-scale relief octaves
RELIEF = [(4096, 3000.0), (2048, 1600.0), (1024, 900.0)]
#: (spacing px, amplitude m) of the fine octaves, multiplied by the roughness field
FINE = [(512, 960.0), (256, 880.0), (128, 800.0), (64, 800.0), (32, 560.0), (16, 280.0), (8, 120.0)]
#: roughness = clip(ROUGH[0] + ROUGH[1] * noise, ROUGH[2], ROUGH[3]) with noise at 1536 px
ROUGH = (1.0, 1.8, 0.1, 1.8)
BASE_M = 3300.0
#: nodata voids where the product of two noises (96 px and 700 px) exceeds this (~0.3 % of pixels)
VOID_T = 0.30


def dem_tile(rows: tuple[int, int], cols: tuple[int, int], seed: int = SEED) -> np.ndarray:
    """Elevation [m] (float32, ``NODATA`` in voids) of global pixel rows/cols."""
    z = np.full((rows[1] - rows[0], cols[1] - cols[0]), BASE_M, np.float32)
    for k, (s, amp) in enumerate(RELIEF):
        z += amp * value_noise(rows, cols, s, k, seed)
    r0, r1, lo, hi = ROUGH
    rough = np.clip(r0 + r1 * value_noise(rows, cols, 1536, 40, seed), lo, hi)
    fine = np.zeros_like(z)
    for k, (s, amp) in enumerate(FINE):
        fine += amp * value_noise(rows, cols, s, 10 + k, seed)
    z += rough * fine
    voids = value_noise(rows, cols, 96, 50, seed) * value_noise(rows, cols, 700, 51, seed)
    z[voids > VOID_T] = NODATA
    return z


# ----------------------------------------------------------------------------------- vectors
def _polygons(size: int, seed: int) -> list:
    import shapely

    rng = np.random.default_rng(seed + 1)
    xmin, ymin, xmax, ymax = bounds_of(size)
    area = (xmax - xmin) * (ymax - ymin)
    r_mean = max(math.sqrt(0.14 * area / (N_POLYGONS * math.pi)) - 500.0, 150.0)
    cx = rng.uniform(xmin, xmax, N_POLYGONS)
    cy = rng.uniform(ymin, ymax, N_POLYGONS)
    radius = r_mean * rng.lognormal(0.0, 0.35, N_POLYGONS) / math.exp(0.35**2 / 2)
    theta = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    polys = []
    for i in range(N_POLYGONS):
        wig = np.zeros_like(theta)
        for h in range(2, 7):
            wig += rng.normal(0, 0.18 / h**0.7) * np.cos(h * theta + rng.uniform(0, 2 * np.pi))
        r = radius[i] * np.clip(1 + wig, 0.35, 2.0)
        polys.append(
            shapely.Polygon(np.column_stack([cx[i] + r * np.cos(theta), cy[i] + r * np.sin(theta)]))
        )
    return polys


def _grid_features(size: int, seed: int) -> tuple[list, list]:
    import shapely

    rng = np.random.default_rng(seed + 2)
    xmin, ymin, xmax, ymax = bounds_of(size)
    area_km2 = (xmax - xmin) * (ymax - ymin) / 1e6
    n = max(8, round(area_km2 / 500.0))
    xy = np.column_stack([rng.uniform(xmin, xmax, n), rng.uniform(ymin, ymax, n)])
    points = [shapely.Point(p) for p in xy]
    d2 = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    pairs = sorted({tuple(sorted((i, int(j)))) for i in range(n) for j in np.argsort(d2[i])[:2]})
    lines = []
    for i, j in pairs:
        a, b = xy[i], xy[j]
        length = float(np.hypot(*(b - a)))
        k = max(2, int(length / 600.0) + 1)
        t = np.linspace(0, 1, k)
        normal = np.array([-(b - a)[1], (b - a)[0]]) / length
        off = np.zeros_like(t)
        for h in range(1, 4):
            off += rng.normal(0, 0.04 * length / h) * np.sin(h * np.pi * t)
        pts = a[None, :] + t[:, None] * (b - a)[None, :] + off[:, None] * normal[None, :]
        lines.append(shapely.LineString(pts))
    return points, lines


# ----------------------------------------------------------------------------------- writers
def data_dir(workdir: Path, size: int) -> Path:
    return Path(workdir) / "data" / str(int(size))


def load_manifest(workdir: Path, size: int) -> dict:
    return json.loads((data_dir(workdir, size) / "manifest.json").read_text())


def generate(size: int, workdir: Path, seed: int = SEED, force: bool = False) -> dict:
    """Write the benchmark inputs of ``size`` Mpx (skipped if present and current)."""
    import geopandas as gpd
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    from sitekit.grid import DEFAULT_CRS

    out = data_dir(workdir, size)
    man_path = out / "manifest.json"
    if man_path.exists() and not force:
        man = json.loads(man_path.read_text())
        if man.get("version") == VERSION and man.get("seed") == seed:
            return man
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n = side_of(size)
    xmin, ymin, xmax, ymax = bounds_of(size)
    crs_wkt = DEFAULT_CRS.to_wkt()
    transform = Affine(RES_M, 0, xmin, 0, -RES_M, ymax)
    tmp = out / "dem.tif.part"
    profile = dict(
        GTIFF,
        width=n,
        height=n,
        count=1,
        dtype="float32",
        crs=crs_wkt,
        transform=transform,
        nodata=NODATA,
    )
    with rasterio.open(tmp, "w", **profile) as dst:
        for r0 in range(0, n, TILE):
            for c0 in range(0, n, TILE):
                r1, c1 = min(n, r0 + TILE), min(n, c0 + TILE)
                z = dem_tile((r0, r1), (c0, c1), seed)
                dst.write(z, 1, window=Window(c0, r0, c1 - c0, r1 - r0))
    tmp.replace(out / "dem.tif")
    polys = _polygons(size, seed)
    points, lines = _grid_features(size, seed)
    for f in ("constraints.gpkg", "grid.gpkg"):
        (out / f).unlink(missing_ok=True)
    gpd.GeoDataFrame({"id": np.arange(len(polys))}, geometry=polys, crs=crs_wkt).to_file(
        out / "constraints.gpkg", layer="redlines", driver="GPKG", **GPKG
    )
    gpd.GeoDataFrame({"id": np.arange(len(points))}, geometry=points, crs=crs_wkt).to_file(
        out / "grid.gpkg", layer="substations", driver="GPKG", **GPKG
    )
    gpd.GeoDataFrame({"id": np.arange(len(lines))}, geometry=lines, crs=crs_wkt).to_file(
        out / "grid.gpkg", layer="lines", driver="GPKG", mode="a"
    )
    n_segments = sum(len(ln.coords) - 1 for ln in lines)
    man = {
        "version": VERSION,
        "seed": seed,
        "size_mpx": int(size),
        "side_px": n,
        "pixels": n * n,
        "res_m": RES_M,
        "bounds": [xmin, ymin, xmax, ymax],
        "crs_wkt": crs_wkt,
        "nodata": NODATA,
        "dem": "dem.tif",
        "constraints": "constraints.gpkg",
        "constraints_layer": "redlines",
        "grid": "grid.gpkg",
        "grid_layers": ["substations", "lines"],
        "n_polygons": len(polys),
        "n_points": len(points),
        "n_lines": len(lines),
        "n_line_segments": n_segments,
        "generate_s": round(time.perf_counter() - t0, 1),
    }
    man_path.write_text(json.dumps(man, indent=2))
    return man


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1,16", help="comma-separated sizes in Mpx (1,16,67,268)")
    ap.add_argument("--workdir", default=str(Path(__file__).parent / "work"))
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--force", action="store_true", help="regenerate even if present")
    a = ap.parse_args(argv)
    for s in (int(v) for v in a.sizes.split(",")):
        man = generate(s, Path(a.workdir), a.seed, a.force)
        print(
            f"size {s}: {man['side_px']}² px in {data_dir(Path(a.workdir), s)} "
            f"({man['generate_s']} s to generate)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
