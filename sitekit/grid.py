"""The one study-area grid every layer is aligned to.

The default CRS is an Albers equal-area conic on the GRS80 ellipsoid (the CGCS2000 ellipsoid; GRS80
and the CGCS2000 ellipsoid differ by 0.1 mm in the semi-minor axis), centred on the four western
Sichuan prefectures (97.35–104.44 °E, 26.05–34.31 °N). Standard parallels 27.5 °N and 33 °N sit at
about 1/6 and 5/6 of the latitude range (Snyder 1987, *Map Projections — A Working Manual*, USGS PP
1395, p. 99), which keeps the scale error below 0.3 % across the area: pixel areas and buffers are then
true in m and m² everywhere, which a Gauss–Krüger zone (3 zones span the area) or UTM would not give.
Inputs in EPSG:4490 (CGCS2000), EPSG:4326 and the CGCS2000 3° Gauss–Krüger zones EPSG:4542/4543/4544
are reprojected onto it; pyproj declares those GK CRSs northing-first, so every transform here uses
``always_xy=True``.
"""

from __future__ import annotations

import hashlib
import math
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from typing import Any

import dask.array as da
import geopandas as gpd
import numba
import numpy as np
import pyproj
import rasterio.errors
import rasterio.features
import rioxarray  # noqa: F401  (registers the .rio accessor)
import shapely
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj.crs import ProjectedCRS
from pyproj.crs.coordinate_operation import AlbersEqualAreaConversion

from sitekit.errors import CRSError, LayerError

CGCS2000 = pyproj.CRS.from_epsg(4490)
#: Albers equal-area conic on the CGCS2000 datum (GRS80 ellipsoid) for western Sichuan.
DEFAULT_CRS = ProjectedCRS(
    conversion=AlbersEqualAreaConversion(
        latitude_first_parallel=27.5,
        latitude_second_parallel=33.0,
        latitude_false_origin=30.0,
        longitude_false_origin=101.0,
    ),
    geodetic_crs=CGCS2000,
    name="CGCS2000 / Albers Equal Area Sichuan-West (sitekit)",
)
#: CRSs the toolkit names explicitly (any other CRS pyproj understands is accepted too).
KNOWN_CRS = {
    4326: "WGS 84",
    4490: "CGCS2000",
    4542: "CGCS2000 / 3-degree Gauss-Kruger CM 99E",
    4543: "CGCS2000 / 3-degree Gauss-Kruger CM 102E",
    4544: "CGCS2000 / 3-degree Gauss-Kruger CM 105E",
}
DEFAULT_CHUNK = 1024

# rasterio's in-memory rasterize dataset warns that it has no geotransform although it has one.
# Filtered once here: catch_warnings() inside dask threads is not thread-safe (it swaps the
# process-wide filters and showwarning, which broke warning capture elsewhere).
warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)

#: rasterio's rasterize and shapes enter ``warnings.catch_warnings()`` and add an "ignore all"
#: filter. ``catch_warnings`` saves and restores the process-wide filter list (not thread-safe
#: before Python 3.14): two dask threads interleaving enter/exit leave "ignore all" installed for
#: good, and every later warning (SitekitWarning included) is silently dropped. Reproduced with
#: the threaded scheduler in tests/test_hosting.py. Calls from tasks go through this lock.
_WARNINGS_LOCK = threading.Lock()


@numba.njit(cache=True, nogil=True)
def _cover_fraction(burned: np.ndarray, s: int) -> np.ndarray:  # pragma: no cover - numba
    """Covered fraction of each s×s cell of a 0/1 sub-pixel burn (float32, counts / s²).

    Bit-identical to ``burned.reshape(h, s, w, s).sum((1, 3)) / float32(s*s)`` and ~10× faster
    (NumPy's strided sum over two axes: 0.2 s per 8192² burn)."""
    h, w = burned.shape[0] // s, burned.shape[1] // s
    counts = np.zeros((h, w), np.uint16)
    for i in range(h):
        for di in range(s):
            row = burned[i * s + di]
            for j in range(w):
                c = np.uint16(0)
                for dj in range(s):
                    c += row[j * s + dj]
                counts[i, j] += c
    out = np.empty((h, w), np.float32)
    area = np.float32(s * s)
    for i in range(h):
        for j in range(w):
            out[i, j] = np.float32(counts[i, j]) / area
    return out


