"""Build the bad-input corpus declared in ``cases.yaml`` (reproducible, nothing random-seeded away).

Every case starts from the tiny synthetic catalogue of ``tests/conftest.py`` (0.5° × 0.5° at
101–101.5 °E, 30–30.5 °N: ``area.gpkg``, ``dem.tif``, ``towns.csv``) plus the recipes in
``recipes/``, then applies the case's ``build`` operations in order. The operations are plain data,
so ``cases.yaml`` alone says exactly what each bad input is:

``raster``      write a GeoTIFF: ``path``, ``values`` (``ramp: [lo, hi]`` west→east, ``fill: v``),
                ``crs`` (null = none), ``nodata`` (null = none, ``.nan``), ``origin`` [x0, y0],
                ``res``, ``shape`` [rows, cols], ``hole`` [lon0, lat0, lon1, lat1] set to nodata
``vector``      write a vector file with geopandas: ``path``, ``wkt`` list, ``crs`` (null = none),
                ``layer``, ``props`` {column: [values]}
``text``        write ``text`` to ``path`` in ``encoding`` (default utf-8)
``edit``        replace ``old`` (must occur exactly once) by ``new`` in the text file ``path``
``add_layer``   append ``entry`` (a mapping) to the ``layers:`` list of ``catalog.yaml``
``truncate``    keep the first ``fraction`` of the bytes of ``path``
``garbage``     ``size`` pseudo-random bytes (seeded) into ``path``
``copy``        copy ``src`` (relative to this folder) to ``path``
``delete``      remove ``path``
``fake_run``    a minimal run output folder at ``path`` (rasters/elevation.tif, slope.tif and
                sitekit.gpkg with the study area), enough for ``sitekit route --run``

Run ``python tests/badinput/make_corpus.py DEST`` to write every case into ``DEST/<id>/`` for a
look in QGIS; the test (``tests/test_badinput.py``) builds each case into its own tmp folder.
"""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "cases.yaml"

