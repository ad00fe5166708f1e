"""Technical potential per admin unit over ALL eligible land (not the top-N site lists).

Per prefecture and county and per technology: study area [km²], the area each exclusion reason
removes and the area all reasons remove together (overlaps counted once), the eligible area
(Σ inclusion fraction × pixel area), the capacity at the recipe's power density [MW], the annual
energy [GWh/yr] and the mean capacity factor — "if alone" and "after competition" (one
technology per hectare, :mod:`sitekit.science.competition`).

This is the *technical potential* in the sense of NREL's reV (Maclaurin et al. 2021, *The
Renewable Energy Potential (reV) Model*, NREL/TP-6A20-73067: capacity = available area after
exclusions × power density; generation = capacity × capacity factor × 8,760 h) and of Lopez et
al. 2012, *U.S. Renewable Energy Technical Potentials*, NREL/TP-6A20-51946. It ignores economics
and grid capacity: see :mod:`sitekit.science.supply` for costs and :mod:`sitekit.science.hosting` for the grid.

The sums run on the Dask workers block by block (:func:`block_sums`: one ``bincount`` per
quantity over the (prefecture, county) pair of every pixel; only the per-zone sums travel), as
:func:`sitekit.science.sites.zone_areas` does. Each pixel belongs to the zone holding its centre, so
county rows add up to their prefecture exactly and all rows to the study area.

Area removed by one reason: Σ study fraction × pixel area over the pixels whose reason bit is
set (``exclusion_reasons``; a fraction-rule constraint sets its bit where it covers ≥ 50 % of a
pixel) and that lose some eligible land (a forced-inclusion zone can lift a reason; its own bit
is reported as ``forced_<id>_km2``, the area it keeps eligible). Area removed by all reasons together: Σ (study fraction − inclusion fraction) × pixel
area, exact for fraction-rule layers. Per-reason areas overlap, so they add up to more than the
union whenever two reasons cover the same land.

References: Maclaurin et al. 2021 (NREL/TP-6A20-73067); Lopez et al. 2012 (NREL/TP-6A20-51946).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numba
import numpy as np

#: names of the rows of pixels whose centre lies in no prefecture / no county
NO_PREFECTURE = "(edge pixels, centre in no prefecture)"
NO_COUNTY = "(centre in no county)"
#: quantities summed per zone by :func:`block_sums`, in row order (then one row per reason bit)
QUANTITIES = (
    "study",  # Σ study fraction [px]
    "excluded",  # Σ (study fraction − inclusion alone), ≥ 0 [px]
    "eligible",  # Σ inclusion alone [px]
    "mw",  # Σ inclusion alone × density [MW/km² · px]
    "mwh",  # Σ inclusion alone × density × energy [MW/km² · kWh/kW · px]
    "eligible_after",  # Σ inclusion after competition [px]
    "mw_after",  # Σ capacity density after competition [MW/km² · px]
    "mwh_after",  # Σ capacity density after competition × energy
    "shared",  # Σ inclusion on land shared with the other technology [px]
    "no_data",  # Σ (study − inclusion) where no reason bit is set: a scored layer has no data
)


@numba.njit(cache=True, nogil=True)
def _sums_kernel(  # pragma: no cover - numba
    z, sf, r, inc, inc_a, cap_a, sh, e, dens, n_bits, forced_bits, out
):
    """One pass over a block's pixels: the rows of :func:`block_sums_reference` in ``out``."""
    nq = 10
    for i in range(z.size):
        k = z[i]
        s = np.float64(sf[i])
        a = np.float64(inc[i])
        b = np.float64(inc_a[i])
        c = np.float64(cap_a[i])
        en = np.float64(e[i])
        s = 0.0 if s != s else s  # NaN counts as 0
        a = 0.0 if a != a else a
        b = 0.0 if b != b else b
        c = 0.0 if c != c else c
        en = 0.0 if en != en else en
        out[0, k] += s
        out[1, k] += max(s - a, 0.0)
        out[2, k] += a
        out[3, k] += a * dens
        out[4, k] += a * dens * en
        out[5, k] += b
        out[6, k] += c
        out[7, k] += c * en
        if sh[i]:
            out[8, k] += b
        bits = r[i]
        if bits == 0 and a < s - 1e-6:
            out[9, k] += s - a
        if bits:
            removed = s if a < s - 1e-6 else 0.0
            for j in range(n_bits):
                if (bits >> j) & 1:
                    out[nq + j, k] += s if (forced_bits >> j) & 1 else removed


