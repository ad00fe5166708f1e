"""DEM search for pumped-storage hydro: reservoir candidates, upper/lower pairs, cost classes.

A raster adaptation of the ANU global pumped-hydro atlas search (Stocks, Lu, Blakers et al.,
Joule 2021; Lu et al. 2018; open code ``ANU-RE100/PHES_Searching``, ``src/screening.cpp`` and
``src/pairing.cpp``, parameters from its ``variables`` file):

1. **Hydrology** (:func:`sitekit.science.hydrology.dam_sites`). Depressions are filled
   (Priority-Flood), D8 steepest descent on the filled DEM, dam sites (pour points) where a
   stream crosses a multiple of ``contour_interval_m``.
2. **Reservoir geometry a dam can make** (:func:`reservoir_candidates`). For a dam site at
   filled elevation z₀ and each dam height H of ``dam_heights_m`` (ANU: 10, 20 … 150 m), the
   reservoir is every pixel that drains through the site and whose *pit-filled* elevation z_f
   lies below the full supply level FSL = z₀ + H; its volume is

       V(H) = Σ (FSL − z_f) · pixel area   over those pixels (ANU ``model_greenfield_reservoir``).

   On the pit-filled terrain a closed depression counts only from its spill level up, i.e.
   only the part the dam itself raises: the pit below its spill level is dead storage that
   gravity cannot release through the dam, so it is never usable volume. Every pixel's depth
   is ≤ H, hence mean depth V/A ≤ H. Walls stand on every 4-neighbour edge from the reservoir
   to a lower outside pixel (and diagonal leaks between two dry pixels), height FSL −
   max(z_f of both), one pixel long; wall volume from the cross-section (h + freeboard)·(crest
   + batter·(h + freeboard)) (ANU ``convert_to_dam_volume``: batter 3, crest 10 m, freeboard
   1.5 m). A height is allowed while no reservoir or wall pixel is excluded (ANU
   ``max_dam_height``). A candidate needs a volume ≥ ``min_volume_gl`` and a best water-to-
   rock ratio ≥ ``min_water_rock`` (ANU 3); overlapping candidates keep the best W/R.
3. **Existing reservoirs** (bluefield, :mod:`sitekit.science.reservoirs`): real reservoirs at their
   published normal pool level, flooded on the DEM, no dam cost, as the lower or the upper
   reservoir of a new one (never two existing ones, as ANU); several pairs may share one while
   their volumes fit its capacity; no new reservoir floods it.
4. **Pairs sized to the ANU energy/storage classes** (:func:`size_pairs`): for each class
   (E, h) that a pair can serve (power E/h ≤ ``max_power_mw``) the required gross volume is
   V = E / (ρ g head η u) with generation efficiency η (ANU 0.9) and usable fraction u (ANU
   0.85, between minimum operating level and FSL); each reservoir's dam height and wall are
   interpolated at V on its height curves (ANU ``pairing.cpp``); the pair takes the largest
   class it can fill with pair W/R ≥ ``min_pair_water_rock`` (ANU 1.5) and a cost class A–E
   (:mod:`sitekit.science.pumped_storage_cost`). Head = difference of the reservoirs' reference levels:
   a new reservoir's dam-site (pour-point) elevation as in ANU's pairing, an existing one's
   normal pool level.
5. **Selection.** Greedy by cost relative to the class-A limit (then energy); a reservoir is
   flooded to the exact height that holds V (dam height reported), and a pair is kept when
   none of its pixels is used by a better pair.

Chunking (:func:`find_pairs`): the hydrology is tiled (:mod:`sitekit.science.tiledfill`,
:mod:`sitekit.science.tiledflow`: no task holds more than a chunk of it); every dask chunk is
searched in a window grown by :meth:`PumpedStorageParams.halo` pixels, existing dams are flooded
each in its own window, and the selection runs once, so the chunked result equals
:func:`find_pairs_numpy`.

References
----------
Stocks, M., Stocks, R., Lu, B., Cheng, C., Blakers, A. (2021). A global atlas of pumped hydro
systems. Joule 5(1), 270–284. https://doi.org/10.1016/j.joule.2020.11.015

Lu, B., Stocks, M., Blakers, A., Anderson, K. (2018). Geographic information system algorithms to
locate prospective sites for pumped hydro energy storage. Applied Energy 222, 300–312.
https://doi.org/10.1016/j.apenergy.2018.03.177

ANU RE100 group, ``PHES_Searching`` (GitHub ``ANU-RE100/PHES_Searching``): ``variables``
(dam_wall_heights, dambatter, cwidth, freeboard, generation_efficiency 0.9, usable_volume 0.85,
reservoir sizings ``test = E, h``), ``src/screening.cpp``, ``src/pairing.cpp``,
``src/phes_base.cpp``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
from affine import Affine
from dask.base import tokenize
from dask.delayed import Delayed
from scipy.spatial import cKDTree

from sitekit.errors import InputError
from sitekit.grid import Grid
from sitekit.science import pumped_storage_cost as psc
from sitekit.science import rawgraph
from sitekit.science import reservoirs as rsv
from sitekit.science.hydrology import (  # noqa: F401 - re-exported (public API of this module)
    _D8,
    dam_sites,
    fill_depressions,
    flow_accumulation,
    flow_receivers,
)
from sitekit.science.ps_geometry import _candidates, reservoir_candidates  # noqa: F401 - re-exported
from sitekit.science.ps_select import (  # noqa: F401 - used here; public names re-exported
    PAIR_COLUMNS,
    RESERVOIR_COLUMNS,
    _largest_pair_volume,
    _pixel_set,
    _select,
    add_grid_connection,
    connect_found,
    flood_to_volume,
)
from sitekit.science.ps_sizing import size_pairs
from sitekit.science.tiledfill import fill_depressions_tiled
from sitekit.science.tiledflow import dam_sites_tiled, receivers_from_codes

#: ANU atlas reservoir sizings ``test = E, h`` (``variables``): (energy [GWh], storage [h]).
ANU_CLASSES: tuple[tuple[float, float], ...] = (
    (2.0, 6.0), (5.0, 18.0), (15.0, 18.0), (50.0, 50.0), (150.0, 50.0), (500.0, 168.0),
    (1500.0, 504.0),
)  # fmt: skip
#: ANU ``dam_wall_heights`` (``variables``) [m].
ANU_DAM_HEIGHTS_M: tuple[float, ...] = tuple(float(h) for h in range(10, 151, 10))


@dataclass(frozen=True)
class PumpedStorageParams:
    """Search parameters (defaults: the ANU atlas ``variables`` file where it has one).

    Attributes
    ----------
    dam_heights_m : dam (wall) heights tried at each dam site [m] (ANU 10, 20 … 150 m).
    min_head_m, max_head_m : head range [m] (ANU 100–1600 m; the Sichuan plan favours 300–800).
    max_separation_km : largest distance between the reservoirs [km].
    min_slope : head / separation [-] (ANU 0.05 = 1:20).
    generation_efficiency : η [-] (ANU 0.9).
    usable_fraction : usable share of the gross volume, minimum operating level to FSL [-]
        (ANU 0.85).
    classes : (energy [GWh], storage [h]) classes a pair is sized to (ANU: 2/6, 5/18, 15/18,
        50/50, 150/50, 500/168, 1500/504).
    max_power_mw : no pair is rated above this [MW]; classes whose E/h exceeds it are not
        served (3600 MW ≈ the largest plants, e.g. Fengning).
    min_volume_gl : smallest reservoir at its highest allowed dam [GL] (ANU 1 GL).
    min_water_rock : smallest reservoir W/R at its best dam height [-] (ANU 3).
    min_pair_water_rock : smallest pair W/R at the class volume [-] (ANU 1.5).
    contour_interval_m : dam sites where the flow crosses a multiple of this [m] (ANU 10 m).
    min_catchment_km2 : catchment that makes a stream [km²] (ANU 10 ha at 30 m).
    max_reservoir_length_km : longest flow path inside a reservoir [km] (caps the halo).
    existing_radius_km : reservoir disc around an existing dam whose DEM lies above its pool.
    existing_reach_km : farthest an existing reservoir is flooded from its dam [km].
    max_lowers_per_upper : lowers kept per upper before the selection (ANU 100).
    max_pairs : stop after this many selected pairs (None: all).
    dam_crest_width_m, dam_batter, freeboard_m : wall shape (ANU 10 m, 3, 1.5 m).
    cost : :class:`sitekit.science.pumped_storage_cost.CostModel`.
    """

    dam_heights_m: tuple[float, ...] = ANU_DAM_HEIGHTS_M
    min_head_m: float = 300.0
    max_head_m: float = 800.0
    max_separation_km: float = 15.0
    min_slope: float = 0.05
    generation_efficiency: float = 0.9
    usable_fraction: float = 0.85
    classes: tuple[tuple[float, float], ...] = ANU_CLASSES
    max_power_mw: float = 3600.0
    min_volume_gl: float = 1.0
    min_water_rock: float = 3.0
    min_pair_water_rock: float = 1.5
    contour_interval_m: float = 10.0
    min_catchment_km2: float = 0.5
    max_reservoir_length_km: float = 3.0
    existing_radius_km: float = 0.5
    existing_reach_km: float = 60.0
    max_lowers_per_upper: int = 20
    max_pairs: int | None = None
    dam_crest_width_m: float = 10.0
    dam_batter: float = 3.0
    freeboard_m: float = 1.5
    cost: psc.CostModel = field(default_factory=psc.CostModel)

    def check(self) -> None:
        """Raise :class:`InputError` for inconsistent parameters."""
        hs = self.dam_heights_m
        if not hs or min(hs) <= 0 or list(hs) != sorted(set(hs)):
            raise InputError(
                f"pumped storage: dam_heights_m must be increasing and > 0, got {list(hs)}"
            )
        if not max(hs) < self.min_head_m <= self.max_head_m:
            raise InputError(
                "pumped storage: need max(dam_heights_m) < min_head_m <= max_head_m, got "
                f"{max(hs)}, {self.min_head_m}, {self.max_head_m}"
            )
        if self.max_separation_km <= 0 or self.contour_interval_m <= 0:
            raise InputError("pumped storage: max_separation_km and contour_interval_m must be > 0")
        if not (0 < self.generation_efficiency <= 1 and 0 < self.usable_fraction <= 1):
            raise InputError(
                "pumped storage: generation_efficiency and usable_fraction must be in (0, 1]"
            )
        if not self.served_classes():
            raise InputError(
                f"pumped storage: no storage class has power ≤ max_power_mw {self.max_power_mw}"
            )

    def served_classes(self) -> list[tuple[float, float]]:
        """Classes (E [GWh], h [h]) whose power E/h fits ``max_power_mw``, by energy."""
        return sorted(
            (float(e), float(h)) for e, h in self.classes if e * 1000.0 / h <= self.max_power_mw
        )

    def required_volume_m3(self, energy_gwh, head_m):
        """Gross volume [m³] that stores ``energy_gwh`` at ``head_m`` (ANU
        ``find_required_volume``)."""
        return psc.required_volume_m3(
            energy_gwh, head_m, self.generation_efficiency, self.usable_fraction
        )

    def min_volume_m3(self) -> float:
        """Smallest useful reservoir [m³]: ``min_volume_gl`` and the smallest class at max head."""
        e_min = self.served_classes()[0][0]
        return max(self.min_volume_gl * 1e6, float(self.required_volume_m3(e_min, self.max_head_m)))

    def steps(self, res: float) -> tuple[int, int, int]:
        """(reservoir path cap, separation, catchment threshold) in pixels at ``res`` m."""
        return (
            max(1, math.ceil(self.max_reservoir_length_km * 1000 / res)),
            math.ceil(self.max_separation_km * 1000 / res),
            max(1, math.ceil(self.min_catchment_km2 * 1e6 / res**2)),
        )

    def halo(self, res: float) -> int:
        """Chunk overlap [pixels] that makes the chunked search equal to the unchunked one."""
        k, sep, _ = self.steps(res)
        # lower pour point ≤ sep + 2k from the core, its pixels ≤ sep + 3k, pixels of candidates
        # competing with it (non-maximum suppression) ≤ sep + 5k; + 3 for the wall neighbours,
        # the nodata ring and the window border. The filled DEM, D8 codes and dam sites come
        # from the tiled hydrology of the whole grid, so the stream threshold (a catchment
        # area, once accumulated inside the window) no longer widens the window.
        return sep + 5 * k + 3


def hydrology(z, res: float, params: PumpedStorageParams | None = None, *, filled: bool = False):
    """Filled DEM, D8 receivers and dam-site mask (:func:`sitekit.science.hydrology.dam_sites`);
    ``filled``: ``z`` is already depression-filled."""
    p = params or PumpedStorageParams()
    return dam_sites(z, p.contour_interval_m, p.steps(res)[2], filled=filled)


# -- pair sizing -----------------------------------------------------------------------------
def _curves(c: pd.DataFrame, p: PumpedStorageParams):
    """(volume [m³], wall [m³], height [m]) curves with a leading zero column; max volume.

    Existing reservoirs: volume = their capacity (inf if unknown) at every height, no wall.
    """
    m = len(p.dam_heights_m)
    v = c[[f"v{j}" for j in range(m)]].to_numpy(float)
    w = c[[f"w{j}" for j in range(m)]].to_numpy(float)
    vmax = np.max(np.where(np.isnan(v), -np.inf, v), axis=1, initial=-np.inf)
    v = np.where(np.isnan(v), np.inf, v)  # heights not allowed (NaN): never reached
    zero = np.zeros((len(c), 1))
    hs = np.broadcast_to(np.asarray((0.0, *p.dam_heights_m)), (len(c), m + 1))
    return np.hstack([zero, v]), np.hstack([zero, np.nan_to_num(w)]), hs, vmax


# -- one window ------------------------------------------------------------------------------
def _search_window(
    z, zf, recv, ppm, excl, win0, core, gshape, transform, p, existing
) -> dict[str, Any]:
    """Candidates and candidate pairs whose upper pour point lies in ``core`` (global px).

    ``z``, ``zf``, ``recv`` (receivers as flat indices within the window, −1 for none or
    outside it), ``ppm`` and ``excl`` are the window's slices of the DEM, filled DEM, receivers,
    dam-site mask and exclusion mask; ``existing`` the list of
    :class:`sitekit.science.reservoirs.Flooded` reservoirs (global pixels).
    """
    z = np.asarray(z)  # its shape only: a float64 copy was 8 B/px (131 MB in a 30 m window)
    ny, nx = z.shape
    gx = gshape[1]
    r_off, c_off = win0
    res = abs(transform.a)
    local = np.asarray(recv).ravel()
    new, mq, mc, dz = _candidates(
        z, np.asarray(zf, np.float64), local, np.asarray(ppm), excl, res, p, (r_off, c_off)
    )
    pr, pc = np.divmod(new["pp"].to_numpy(), nx)
    new["key"] = (pr + r_off) * gx + pc + c_off
    new["core"] = (
        (pr + r_off >= core[0]) & (pr + r_off < core[1])
        & (pc + c_off >= core[2]) & (pc + c_off < core[3])
    )  # fmt: skip
    new["existing"] = False
    new["name"] = None
    new["outline_method"] = "DEM flooded behind a new dam"
    m = len(p.dam_heights_m)
    ex_rows, ex_pix = [], {}
    for i, ex in enumerate(existing):
        rr, cc = np.divmod(ex.pixels, gx)
        rr, cc = rr - r_off, cc - c_off
        win = (rr >= 0) & (cc >= 0) & (rr < ny) & (cc < nx)
        if not win.any():
            continue
        key = -1 - i
        ex_pix[key] = ex.pixels
        ex_rows.append(
            {
                "key": key, "level_m": ex.level_m, **{f"v{j}": ex.volume_m3 for j in range(m)},
                **{f"a{j}": np.nan for j in range(m)}, **{f"w{j}": 0.0 for j in range(m)},
                "best_height_m": np.nan, "water_rock": np.inf, "n_px": ex.pixels.size,
                "row": (rr + r_off).mean(), "col": (cc + c_off).mean(), "core": False,
                "existing": True, "name": ex.name, "outline_method": ex.method,
                # the window's part of the lake: its nearest pixel to an upper sets the distance
                "_ex_px": (rr[win] + r_off) * gx + cc[win] + c_off,
            }
        )  # fmt: skip
    cands = pd.concat([new, pd.DataFrame(ex_rows)], ignore_index=True) if ex_rows else new
    pairs = _pair(cands, transform, gx, p)
    used = set(pairs["upper_key"]) | set(pairs["lower_key"])
    cands = cands[cands["key"].isin(used)].drop(columns="_ex_px", errors="ignore")
    pixels = {k: (v, None) for k, v in ex_pix.items() if k in used}
    want = cands.loc[~cands["existing"].astype(bool), ["cand", "key"]]
    if len(want):
        lut = np.full(int(mc.max()) + 1 if mc.size else 1, -1, np.int64)
        lut[want["cand"].to_numpy().astype(np.int64)] = np.arange(len(want))
        g = lut[mc]
        msk = g >= 0
        order = np.argsort(g[msk], kind="stable")
        qq, dd = mq[msk][order], dz[msk][order]
        rr, cc = np.divmod(qq, nx)
        gidx = (rr + r_off) * gx + cc + c_off
        splits = np.cumsum(np.bincount(g[msk], minlength=len(want)))[:-1]
        vneed = _largest_pair_volume(pairs)
        itype = np.int32 if gshape[0] * gx < 2**31 else np.int64
        zfw = np.asarray(zf).ravel()
        for key, pix, d, q in zip(
            want["key"],
            np.split(gidx, splits),
            np.split(dd, splits),
            np.split(qq, splits),
            strict=True,
        ):
            pixels[int(key)] = _pixel_set(pix, d, zfw[q], vneed[int(key)], res * res, itype)
    return {"pairs": pairs, "reservoirs": cands, "pixels": pixels}


def _window_task(z, excl, zf, code, ppm, win, core, existing, *, gshape, transform, p):
    """Dask task: search one window given its DEM, exclusion, filled DEM, D8 codes and dam
    sites (``win`` (r0, r1, c0, c1) global)."""
    w0, w1, v0, v1 = win
    recv = receivers_from_codes(code, (0, 0), code.shape)  # within the window
    return _search_window(z, zf, recv, ppm, excl, (w0, v0), core, gshape, transform, p, existing)


def _read_window_task(win, core, existing, *, search, reader, names):
    """Dask task: read window ``win`` of the five staged inputs (``names``: DEM, exclusion,
    filled DEM, D8 codes, dam sites) with ``reader`` and search it (``search``)."""
    return search(*(reader(n, tuple(win)) for n in names), win, core, existing)


#: uppers paired per block in :func:`_pair`: each block's pairs are sized and cut to their
#: best lowers before the next, so a window holds one block's candidate pairs (at 30 m a
#: window has tens of thousands of candidates and ~200 B per candidate pair)
PAIR_BLOCK = 1024


def _pair(
    c: pd.DataFrame, t: Affine, gx: int, p: PumpedStorageParams, block: int | None = None
) -> pd.DataFrame:
    """Vectorised pairing of upper candidates (in core) with every lower candidate.

    Separation: centroid to centroid between new reservoirs; from the upper's centroid to the
    nearest pixel of an existing reservoir (ANU: the closest point of its shape). Uppers are
    paired ``block`` at a time and each block's pairs sized and cut to their
    ``max_lowers_per_upper`` best at once; a new upper's pairs with existing lowers come last
    and the cut is made again over all, so the result does not depend on ``block``
    (default :data:`PAIR_BLOCK`).
    """
    block = block or PAIR_BLOCK
    c = c.reset_index(drop=True)
    iu = np.flatnonzero(c["core"].to_numpy(bool))
    if not iu.size or len(c) < 2:
        return pd.DataFrame(columns=["upper_key", "lower_key"])
    xy = np.column_stack([t.c + t.a * (c["col"] + 0.5), t.f + t.e * (c["row"] + 0.5)])
    lev = c["level_m"].to_numpy(float)
    ex = c["existing"].to_numpy(bool)
    maxd = p.max_separation_km * 1000.0
    tree = cKDTree(xy[~ex])
    new_idx = np.flatnonzero(~ex)
    curves = _curves(c, p)
    keys = c["key"].to_numpy()

    def keep(i, j, sep):  # head window and slope (ANU 1:20), filtered block by block
        sep = np.maximum(sep, abs(t.a))
        head = lev[i] - lev[j]
        ok = (i != j) & (head >= p.min_head_m) & (head <= p.max_head_m)
        ok &= head >= p.min_slope * sep
        return i[ok], j[ok], sep[ok], head[ok]

    def sized(i, j, sep, head) -> pd.DataFrame:
        """The pairs sized, unclassed ones dropped, each new upper's best lowers kept."""
        out = size_pairs(head, sep / 1000.0, i, j, curves, p)
        out.insert(0, "upper_key", keys[i])
        out.insert(1, "lower_key", keys[j])
        out.insert(2, "head_m", head)
        out.insert(3, "separation_km", sep / 1000.0)
        out.insert(4, "slope", head / sep)
        return best_lowers(out[out["class_index"] >= 0])

    def best_lowers(out: pd.DataFrame) -> pd.DataFrame:
        """Each new upper's ``max_lowers_per_upper`` cheapest pairs (an existing upper's pairs
        are owned by their lowers' windows), by upper, cost and lower."""
        out = out.sort_values(["upper_key", "rel_cost", "lower_key"], kind="stable")
        rank = out.groupby("upper_key").cumcount()
        return out[(rank < p.max_lowers_per_upper) | (out["upper_key"] < 0)]

    none = (np.zeros(0, np.int64),) * 2 + (np.zeros(0),) * 2
    parts = [sized(*none)]
    for b in range(0, iu.size, block):  # blocks of uppers bound the memory
        blk = iu[b : b + block]
        d = cKDTree(xy[blk]).sparse_distance_matrix(tree, maxd, output_type="ndarray")
        parts.append(sized(*keep(blk[d["i"]], new_idx[d["j"]], d["v"])))
        del d
    if ex.any():  # nearest lake pixel of each existing reservoir
        px = [np.asarray(v) for v in c.loc[ex, "_ex_px"]]
        owner = np.repeat(np.flatnonzero(ex), [v.size for v in px])
        r, col = np.divmod(np.concatenate(px), gx)
        exy = np.column_stack([t.c + t.a * (col + 0.5), t.f + t.e * (r + 0.5)])
        d = cKDTree(xy[iu]).sparse_distance_matrix(cKDTree(exy), maxd, output_type="ndarray")
        if d.size:
            f = pd.DataFrame({"i": iu[d["i"]], "j": owner[d["j"]], "v": d["v"]})
            f = f.groupby(["i", "j"], sort=True)["v"].min().reset_index()
            fi, fj, fv = f["i"].to_numpy(), f["j"].to_numpy(), f["v"].to_numpy()
            parts.append(sized(*keep(fi, fj, fv)))  # new upper above an existing lower
            parts.append(sized(*keep(fj, fi, fv)))  # existing upper above a new lower
    out = pd.concat([x for x in parts if len(x)] or parts[:1], ignore_index=True)
    return best_lowers(out).reset_index(drop=True)  # again over all: lakes' pairs came last