if str(HERE.parent) not in sys.path:  # for ``conftest.write_tiny_catalog`` when run as a script
    sys.path.insert(0, str(HERE.parent))


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    """The manifest: ``presets`` (argument lists by name) and ``cases``."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    ids = [c["id"] for c in data["cases"]]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"{path}: duplicate case ids {dup}")
    return data


def write_base(dest: Path) -> Path:
    """The tiny catalogue and the corpus recipes in ``dest``; returns ``dest``."""
    from conftest import write_tiny_catalog

    write_tiny_catalog(dest)
    for recipe in sorted((HERE / "recipes").glob("*.yaml")):
        shutil.copy(recipe, dest / recipe.name)
    return dest


# ---------------------------------------------------------------------------------- operations
def _raster(folder: Path, op: dict) -> None:
    import rasterio
    from rasterio.transform import from_origin

    rows, cols = op.get("shape", [80, 80])
    res = float(op.get("res", 0.01))
    x0, y0 = op.get("origin", [100.9, 30.6])
    values = op.get("values", {"ramp": [2000.0, 2800.0]})
    if "ramp" in values:
        lo, hi = values["ramp"]
        z = np.repeat(np.linspace(lo, hi, cols)[None, :], rows, axis=0)
    else:
        z = np.full((rows, cols), float(values["fill"]))
    nodata = op.get("nodata", -9999.0)
    if "hole" in op:  # nodata over a lon/lat box (e.g. the whole study area)
        lon0, lat0, lon1, lat1 = op["hole"]
        lon = x0 + res * (np.arange(cols) + 0.5)
        lat = y0 - res * (np.arange(rows) + 0.5)
        inside = ((lat >= lat0) & (lat <= lat1))[:, None] & ((lon >= lon0) & (lon <= lon1))[None]
        z[inside] = np.nan if nodata is None else float(nodata)
    with rasterio.open(
        folder / op["path"], "w", driver="GTiff", width=cols, height=rows, count=1,
        dtype="float32", crs=op.get("crs", "EPSG:4326"), transform=from_origin(x0, y0, res, res),
        nodata=nodata,
    ) as dst:  # fmt: skip
        dst.write(z.astype(np.float32), 1)


def _vector(folder: Path, op: dict) -> None:
    import geopandas as gpd
    import shapely

    geoms = [shapely.from_wkt(w) for w in op["wkt"]]
    gdf = gpd.GeoDataFrame(op.get("props", {}), geometry=geoms, crs=op.get("crs", "EPSG:4326"))
    kw = {"layer": op["layer"]} if "layer" in op else {}
    with warnings.catch_warnings():  # writing a layer without CRS is the point of some cases
        warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)
        gdf.to_file(folder / op["path"], engine="pyogrio", **kw)


def _text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _edit(folder: Path, op: dict) -> None:
    path = folder / op["path"]
    text = _text_of(path)
    n = text.count(op["old"])
    if n != 1:
        raise ValueError(f"edit of {op['path']}: {op['old']!r} occurs {n} times, need exactly 1")
    path.write_text(text.replace(op["old"], op["new"]), encoding="utf-8")


def _add_layer(folder: Path, op: dict) -> None:
    block = yaml.safe_dump([op["entry"]], allow_unicode=True, sort_keys=False)
    indented = "".join(f"  {line}\n" for line in block.splitlines())
    path = folder / op.get("path", "catalog.yaml")
    path.write_text(_text_of(path) + indented, encoding="utf-8")


def _fake_run(folder: Path, op: dict) -> None:
    """A run folder as `sitekit run` leaves it, reduced to what `sitekit route` reads."""
    from sitekit.io.catalog import Catalog
    from sitekit.outputs import export
    from sitekit.science import terrain

    cat = Catalog(folder / "catalog.yaml")
    grid = cat.grid(2000.0)
    run = folder / op["path"]
    elev = cat.raster("dem", grid).where(grid.study_fraction() > 0).rename("elevation")
    export.write_cog(run / "rasters" / "elevation.tif", elev)
    export.write_cog(run / "rasters" / "slope.tif", terrain.slope(elev))
    export.write_geopackage(run / "sitekit.gpkg", {"prefectures": cat.vector("area", grid)})


def apply(folder: Path, op: dict) -> None:
    """Apply one build operation inside ``folder``."""
    kind = op["op"]
    path = folder / op["path"] if "path" in op else None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "raster":
        _raster(folder, op)
    elif kind == "vector":
        _vector(folder, op)
    elif kind == "text":
        path.write_bytes(op["text"].encode(op.get("encoding", "utf-8")))
    elif kind == "edit":
        _edit(folder, op)
    elif kind == "add_layer":
        _add_layer(folder, op)
    elif kind == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * float(op["fraction"]))])
    elif kind == "garbage":
        rng = np.random.default_rng(int(op.get("seed", 0)))
        path.write_bytes(rng.integers(0, 256, int(op["size"]), dtype=np.uint8).tobytes())
    elif kind == "copy":
        shutil.copy(HERE / op["src"], path)
    elif kind == "delete":
        path.unlink()
    elif kind == "fake_run":
        _fake_run(folder, op)
    else:
        raise ValueError(f"unknown build op {kind!r}")


def build_case(case: dict, dest: Path, base: Path | None = None) -> Path:
    """Write case ``case`` into ``dest`` (from a prebuilt ``base`` folder if given)."""
    if base is not None:
        shutil.copytree(base, dest)
    else:
        write_base(dest)
    for op in case.get("build", []):
        apply(dest, op)
    return dest


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/badinput/make_corpus.py DEST", file=sys.stderr)
        return 2
    dest = Path(argv[0])
    manifest = load_manifest()
    base = write_base(dest / "_base")
    for case in manifest["cases"]:
        target = dest / case["id"]
        if target.exists():
            shutil.rmtree(target)
        build_case(case, target, base)
        print(f"{case['id']:40s} {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