def block_sums(
    pref: np.ndarray,
    county: np.ndarray,
    study: np.ndarray,
    reasons: np.ndarray,
    incl: np.ndarray,
    incl_after: np.ndarray,
    cap_after: np.ndarray,
    shared: np.ndarray,
    energy: np.ndarray,
    density_mw_per_km2: float,
    n_county: int,
    n_zones: int,
    n_bits: int,
    forced_bits: int = 0,
) -> np.ndarray:
    """:func:`block_sums_reference` in one numba pass (no per-quantity temporaries): the
    per-zone sums of one block, run on a worker."""
    z = (np.asarray(pref, np.int64) * (n_county + 1) + np.asarray(county, np.int64)).ravel()
    if z.size and not 0 <= z.min() <= z.max() < n_zones:
        raise ValueError(f"zone ids outside 0..{n_zones - 1}")
    out = np.zeros((len(QUANTITIES) + n_bits, n_zones))
    flat = [np.ascontiguousarray(a).ravel() for a in (study, incl, incl_after, cap_after, energy)]
    sf, inc, inc_a, cap_a, e = flat
    sh = np.ascontiguousarray(shared, dtype=bool).ravel()
    r = np.ascontiguousarray(reasons, dtype=np.uint32).ravel()
    _sums_kernel(z, sf, r, inc, inc_a, cap_a, sh, e, float(density_mw_per_km2), n_bits,
                 int(forced_bits), out)  # fmt: skip
    return out


def block_sums_reference(
    pref: np.ndarray,
    county: np.ndarray,
    study: np.ndarray,
    reasons: np.ndarray,
    incl: np.ndarray,
    incl_after: np.ndarray,
    cap_after: np.ndarray,
    shared: np.ndarray,
    energy: np.ndarray,
    density_mw_per_km2: float,
    n_county: int,
    n_zones: int,
    n_bits: int,
    forced_bits: int = 0,
) -> np.ndarray:
    """Per-zone sums of one block, in NumPy (the reference for :func:`block_sums`).

    The zone of a pixel is ``pref × (n_county + 1) + county`` (ids 0 = none). Returns float64
    ``(len(QUANTITIES) + n_bits, n_zones)``: the :data:`QUANTITIES` rows, then Σ study fraction
    over the pixels with each reason bit set that lose eligible land (for the ``forced_bits``:
    all pixels with the bit) [px]. NaN counts as 0.
    """
    z = (np.asarray(pref, np.int64) * (n_county + 1) + np.asarray(county, np.int64)).ravel()
    if z.size and not 0 <= z.min() <= z.max() < n_zones:
        raise ValueError(f"zone ids outside 0..{n_zones - 1}")
    f64 = np.float64
    sf = np.nan_to_num(np.asarray(study, f64)).ravel()
    inc = np.nan_to_num(np.asarray(incl, f64)).ravel()
    inc_a = np.nan_to_num(np.asarray(incl_after, f64)).ravel()
    cap_a = np.nan_to_num(np.asarray(cap_after, f64)).ravel()
    e = np.nan_to_num(np.asarray(energy, f64)).ravel()
    sh = np.asarray(shared, bool).ravel()
    r = np.asarray(reasons, np.uint32).ravel()
    cols = [
        sf,
        np.clip(sf - inc, 0.0, None),
        inc,
        inc * density_mw_per_km2,
        inc * density_mw_per_km2 * e,
        inc_a,
        cap_a,
        cap_a * e,
        np.where(sh, inc_a, 0.0),
        np.where((r == 0) & (inc < sf - 1e-6), sf - inc, 0.0),
    ]
    removed = np.where(inc < sf - 1e-6, sf, 0.0)  # a forced-inclusion zone may lift a reason
    cols += [
        np.where((r >> np.uint32(b)) & np.uint32(1), sf if forced_bits >> b & 1 else removed, 0.0)
        for b in range(n_bits)
    ]
    return np.stack([np.bincount(z, c, minlength=n_zones) for c in cols])


def zone_totals(
    *,
    prefecture_id: Any,
    county_id: Any,
    study_fraction: Any,
    reasons: Any,
    inclusion: Any,
    inclusion_after: Any,
    capacity_after_mw_per_km2: Any,
    shared: Any,
    energy_kwh_per_kw: Any,
    density_mw_per_km2: float,
    n_prefectures: int,
    n_counties: int,
    n_bits: int,
    forced_bits: int = 0,
    compute: bool = True,
) -> Any:
    """:func:`block_sums` over the whole grid: dask layers block by block on the workers (only
    the per-zone sums travel), NumPy layers in one call. Returns the summed array [px units]
    (with ``compute=False`` and dask layers: the list of per-block delayed sums, to compute
    together with others and add up)."""
    layers = [
        prefecture_id,
        county_id,
        study_fraction,
        reasons,
        inclusion,
        inclusion_after,
        capacity_after_mw_per_km2,
        shared,
        energy_kwh_per_kw,
    ]
    layers = [getattr(a, "data", a) if hasattr(a, "dims") else a for a in layers]
    n_zones = (n_prefectures + 1) * (n_counties + 1)
    args = (density_mw_per_km2, n_counties, n_zones, n_bits, forced_bits)
    lazy = next((a for a in layers if hasattr(a, "to_delayed")), None)
    if lazy is None:
        return block_sums(*(np.asarray(a) for a in layers), *args)
    import dask
    import dask.array as da

    chunks = lazy.chunks
    blocks = [
        (a if isinstance(a, da.Array) else da.from_array(np.asarray(a), chunks=chunks))
        .rechunk(chunks)
        .to_delayed()
        .ravel()
        for a in layers
    ]
    parts = [dask.delayed(block_sums, pure=True)(*bs, *args) for bs in zip(*blocks, strict=True)]
    if not compute:
        return parts
    return np.sum(dask.compute(*parts), axis=0)