# -- public API ------------------------------------------------------------------------------
def _inputs(dem, exclusion, grid: Grid, params: PumpedStorageParams | None):
    p = params or PumpedStorageParams()
    p.check()
    if tuple(dem.shape) != tuple(grid.shape) or tuple(exclusion.shape) != tuple(grid.shape):
        raise InputError(
            f"pumped storage: DEM {tuple(dem.shape)} and exclusion {tuple(exclusion.shape)} must "
            f"both have the grid's shape {tuple(grid.shape)}; open them through the catalogue "
            "(Catalog.raster(id, grid)) or reproject them with rioxarray's reproject_match first"
        )
    return p


def find_pairs_numpy(
    dem: Any,
    exclusion: Any,
    grid: Grid,
    params: PumpedStorageParams | None = None,
    existing: gpd.GeoDataFrame | None = None,
    zones: gpd.GeoDataFrame | None = None,
    zone_field: str = "name_en",
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Eager, unchunked pumped-storage search (reads its inputs into memory).

    Parameters
    ----------
    dem : array-like (rows, cols)
        Elevation [m] on ``grid`` (NaN = nodata).
    exclusion : array-like of bool
        True where nothing may be built (hard constraints).
    grid : Grid
        The metric study grid.
    params : PumpedStorageParams, optional
    existing : GeoDataFrame, optional
        Existing reservoirs usable as lower or upper reservoirs (:func:`sitekit.science.reservoirs.flood`):
        ``water_level_m`` (normal pool level [m]; rows without one are not used), optional
        ``name``, ``volume_gl`` (capacity [GL], default ample); points (dams: flooded on the
        DEM to the pool level) or polygons (real lake outlines).
    zones : GeoDataFrame, optional
        Polygons whose ``zone_field`` is written to a ``prefecture`` column.

    Returns
    -------
    (reservoirs, pairs) : GeoDataFrames in the grid CRS — ``ps_reservoirs`` polygons and
    ``ps_pairs`` lines between reservoir centroids (columns: module constants
    ``RESERVOIR_COLUMNS`` and ``PAIR_COLUMNS``).

    References
    ----------
    Stocks et al. (2021), Joule 5(1) 270–284; Lu et al. (2018), Applied Energy 222, 300–312.
    """
    p = _inputs(dem, exclusion, grid, params)
    ny, nx = grid.shape
    z = np.asarray(dem, dtype=np.float64)
    mask = np.asarray(exclusion, dtype=bool)
    hyd = hydrology(z, grid.resolution_m, p)
    ex = _flood_task(existing, hyd, grid, p.existing_radius_km, p.existing_reach_km)
    r = _search_window(z, *hyd, mask, (0, 0), (0, ny, 0, nx), (ny, nx), grid.transform, p, ex)
    return _select([r], grid, p, zones, zone_field)


#: name prefix of the arrays :func:`find_pairs` stages (``stage``)
STAGED = "_ps_search_"


def find_pairs(
    dem: Any,
    exclusion: Any,
    grid: Grid,
    params: PumpedStorageParams | None = None,
    existing: gpd.GeoDataFrame | None = None,
    zones: gpd.GeoDataFrame | None = None,
    zone_field: str = "name_en",
    stage: Callable[[dict[str, da.Array], str], dict[str, da.Array]] | None = None,
) -> Any:
    """Lazy, chunk-parallel pumped-storage search: a ``dask.delayed`` of (reservoirs, pairs).

    Each dask chunk of ``dem`` is searched in a window grown by
    :meth:`PumpedStorageParams.halo` pixels; pairs are kept by the chunk holding their upper
    reservoir's pour point and the final non-overlapping selection runs once over all chunks,
    so the result equals :func:`find_pairs_numpy`. Parameters and result as there.

    ``stage(arrays, label)``, when given, computes named dask arrays onto disk now and returns
    them read back lazily (e.g. :func:`sitekit.engine.cluster.persist`'s Zarr stage): the DEM
    and exclusion in the search's tiles are staged, then the filled DEM, then the D8 codes and
    dam sites, each pass reading its inputs again from disk, so the search windows start with
    nothing of the study area in memory (at 30 m the in-memory hydrology held ~10 GiB while
    the windows ran). The result is the same. A ``stage`` with a ``window_reader``
    (``reader(name, (r0, r1, c0, c1))`` → numpy, picklable;
    :class:`sitekit.engine.layerstore.Stage`) has each window task read its own five inputs
    from what was staged, instead of sharing dask chunks with its neighbours: shared chunks were
    read far ahead of the windows that needed them and waited in memory (~5 GiB at 30 m).
    """
    p = _inputs(dem, exclusion, grid, params)
    ny, nx = grid.shape

    def _dask(a, dtype):
        a = getattr(a, "data", a)
        if not isinstance(a, da.Array):
            a = da.from_array(np.asarray(a, dtype=dtype), chunks=grid.dask_chunks)
        return a

    z, mask = _dask(dem, np.float32), _dask(exclusion, bool)
    # the hydrology is tiled end to end: depressions filled chunk by chunk (Barnes 2016), D8
    # routing, flats and accumulation chunk by chunk with two sparse global steps (Barnes 2017);
    # each later task reads only its window of the filled DEM, the D8 codes and the dam sites
    mask = mask.rechunk(z.chunks)
    reread = stage is not None
    # the staged arrays' names, in the order a window reads them (DEM, exclusion, filled DEM,
    # D8 codes, dam sites)
    staged = [f"{STAGED}{n}" for n in ("dem", "excluded", "filled", "d8", "dam_sites")]
    s_dem, s_excl, s_filled, s_d8, s_sites = staged
    if stage is not None:  # the inputs in the search's tiles, as plain reads of the disk
        got = stage({s_dem: z, s_excl: mask}, "pumped-storage search: inputs")
        z, mask = got[s_dem], got[s_excl]
    zf = fill_depressions_tiled(z, reread)
    if stage is not None:
        zf = stage({s_filled: zf}, "pumped-storage search: depressions filled")[s_filled]
    code, ppm = dam_sites_tiled(zf, p.contour_interval_m, p.steps(grid.resolution_m)[2], reread)
    if stage is not None:
        got = stage({s_d8: code, s_sites: ppm}, "pumped-storage search: flow routed")
        code, ppm = got[s_d8], got[s_sites]
    # one layer of window tasks naming the chunks they read (rawgraph): passed to
    # dask.delayed, each window's slices would be optimised separately and the filled DEM
    # recomputed for every window that reads it
    tok = tokenize(z, mask, zf, code, ppm, p, grid, existing, zones, zone_field)
    lay, ex_key, sel_key = f"ps-search-{tok}", f"ps-existing-{tok}", f"ps-select-{tok}"
    tasks: dict = {}
    floods = []
    for n, item in enumerate(rsv.plan(existing, grid, p.existing_radius_km, p.existing_reach_km)):
        if "done" in item:
            floods.append(item["done"])
            continue
        r0, r1, c0, c1 = b = item["box"]
        key = (f"ps-flood-{tok}", n)
        flood = partial(_flood_point_task, item=item, gshape=grid.shape, res=grid.resolution_m)
        tasks[key] = (flood, rawgraph.window_task(zf, b), rawgraph.window_task(code, b))
        floods.append(key)
    tasks[ex_key] = (_flooded_list, floods)
    h = p.halo(grid.resolution_m)
    rb = np.cumsum((0, *z.chunks[0]))
    cb = np.cumsum((0, *z.chunks[1]))
    search = partial(_window_task, gshape=(ny, nx), transform=grid.transform, p=p)
    reader = getattr(stage, "window_reader", None)
    parts = []
    for r0, r1 in zip(rb[:-1], rb[1:], strict=True):
        for c0, c1 in zip(cb[:-1], cb[1:], strict=True):
            w0, w1 = max(0, r0 - h), min(ny, r1 + h)
            v0, v1 = max(0, c0 - h), min(nx, c1 + h)
            win = (int(w0), int(w1), int(v0), int(v1))
            key = (f"ps-window-{tok}", len(parts))
            core = [int(r0), int(r1), int(c0), int(c1)]
            if reader is not None:  # the window reads its own inputs: no chunk held between
                tasks[key] = (partial(_read_window_task, search=search, reader=reader,
                                      names=staged), list(win), core, ex_key)  # fmt: skip
            else:
                tasks[key] = (
                    search, *(rawgraph.window_task(a, win) for a in (z, mask, zf, code, ppm)),
                    list(win), core, ex_key,
                )  # fmt: skip
            parts.append(key)
    tasks[sel_key] = (partial(_select, grid=grid, p=p, zones=zones, zone_field=zone_field), parts)
    read = [zf, code] if reader is not None else [z, mask, zf, code, ppm]  # chunk keys used
    on = set().union(*(rawgraph.layer_of(a) for a in read))
    hlg = rawgraph.graph(read, {lay: (tasks, on)})
    return Delayed(sel_key, hlg, layer=lay)


def _flood_task(existing, hyd, grid, radius_km, reach_km):
    """Flood the existing reservoirs on the global filled DEM (the unchunked search)."""
    return rsv.flood(existing, hyd[0], hyd[1], grid, radius_km, reach_km)


def _flood_point_task(zf, code, *, item, gshape, res):
    """Dask task: flood one existing dam point from its window of the filled DEM and codes."""
    recv = receivers_from_codes(code, (0, 0), code.shape)
    return rsv.flood_point(item, np.asarray(zf), recv, gshape, res)


def _flooded_list(floods):
    """The existing reservoirs in table order (dams whose window has no DEM dropped)."""
    return [f for f in floods if f is not None]


def params_from_recipe(recipe: Any) -> PumpedStorageParams:
    """:class:`PumpedStorageParams` from a validated ``PumpedStorageRecipe``."""
    s = recipe.search
    kw: dict[str, Any] = dict(
        dam_heights_m=tuple(float(h) for h in s.dam_heights_m), min_head_m=s.min_head_m,
        max_head_m=s.max_head_m, max_separation_km=s.max_separation_km, min_slope=s.min_slope,
        generation_efficiency=s.generation_efficiency, usable_fraction=s.usable_fraction,
        classes=tuple((float(e), float(h)) for e, h in s.classes),
        max_power_mw=s.max_power_mw, min_volume_gl=s.min_volume_gl,
        min_water_rock=s.min_water_rock, min_pair_water_rock=s.min_pair_water_rock,
        max_pairs=s.max_pairs,
    )  # fmt: skip
    if recipe.existing_reservoirs:
        kw["existing_reach_km"] = recipe.existing_reservoirs.reach_km
    return PumpedStorageParams(**kw)


def existing_from_layer(gdf: gpd.GeoDataFrame, spec: Any) -> gpd.GeoDataFrame:
    """The recipe's existing-reservoir layer renamed to the columns :func:`sitekit.science.reservoirs.flood`
    reads (``name``, ``water_level_m``, ``volume_gl``); rows without a pool level dropped."""
    cols = {spec.name_field: "name", spec.level_field: "water_level_m"}
    if spec.volume_field and spec.volume_field in gdf.columns:
        cols[spec.volume_field] = "volume_gl"
    missing = [c for c in cols if c not in gdf.columns]
    if missing:
        raise InputError(
            f"existing_reservoirs: layer {spec.layer!r} has no column(s) {missing}; set "
            "name_field / level_field in the recipe's existing_reservoirs"
        )
    out = gdf.rename(columns=cols)[[*cols.values(), "geometry"]].copy()
    for c in ("water_level_m", "volume_gl"):
        if c in out.columns:
            out[c] = pd.to_numeric(out[c], errors="coerce")
    return out[np.isfinite(out["water_level_m"])].reset_index(drop=True)
