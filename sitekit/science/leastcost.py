"""Least-cost connection: slope- and crossing-weighted distance to the grid, and its paths.

:func:`cost_surface` turns slope and crossings into a cost per metre; :func:`least_cost_distance`
and :func:`least_cost_path` run scikit-image's ``MCP_Geometric`` on it (8-connected; the cost of a
step is its length times the mean cost of the two pixels; Dijkstra 1959). The search is global
(one task), on a grid coarsened to at most :data:`DEFAULT_MAX_PIXELS`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple, Protocol

import dask
import dask.array as da
import geopandas as gpd
import numba
import numpy as np
import shapely
import xarray as xr
from affine import Affine

from sitekit.errors import InputError, LayerError
from sitekit.grid import Grid, parse_crs, rasterize

#: Least-cost analysis runs on at most this many pixels; larger grids are coarsened first.
DEFAULT_MAX_PIXELS = 16_000_000


# -- least-cost connection -----------------------------------------------------------------
def cost_surface(
    slope_deg: xr.DataArray,
    forbidden: xr.DataArray | None = None,
    penalty: xr.DataArray | None = None,
    *,
    base_cost: float = 1.0,
    slope_factor: float = 1.0,
    slope_ref_deg: float = 10.0,
    slope_exponent: float = 2.0,
    forbidden_cost: float = np.inf,
) -> xr.DataArray:
    """Relative cost per metre of building a line across each pixel.

    ``cost = base_cost × (1 + slope_factor × (slope / slope_ref_deg)^slope_exponent) × penalty``;
    forbidden pixels (e.g. ecological redlines) get ``forbidden_cost`` (``inf`` = impassable, a
    large finite value = heavily penalised); NaN slope (nodata) is impassable. The default quadratic
    slope term (cost doubles at 10°, ×5 at 20°) is a sitekit assumption standing in for the
    slope-class reclassification of the cited studies; tune it per project.

    Parameters
    ----------
    slope_deg : DataArray
        Terrain slope [°].
    forbidden : DataArray of bool, optional
        True where a line may not pass.
    penalty : DataArray, optional
        Multiplier [1] for crossings (rivers, roads, protected buffers …), 1 = none.
    base_cost : float
        Cost per metre on flat open ground [relative, 1 = flat].

    Returns
    -------
    DataArray
        float32 cost per metre [1 relative to flat ground], ``inf`` where impassable.

    References
    ----------
    Bagli, S., Geneletti, D., Orsi, F. (2011). Routeing of power lines through least-cost path
    analysis and multicriteria evaluation to minimise environmental impacts. *Environmental Impact
    Assessment Review* 31(3), 234–239. EPRI & Georgia Transmission Corp. (2006). *EPRI-GTC Overhead
    Electric Transmission Line Siting Methodology*, EPRI report 1013080.
    """
    s = slope_deg.astype(np.float32)
    cost = base_cost * (1.0 + slope_factor * (abs(s) / slope_ref_deg) ** slope_exponent)
    if penalty is not None:
        cost = cost * penalty.astype(np.float32)
    if forbidden is not None:
        cost = xr.where(forbidden.astype(bool), np.float32(forbidden_cost), cost)
    cost = xr.where(np.isnan(cost), np.float32(np.inf), cost).astype(np.float32)
    cost.attrs = {
        "units": "1",
        "long_name": "line cost per metre relative to flat ground",
        "method": f"{base_cost:g} × (1 + {slope_factor:g}·(slope/{slope_ref_deg:g}°)^"
        f"{slope_exponent:g}) × penalty; forbidden = {forbidden_cost:g}",
        "modelled": "yes",
    }
    if slope_deg.rio.crs is not None:  # attrs were replaced: georeference again
        cost = cost.rio.write_crs(slope_deg.rio.crs).rio.write_transform(slope_deg.rio.transform())
    return cost.rename("line_cost")


def _grid_of(cost: xr.DataArray, grid: Grid | None) -> Grid:
    if grid is not None:
        if tuple(cost.shape) != tuple(grid.shape):
            raise LayerError(f"cost raster shape {cost.shape} differs from the grid {grid.shape}")
        return grid
    chunks = cost.data.chunksize[0] if isinstance(cost.data, da.Array) else max(cost.shape)
    crs = parse_crs(cost.rio.crs, where="cost raster")
    return Grid(crs, cost.rio.transform(), tuple(cost.shape), int(chunks))


def _target_labels(targets: Any, grid: Grid) -> tuple[da.Array, bool]:
    """Targets as an int32 label raster (feature position + 1, 0 = none); True if indexed."""
    if isinstance(targets, xr.DataArray):
        if tuple(targets.shape) != tuple(grid.shape):
            raise InputError(f"target mask shape {targets.shape} differs from grid {grid.shape}")
        data = targets.data if isinstance(targets.data, da.Array) else da.from_array(targets.data)
        return data.astype(bool).astype(np.int32).rechunk(grid.dask_chunks), False
    if isinstance(targets, gpd.GeoDataFrame | gpd.GeoSeries):
        gdf = targets if isinstance(targets, gpd.GeoDataFrame) else targets.to_frame("geometry")
        geoms = np.asarray(grid.to_grid_crs(gdf, where="targets").geometry.values, dtype=object)
    else:
        xy = np.asarray(targets, dtype=np.float64).reshape(-1, 2)
        geoms = shapely.points(xy)
    if not shapely.intersects(geoms, shapely.box(*grid.bounds)).any():
        raise InputError("no connection target lies inside the grid; check their CRS and extent")

    def _burn(window: tuple[int, int, int, int]) -> np.ndarray:
        r0, r1, c0, c1 = window
        pairs = [(geoms[i], i + 1) for i in range(len(geoms) - 1, -1, -1) if geoms[i] is not None]
        return rasterize(
            pairs,
            out_shape=(r1 - r0, c1 - c0),
            transform=grid.window_transform(r0, c0),
            all_touched=True,
            dtype=np.int32,
        )

    return grid.map_blocks(_burn, dtype=np.int32), True


def _coarsen(cost: da.Array, labels: da.Array, f: int) -> tuple[da.Array, da.Array]:
    if f == 1:
        return cost, labels
    ny, nx = cost.shape
    pad = ((0, -ny % f), (0, -nx % f))
    c = da.pad(cost.astype(np.float64), pad, constant_values=np.nan)
    lab = da.pad(labels, pad, constant_values=0)
    c = c.rechunk(tuple(max(f, (s // f) * f) for s in c.chunksize))
    lab = lab.rechunk(c.chunks)

    def _mean(x: np.ndarray, axis: Any = None) -> np.ndarray:
        n = np.sum(~np.isnan(x), axis=axis)
        s = np.nansum(x, axis=axis)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, s / n, np.inf)

    return da.coarsen(_mean, c, {0: f, 1: f}), da.coarsen(np.max, lab, {0: f, 1: f})


def _factor(grid: Grid, max_pixels: int) -> int:
    n = grid.shape[0] * grid.shape[1]
    return 1 if n <= max_pixels else math.ceil(math.sqrt(n / max_pixels))


def _mcp(cost: np.ndarray, labels: np.ndarray, res_m: float, ends: Any = None) -> Any:
    """skimage's MCP_Geometric from every target pixel: ``(mcp, cumulative cost, traceback)``;
    with ``ends`` the search stops once all of them are reached."""
    from skimage.graph import MCP_Geometric

    c = np.where(np.isfinite(cost) & (cost >= 0), cost, np.inf).astype(np.float64)
    starts = np.argwhere((labels > 0) & np.isfinite(c))
    if not len(starts):
        raise InputError(
            "every connection target lies on an impassable (forbidden or nodata) pixel; "
            "allow them in the cost surface or choose other targets"
        )
    mcp = MCP_Geometric(c, fully_connected=True, sampling=(res_m, res_m))
    if ends is None:
        cum, tb = mcp.find_costs(starts)
    else:
        cum, tb = mcp.find_costs(starts, ends=ends, find_all_ends=True)
    return mcp, cum, tb


@numba.njit(cache=True)
def _trace(tb: np.ndarray, offsets: np.ndarray, r: int, c: int) -> np.ndarray:
    """Pixels (row, col) from ``(r, c)`` back to its search start, following MCP's traceback
    (offset index per pixel, negative at a start)."""
    out = [(r, c)]
    while tb[r, c] >= 0:
        k = tb[r, c]
        r, c = r - offsets[k, 0], c - offsets[k, 1]
        out.append((r, c))
    res = np.empty((len(out), 2), np.int64)
    for i in range(len(out)):
        res[i, 0], res[i, 1] = out[i]
    return res


class SearchStore(Protocol):
    """Where :func:`least_cost_paths` keeps whole MCP searches between calls. Injected: science
    touches no disk (:class:`sitekit.engine.mcp_store.McpStore` keeps them in the layer cache).

    ``key_parts`` is ``(cost, labels, res_m)``: the (coarsened) cost [1] and target-label rasters
    and the pixel size [m] the search ran on; ``arrays`` is ``(cumulative cost [m], traceback
    [offset index], offsets [(k, 2) int64])``."""

    def get(self, key_parts: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The arrays saved under ``key_parts``, or None."""

    def put(self, key_parts: tuple, arrays: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Keep ``arrays`` under ``key_parts`` (best effort)."""


def _search(
    c_np: np.ndarray, lab_np: np.ndarray, res_m: float, ends: list, store: SearchStore | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(cumulative cost, traceback, offsets)`` of the MCP search from the targets.

    Without ``store`` the search stops at the last of ``ends``. With it, the search covers the
    whole grid and is kept in ``store`` keyed by the cost and target rasters and the pixel size,
    so a re-run with other sites (new weights) only traces paths. A finished pixel's cost and
    predecessor do not depend on where Dijkstra stops, so both give the same paths and costs
    (tested)."""
    if store is None:
        mcp, cum, tb = _mcp(c_np, lab_np, res_m, ends=ends)
        return cum, tb, np.asarray(mcp.offsets, np.int64)
    key = (c_np, lab_np, res_m)
    hit = store.get(key)
    if hit is not None:
        return hit
    mcp, cum, tb = _mcp(c_np, lab_np, res_m)
    offsets = np.asarray(mcp.offsets, np.int64)
    store.put(key, (cum, tb, offsets))
    return cum, tb, offsets


def _repeat_block(rows: np.ndarray, cols: np.ndarray, coarse: np.ndarray, f: int) -> np.ndarray:
    """The block at ``rows`` × ``cols`` (pixel indices) of ``coarse`` repeated ``f`` times
    along both axes."""
    return coarse[np.ix_(rows // f, cols // f)]


def least_cost_distance(
    cost: xr.DataArray, targets: Any, grid: Grid, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> xr.DataArray:
    """Least-cost (cost-weighted) distance [km] from every pixel to the nearest target.

    The accumulated cost is a global computation: it runs as ONE task on the whole grid (the 250 m
    western-Sichuan grid, ~10 Mpx, needs ~0.5 GB). Grids above ``max_pixels`` are coarsened by
    an integer factor ``f`` first (block-mean cost; a block with any impassable pixel is
    impassable, so narrow corridors may close), the result is repeated back to full resolution:
    errors up to about one coarse pixel (``f × resolution``) times the local cost at each end.

    Parameters
    ----------
    cost : DataArray
        Cost per metre [1] on the grid (:func:`cost_surface`); ``inf``/NaN/negative = impassable.
    targets : bool DataArray, GeoDataFrame/GeoSeries (points or lines) or (N, 2) x/y [m]
        Connection points; lines (transmission) connect anywhere along them.
    grid : Grid

    Returns
    -------
    DataArray
        float32 ``least_cost_distance_km`` [km of flat-equivalent line], ``inf`` where no path
        exists. With ``cost ≡ 1`` it is the 8-connected path length, which exceeds the straight
        distance by up to 8.2 % (1/cos 22.5°) between the 45° directions.

    References
    ----------
    Dijkstra, E. W. (1959). A note on two problems in connexion with graphs. *Numerische
    Mathematik* 1, 269–271. Bagli, Geneletti & Orsi (2011), see :func:`cost_surface`.
    """
    grid = _grid_of(cost, grid)
    labels, _ = _target_labels(targets, grid)
    f = _factor(grid, max_pixels)
    c_coarse, l_coarse = _coarsen(cost.data, labels, f)

    def _run(c: np.ndarray, lab: np.ndarray) -> np.ndarray:
        return (_mcp(c, lab, grid.resolution_m * f)[1] / 1000.0).astype(np.float32)

    # one task on the whole (coarsened) grid, kept in the array graph: handing the arrays to
    # dask.delayed instead made dask build a renamed copy of their whole upstream graph (DEM
    # read, slope, constraints), which a joint persist then computed twice
    acc = da.map_blocks(
        _run,
        c_coarse.rechunk(-1),
        l_coarse.rechunk(-1),
        dtype=np.float32,
        meta=np.empty((0, 0), np.float32),
    )
    if f > 1:
        # each output block takes its rows and columns of the one coarse block (r // f, c // f):
        # one task per block, where repeat + rechunk made ~220 per block (145k tasks at 30 m)
        ny, nx = grid.shape
        rows = da.arange(ny, chunks=grid.dask_chunks[0])
        cols = da.arange(nx, chunks=grid.dask_chunks[1])
        with warnings.catch_warnings():
            # the one coarse block feeds every output block: dask warns that the chunk count
            # grows, which is the point here
            warnings.simplefilter("ignore", da.PerformanceWarning)
            acc = da.blockwise(_repeat_block, "ij", rows, "i", cols, "j", acc, "kl",
                               concatenate=True, dtype=np.float32, f=f)  # fmt: skip
    else:
        acc = acc.rechunk(grid.dask_chunks)
    return grid.wrap(
        acc,
        "least_cost_distance_km",
        "km",
        "least-cost distance to the nearest connection point",
        method=f"MCP_Geometric 8-connected, coarsening factor {f}",
        modelled="yes",
    )


class LeastCostPath(NamedTuple):
    """A least-cost path from a site to its connection target."""

    line: shapely.LineString | None
    length_m: float
    cost_m: float
    target_index: int


def least_cost_paths(
    cost: xr.DataArray,
    starts_xy: Any,
    targets: Any,
    grid: Grid | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    store: SearchStore | None = None,
) -> list[LeastCostPath]:
    """Least-cost paths from many sites to their cheapest target, with one MCP run (computes).

    The search spreads from the targets and stops once every start is reached; each path is
    traced back and returned from the site (first vertex) to the target (last vertex), through
    pixel centres in the grid CRS. ``length_m`` is the polyline length [m], ``cost_m`` the
    accumulated cost [m of flat-equivalent line], ``target_index`` the position of the target
    in ``targets`` (-1 for a mask). Unreachable sites get ``line=None``, NaN length and inf cost.
    Coarsening above ``max_pixels`` as in :func:`least_cost_distance`. With ``store`` (a
    :class:`SearchStore`, e.g. :class:`sitekit.engine.mcp_store.McpStore`) the whole search is
    kept there and reused by later calls on the same cost surface and targets (see
    :func:`_search`).
    """
    grid = _grid_of(cost, grid)
    labels, indexed = _target_labels(targets, grid)
    f = _factor(grid, max_pixels)
    c_coarse, l_coarse = _coarsen(cost.data, labels, f)
    c_np, lab_np = dask.compute(c_coarse, l_coarse)
    xy = np.asarray(starts_xy, dtype=np.float64).reshape(-1, 2)
    t = grid.transform * Affine.scale(f)
    cols, rows = (~t) * (xy[:, 0], xy[:, 1])
    rows, cols = np.floor(rows).astype(int), np.floor(cols).astype(int)
    inside = (rows >= 0) & (rows < c_np.shape[0]) & (cols >= 0) & (cols < c_np.shape[1])
    if not inside.all():
        bad = xy[~inside][0]
        raise InputError(f"site ({bad[0]:.0f}, {bad[1]:.0f}) lies outside the grid {grid.bounds}")
    ends = list(zip(rows.tolist(), cols.tolist(), strict=True))
    cum, tb, offsets = _search(c_np, lab_np, grid.resolution_m * f, ends, store)
    out = []
    for r, c in ends:
        total = float(cum[r, c])
        if not np.isfinite(total):
            out.append(LeastCostPath(None, float("nan"), float("inf"), -1))
            continue
        path = _trace(tb, offsets, r, c)  # from the site to its target
        pr, pc = path.astype(np.float64).T
        px, py = t * (pc + 0.5, pr + 0.5)
        pts = np.column_stack([px, py])
        if len(pts) == 1:
            pts = np.vstack([pts, pts])
        line = shapely.LineString(pts)
        end = tuple(path[-1])
        idx = int(lab_np[end]) - 1 if indexed else -1
        out.append(LeastCostPath(line, float(line.length), total, idx))
    return out


def least_cost_path(
    cost: xr.DataArray,
    start_xy: tuple[float, float],
    targets: Any,
    grid: Grid | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LeastCostPath:
    """Least-cost path from one site to the cheapest target: ``(line, length_m, cost_m, index)``.

    Raises
    ------
    InputError
        No path exists (the site or all targets are enclosed by impassable pixels).
    """
    (res,) = least_cost_paths(cost, [start_xy], targets, grid, max_pixels=max_pixels)
    if res.line is None:
        raise InputError(
            f"no least-cost path from ({start_xy[0]:.0f}, {start_xy[1]:.0f}) to any connection "
            "target: every route crosses impassable (forbidden or nodata) pixels; relax the "
            "forbidden zones (finite forbidden_cost) or add targets"
        )
    return res