def potential_table(
    sums: dict[str, np.ndarray],
    *,
    pixel_area_km2: float,
    prefecture_names: Sequence[str],
    county_names: Sequence[str],
    reason_codes: dict[str, Sequence[str]],
) -> Any:
    """Technical potential rows from :func:`zone_totals` per technology.

    Parameters
    ----------
    sums : ``{technology: zone_totals(...)}``.
    pixel_area_km2 : pixel area [km²].
    prefecture_names, county_names : the 1-based zone names.
    reason_codes : ``{technology: constraint code per reason bit}``.

    Returns a DataFrame, one row per (level, prefecture, county, technology) with ``level`` =
    "study_area" | "prefecture" | "county": study_km2, excluded_km2 (all reasons, overlaps once),
    ``excluded_<code>_km2`` per reason, eligible_km2, technical_potential_mw, technical_potential_gwh,
    mean_cf (alone), and the same after competition (``*_after_competition``), shared_km2.
    Pixels whose centre lies in no county are named :data:`NO_COUNTY`, in no prefecture
    :data:`NO_PREFECTURE` (edge pixels of the study area: their share of it is kept, so all rows
    add up to the study area).
    """
    import pandas as pd

    pa = pixel_area_km2
    nc = len(county_names)
    pnames = [NO_PREFECTURE, *prefecture_names]
    cnames = [NO_COUNTY, *county_names]
    rows: list[dict[str, Any]] = []
    for tech, s in sums.items():
        q = {k: s[i] for i, k in enumerate(QUANTITIES)}
        bits = s[len(QUANTITIES) :]
        codes = list(reason_codes.get(tech, []))

        def row(level: str, pref: str, county: str, idx: Any, _q=q, _b=bits, _c=codes, _t=tech):
            v = {k: float(np.sum(a[idx])) for k, a in _q.items()}
            mw, mwh = v["mw"] * pa, v["mwh"] * pa
            mw_a, mwh_a = v["mw_after"] * pa, v["mwh_after"] * pa
            out = {
                "level": level,
                "prefecture": pref,
                "county": county,
                "technology": _t,
                "study_km2": v["study"] * pa,
                "excluded_km2": v["excluded"] * pa,
            }
            for j, c in enumerate(_c):
                name = f"{c}_km2" if c.startswith("forced_") else f"excluded_{c}_km2"
                out[name] = float(np.sum(_b[j][idx])) * pa
            # no reason bit, yet not eligible: a scored raster has no data there (allow_gaps,
            # or the study area's edge beyond a raster's last pixel)
            out["excluded_no_data_km2"] = v["no_data"] * pa
            out.update(
                {
                    "eligible_km2": v["eligible"] * pa,
                    "technical_potential_mw": mw,
                    "technical_potential_gwh": mwh / 1000.0,
                    "mean_cf": mwh / (mw * 8760.0) if mw > 0 else float("nan"),
                    "eligible_km2_after_competition": v["eligible_after"] * pa,
                    "technical_potential_mw_after_competition": mw_a,
                    "technical_potential_gwh_after_competition": mwh_a / 1000.0,
                    "mean_cf_after_competition": (
                        mwh_a / (mw_a * 8760.0) if mw_a > 0 else float("nan")
                    ),
                    "shared_km2": v["shared"] * pa,
                }
            )
            rows.append(out)

        zones = np.arange(s.shape[1])
        pref_of = zones // (nc + 1)
        row("study_area", "", "", slice(None))
        for p in range(len(pnames)):
            in_p = pref_of == p
            if p == 0 and not q["study"][in_p].sum() > 0:
                continue
            row("prefecture", pnames[p], "", in_p)
            for c in range(nc + 1):
                zid = p * (nc + 1) + c
                if q["study"][zid] > 0 and (nc or c):
                    row("county", pnames[p], cnames[c], zid)
    df = pd.DataFrame(rows)
    num = df.select_dtypes("number").columns
    df[num] = df[num].round(4)
    return df