def rasterize(shapes: Any, **kwargs: Any) -> np.ndarray:
    """:func:`rasterio.features.rasterize` made safe to call from dask threads (see above)."""
    with _WARNINGS_LOCK:
        return rasterio.features.rasterize(shapes, **kwargs)


def shapes(source: np.ndarray, **kwargs: Any) -> list[tuple[dict, float]]:
    """:func:`rasterio.features.shapes`, consumed into a list under the same lock."""
    with _WARNINGS_LOCK:
        return list(rasterio.features.shapes(source, **kwargs))


def parse_crs(value: Any, where: str = "") -> pyproj.CRS:
    """Parse ``EPSG:4490``, ``4490``, WKT, PROJ strings or a CRS object into a pyproj CRS."""
    if value is None:
        raise CRSError(f"{where}: no CRS given; add e.g. `crs: EPSG:4490`".lstrip(": "))
    try:
        return pyproj.CRS.from_user_input(value)
    except pyproj.exceptions.CRSError as exc:
        raise CRSError(
            f"{where + ': ' if where else ''}unknown CRS {value!r} ({exc}); use e.g. EPSG:4490, "
            "EPSG:4326 or EPSG:4543"
        ) from None


def transformer(src: Any, dst: Any) -> pyproj.Transformer:
    """A pyproj transformer that always takes and returns (x/lon, y/lat) order.

    Transformers are reused per (source, target) pair: creating one costs ~50 ms for a custom
    Albers CRS, and pyproj ≥ 3.1 makes a shared Transformer safe across threads."""
    return _transformer(parse_crs(src), parse_crs(dst))


@lru_cache(maxsize=32)
def _transformer(src: pyproj.CRS, dst: pyproj.CRS) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


@dataclass(frozen=True, eq=False)
class Grid:
    """Study-area grid: CRS, affine transform (pixel corners), shape (rows, cols) and dask chunks.

    A plain value: two grids of the same :attr:`definition` (CRS, transform, shape, chunks and
    study area; the ``name`` is a label) are equal, hash equal and tokenise equal in dask. It
    holds no cache: the engine (:mod:`sitekit.engine`) owns the on-disk one.

    Parameters
    ----------
    crs : pyproj.CRS
        A projected metric CRS (equal-area by default).
    transform : Affine
        North-up transform; ``transform.a`` is the pixel size [m].
    shape : (int, int)
        (rows, cols).
    chunks : int
        Dask chunk edge [pixels].
    study_area : shapely geometry, optional
        Study-area polygon in ``crs``; pixels outside it are not screened.
    """

    crs: pyproj.CRS
    transform: Affine
    shape: tuple[int, int]
    chunks: int = DEFAULT_CHUNK
    study_area: Any = None
    name: str = field(default="grid", compare=False)

    def __reduce__(self) -> tuple:
        # tasks capture the grid: ship its definition, not the memoised properties
        return (
            Grid,
            (self.crs, self.transform, self.shape, self.chunks, self.study_area, self.name),
        )

    # -- value semantics ---------------------------------------------------------------
    @cached_property
    def definition(self) -> tuple:
        """What defines the grid: (CRS WKT, transform, shape, chunks, SHA-256 of the study
        area's WKB or None). Equality, hashing and dask tokenising use it."""
        area = self.study_area
        area_key = None if area is None else hashlib.sha256(shapely.to_wkb(area)).hexdigest()
        return (
            self.crs.to_wkt(),
            tuple(float(v) for v in tuple(self.transform)[:6]),
            tuple(int(n) for n in self.shape),
            int(self.chunks),
            area_key,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Grid):
            return NotImplemented
        return self is other or self.definition == other.definition

    def __hash__(self) -> int:
        return hash(self.definition)

    def __dask_tokenize__(self) -> tuple:
        return ("sitekit.Grid", *self.definition)

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_bounds(
        cls,
        bounds: tuple[float, float, float, float],
        resolution_m: float,
        crs: Any = DEFAULT_CRS,
        chunks: int = DEFAULT_CHUNK,
        study_area: Any = None,
        name: str = "grid",
    ) -> Grid:
        """Grid covering ``bounds`` (xmin, ymin, xmax, ymax in ``crs``), snapped to the resolution."""
        crs = parse_crs(crs)
        if crs.is_geographic:
            raise CRSError(
                f"grid CRS {crs.name} is geographic; the grid needs metres (use the default "
                "Albers CRS or a Gauss-Kruger zone such as EPSG:4543)"
            )
        if not resolution_m > 0:
            raise LayerError(f"grid resolution must be > 0 m, got {resolution_m}")
        r = float(resolution_m)
        xmin = math.floor(bounds[0] / r) * r
        ymin = math.floor(bounds[1] / r) * r
        xmax = math.ceil(bounds[2] / r) * r
        ymax = math.ceil(bounds[3] / r) * r
        shape = (round((ymax - ymin) / r), round((xmax - xmin) / r))
        return cls(crs, Affine(r, 0, xmin, 0, -r, ymax), shape, int(chunks), study_area, name)

    @classmethod
    def from_study_area(
        cls,
        area: gpd.GeoDataFrame | gpd.GeoSeries,
        resolution_m: float = 250.0,
        crs: Any = DEFAULT_CRS,
        chunks: int = DEFAULT_CHUNK,
        name: str = "study area",
    ) -> Grid:
        """Grid over the union of ``area``'s polygons (any CRS), in ``crs`` at ``resolution_m``."""
        if area.crs is None:
            raise CRSError("study-area layer has no CRS")
        geom = shapely.make_valid(area.to_crs(parse_crs(crs)).union_all())
        return cls.from_bounds(geom.bounds, resolution_m, crs, chunks, geom, name)

    # -- geometry ----------------------------------------------------------------------
    @property
    def resolution_m(self) -> float:
        """Pixel size [m]."""
        return float(self.transform.a)

    @property
    def pixel_area_km2(self) -> float:
        """Area of one pixel [km²] (exact in an equal-area CRS)."""
        return abs(self.transform.a * self.transform.e) / 1e6

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the pixel edges [m]."""
        t, (ny, nx) = self.transform, self.shape
        return (t.c, t.f + t.e * ny, t.c + t.a * nx, t.f)

    @property
    def geobox(self) -> GeoBox:
        """The equivalent odc-geo GeoBox (used for lazy reprojection)."""
        return GeoBox(self.shape, self.transform, self.crs)

    @property
    def x(self) -> np.ndarray:
        """Pixel-centre x coordinates [m]."""
        return self.transform.c + self.transform.a * (np.arange(self.shape[1]) + 0.5)

    @property
    def y(self) -> np.ndarray:
        """Pixel-centre y coordinates [m] (descending)."""
        return self.transform.f + self.transform.e * (np.arange(self.shape[0]) + 0.5)

    @property
    def dask_chunks(self) -> tuple[int, int]:
        return (min(self.chunks, self.shape[0]), min(self.chunks, self.shape[1]))

    def window_transform(self, row0: int, col0: int) -> Affine:
        """Transform of a window starting at (row0, col0)."""
        return self.transform @ Affine.translation(col0, row0)

    def window(self, row0: int, col0: int, nrows: int, ncols: int) -> Grid:
        """The sub-grid of ``nrows`` × ``ncols`` pixels from (``row0``, ``col0``): same CRS,
        resolution, chunks, study area and name; its transform shifted to the window's corner.

        Raises ValueError for a window not inside the grid (negative sizes included)."""
        ny, nx = self.shape
        row0, col0, nrows, ncols = int(row0), int(col0), int(nrows), int(ncols)
        if min(row0, col0, nrows, ncols) < 0 or row0 + nrows > ny or col0 + ncols > nx:
            raise ValueError(
                f"window rows {row0}+{nrows}, cols {col0}+{ncols} is not inside the grid "
                f"{self.shape}"
            )
        return replace(self, transform=self.window_transform(row0, col0), shape=(nrows, ncols))

    def tiles(self, size: int | tuple[int, int]) -> Iterator[tuple[tuple[slice, slice], Grid]]:
        """``((rows, cols), window)`` for each tile of ``size`` (an edge or (rows, cols)) [px],
        row by row; the last tile of a row or column is cut at the grid's edge. ``rows`` and
        ``cols`` are the slices of the tile in the grid's arrays."""
        th, tw = (size, size) if isinstance(size, int) else size
        if th < 1 or tw < 1:
            raise ValueError(f"tile size must be ≥ 1 px, got {size}")
        ny, nx = self.shape
        for r0 in range(0, ny, th):
            r1 = min(r0 + th, ny)
            for c0 in range(0, nx, tw):
                c1 = min(c0 + tw, nx)
                yield (slice(r0, r1), slice(c0, c1)), self.window(r0, c0, r1 - r0, c1 - c0)

    def with_chunks(self, chunks: int) -> Grid:
        """Same grid, other chunk size."""
        return replace(self, chunks=int(chunks))

    # -- longitude / latitude ----------------------------------------------------------
    def to_lonlat(self, x: Any, y: Any) -> tuple[Any, Any]:
        """Longitude and latitude [°] (WGS84/CGCS2000) of points (x, y) in the grid CRS."""
        return transformer(self.crs, 4326).transform(x, y)

    def from_lonlat(self, lon: Any, lat: Any) -> tuple[Any, Any]:
        """(x, y) in the grid CRS [m] of points given by longitude and latitude [°]."""
        return transformer(4326, self.crs).transform(lon, lat)

    def describe(self) -> str:
        ny, nx = self.shape
        return (
            f"{self.name}: {nx}×{ny} px at {self.resolution_m:g} m, "
            f"{nx * ny / 1e6:.1f} Mpx, CRS {self.crs.name}, chunks {self.chunks}"
        )

    # -- DataArrays --------------------------------------------------------------------
    def wrap(
        self, data: Any, name: str, units: str = "1", long_name: str | None = None, **attrs: Any
    ) -> xr.DataArray:
        """Wrap a (dask) array of the grid's shape as a georeferenced DataArray."""
        if tuple(data.shape) != tuple(self.shape):
            raise ValueError(f"array shape {data.shape} != grid shape {self.shape}")
        out = xr.DataArray(
            data,
            dims=("y", "x"),
            coords={"y": self.y, "x": self.x},
            name=name,
            attrs={"units": units, "long_name": long_name or name, **attrs},
        )
        out.rio.write_crs(self.crs, inplace=True)
        out.rio.write_transform(self.transform, inplace=True)
        return out

    def map_blocks(
        self,
        func: Callable[..., np.ndarray],
        *arrays: Any,
        dtype: Any = np.float32,
        name: str | None = None,
    ) -> da.Array:
        """Lazily evaluate ``func(*blocks, window=(row0, row1, col0, col1))`` per chunk.

        With no input arrays the chunks come from the grid itself.
        """
        if arrays:
            src = [a.data if isinstance(a, xr.DataArray) else a for a in arrays]
            template = src[0]
        else:
            template = da.empty(self.shape, chunks=self.dask_chunks, dtype=np.uint8)
            src = [template]

        def _block(*blocks: np.ndarray, block_info: dict | None = None) -> np.ndarray:
            (r0, r1), (c0, c1) = block_info[None]["array-location"]
            use = blocks if arrays else ()
            return func(*use, window=(r0, r1, c0, c1))

        return da.map_blocks(_block, *src, dtype=dtype, chunks=template.chunks, name=name)

    def lonlat(self) -> tuple[xr.DataArray, xr.DataArray]:
        """Lazy longitude and latitude [°] (WGS84/CGCS2000) of every pixel centre."""
        tr = transformer(self.crs, 4326)
        t = self.transform

        def _lon_lat(window: tuple[int, int, int, int]) -> np.ndarray:
            r0, r1, c0, c1 = window
            xs = t.c + t.a * (np.arange(c0, c1) + 0.5)
            ys = t.f + t.e * (np.arange(r0, r1) + 0.5)
            xx, yy = np.meshgrid(xs, ys)
            lon, lat = tr.transform(xx, yy)
            return np.stack([lon, lat]).astype(np.float64)

        def _part(i: int) -> Callable[..., np.ndarray]:
            return lambda window: _lon_lat(window)[i]

        lon = self.map_blocks(_part(0), dtype=np.float64, name="lon-" + self.token)
        lat = self.map_blocks(_part(1), dtype=np.float64, name="lat-" + self.token)
        return (
            self.wrap(lon, "lon", "degree", "longitude"),
            self.wrap(lat, "lat", "degree", "latitude"),
        )

    @cached_property
    def token(self) -> str:
        """A short stable hash of the grid (CRS, transform, shape, chunks), for cache keys and
        dask names."""
        key = f"{self.crs.to_wkt()}|{tuple(self.transform)}|{self.shape}|{self.chunks}"
        return hashlib.sha1(key.encode()).hexdigest()[:12]

    # -- vectors -----------------------------------------------------------------------
    def to_grid_crs(self, gdf: gpd.GeoDataFrame, where: str = "layer") -> gpd.GeoDataFrame:
        """Reproject a GeoDataFrame to the grid CRS (it must have a CRS)."""
        if gdf.crs is None:
            raise CRSError(f"{where}: vector layer has no CRS; set `crs:` in its catalogue entry")
        if pyproj.CRS(gdf.crs) == self.crs:
            return gdf
        return gdf.to_crs(self.crs)

    def rasterize(
        self,
        geoms: Any,
        *,
        all_touched: bool = False,
        fraction: bool = False,
        supersample: int = 8,
        values: Any = None,
        name: str = "mask",
    ) -> xr.DataArray:
        """Lazily burn geometries (grid CRS) into the grid.

        Parameters
        ----------
        geoms : GeoSeries/GeoDataFrame/sequence of shapely geometries in the grid CRS.
        all_touched : bool
            Burn every pixel a geometry touches (else only pixels whose centre is inside).
        fraction : bool
            Return the covered fraction of each pixel (0–1, float32) by burning on a
            ``supersample``×``supersample`` sub-grid; otherwise a boolean mask.
        values : sequence of int, optional
            Burn these ids (int32, 0 = none; later geometries win) instead of a mask.
        """
        if isinstance(geoms, gpd.GeoDataFrame):
            geoms = geoms.geometry
        arr = np.asarray(getattr(geoms, "values", geoms), dtype=object)
        ids = np.ones(len(arr), np.int32) if values is None else np.asarray(values, np.int32)
        keep = ~shapely.is_empty(arr) if len(arr) else np.zeros(0, bool)
        arr, ids = arr[keep], ids[keep]
        bounds = shapely.bounds(arr) if len(arr) else np.empty((0, 4))
        t = self.transform
        s = int(supersample) if (fraction and values is None) else 1

        def _burn(window: tuple[int, int, int, int]) -> np.ndarray:
            r0, r1, c0, c1 = window
            x0, x1 = t.c + t.a * c0, t.c + t.a * c1
            y1, y0 = t.f + t.e * r0, t.f + t.e * r1
            pad = abs(t.a)
            hit = (
                (bounds[:, 0] <= x1 + pad)
                & (bounds[:, 2] >= x0 - pad)
                & (bounds[:, 1] <= y1 + pad)
                & (bounds[:, 3] >= y0 - pad)
            )
            shape = ((r1 - r0) * s, (c1 - c0) * s)
            dt = np.uint8 if values is None else np.int32
            if not hit.any():
                burned = np.zeros(shape, dt)
            else:
                wt = self.window_transform(r0, c0) @ Affine.scale(1 / s)
                burned = rasterize(
                    zip(arr[hit], ids[hit].tolist(), strict=True),
                    out_shape=shape,
                    transform=wt,
                    all_touched=all_touched,
                    dtype=dt,
                )
            if values is not None:
                return burned
            if not fraction:
                return burned.astype(bool)
            return _cover_fraction(burned, s)

        dtype = np.int32 if values is not None else (np.float32 if fraction else bool)
        # a deterministic name: the same burn requested twice (PV and wind) is computed once,
        # and the name stands for the burn's content (the engine's cache keys burns by it)
        h = hashlib.sha1(b"".join(shapely.to_wkb(arr)) if len(arr) else b"")
        h.update(
            repr((all_touched, fraction, s, ids.tolist() if values is not None else None)).encode()
        )
        data = self.map_blocks(_burn, dtype=dtype, name=f"burn-{h.hexdigest()[:16]}-{self.token}")
        return self.wrap(data, name, "id" if values is not None else ("1" if fraction else "bool"))

    def study_fraction(self, burn: Callable[..., xr.DataArray] | None = None) -> xr.DataArray:
        """Fraction (0–1) of each pixel inside the study area (all ones when none is set).

        Built once per grid value (:func:`_study_fraction`). ``burn`` replaces
        :meth:`rasterize` (same signature): the engine passes its cached burn
        (:meth:`sitekit.engine.pipeline.Pipeline.burn`), so a re-run reads the fraction back."""
        if burn is None or self.study_area is None:
            return _study_fraction(self)
        return burn([self.study_area], fraction=True, name="study_fraction")


@lru_cache(maxsize=16)
def _study_fraction(grid: Grid) -> xr.DataArray:
    """:meth:`Grid.study_fraction` without a ``burn``, memoised by the grid's value: every
    caller on an equal grid gets the same lazy array (one graph layer, burnt once)."""
    if grid.study_area is None:
        return grid.wrap(
            da.ones(grid.shape, chunks=grid.dask_chunks, dtype=np.float32), "study_fraction"
        )
    return grid.rasterize([grid.study_area], fraction=True, name="study_fraction")
