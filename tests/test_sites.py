"""Site extraction: known best site ranks first, area bookkeeping, splitting, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sitekit.science.sites import SiteRules, connection_cost_cny_per_kw, extract_sites, label_sites
from sitekit.specs.recipe import Economics
from sitekit.testing import small_grid

ECON = Economics(
    capex_cny_per_kw=3600,
    fixed_om_cny_per_kw_yr=50,
    wacc=0.06,
    lifetime_yr=25,
    connection_cny_per_km={110: 800000, 220: 1500000},
    connection_bay_cny={110: 0, 220: 0},
    voltage_by_capacity_mw={110: 100, 220: 100000},
)


def _landscape(n: int = 40):
    """Three square blocks of eligible land with different yields and grid distances."""
    grid = small_grid((n, n), 100.0, chunks=16)  # 0.01 km² pixels
    score = np.zeros((n, n), np.float32)
    energy = np.full((n, n), 1300.0, np.float32)
    dist = np.full((n, n), 50.0, np.float32)
    # block A: best yield, near the grid
    score[2:12, 2:12] = 0.9
    energy[2:12, 2:12] = 1800.0
    dist[2:12, 2:12] = 2.0
    # block B: good yield, far
    score[20:30, 2:12] = 0.8
    energy[20:30, 2:12] = 1700.0
    dist[20:30, 2:12] = 40.0
    # block C: mediocre
    score[2:12, 25:35] = 0.7
    energy[2:12, 25:35] = 1400.0
    dist[2:12, 25:35] = 10.0
    zone = np.ones((n, n), np.int32)
    zone[:, n // 2 :] = 2
    return grid, score, energy, dist, zone


def _extract(grid, score, energy, dist, zone, inclusion=None, rules=None):
    n = grid.shape[0]
    return extract_sites(
        grid,
        score=score,
        inclusion=np.ones_like(score) if inclusion is None else inclusion,
        energy_kwh_per_kw=energy,
        grid_distance_km=dist,
        connection_distance_km=dist,
        nearest_point=np.zeros((n, n), np.int64),
        point_names=["Sub A"],
        prefecture_id=zone,
        prefecture_names=["West", "East"],
        county_id=zone,
        county_names=["W county", "E county"],
        rules=rules or SiteRules(0.5, 0.2, 5.0, 40.0),
        economics=ECON,
    )


CRF = 0.06 * 1.06**25 / (1.06**25 - 1)  # 0.0782267 /yr


def _hand_lcoe(energy_kwh_per_kw: float, dist_km: float, mw: float = 40.0) -> float:
    """LCOE of a landscape block by hand: 110 kV line at 800,000 CNY/km, no bay, no
    degradation; connection [CNY/kW] = km × CNY/km ÷ (MW × 1000 kW/MW)."""
    conn = dist_km * 800000 / (mw * 1000)
    return ((3600 + conn) * CRF + 50) / energy_kwh_per_kw


def test_known_best_site_ranks_first() -> None:
    sites, labels = _extract(*_landscape())
    assert len(sites) == 3
    best = sites.iloc[0]
    assert best["rank"] == 1
    assert best["area_km2"] == pytest.approx(1.0)  # 10×10 pixels of 0.01 km²
    assert best["capacity_mw"] == pytest.approx(40.0)
    assert best["energy_gwh"] == pytest.approx(40.0 * 1800 / 1000)
    assert best["prefecture"] == "West" and best["grid_point_name"] == "Sub A"
    # block C (east) is in the East prefecture
    assert set(sites["prefecture"]) == {"West", "East"}
    # hand LCOE: A (1800 kWh/kW, 2 km) 0.1858 < B (1700, 40 km) 0.2319 < C (1400, 10 km) 0.2480
    by_energy = sites.set_index("energy_gwh")
    for e, km, rank in ((1800, 2.0, 1), (1700, 40.0, 2), (1400, 10.0, 3)):
        row = by_energy.loc[40.0 * e / 1000]
        assert row["rank"] == rank
        assert row["lcoe_cny_per_kwh"] == pytest.approx(_hand_lcoe(e, km), abs=6e-5)
    assert sites.crs is not None and labels.max() >= 3


def test_connection_cost_is_booked_per_kw() -> None:
    # 10 km of 110 kV line (800,000 CNY/km) for a 50 MW site: 8 M CNY / 50,000 kW = 160 CNY/kW
    cost, kv = connection_cost_cny_per_kw(np.array([10.0]), np.array([50.0]), ECON)
    assert cost[0] == pytest.approx(160.0) and kv[0] == 110
    econ = ECON.model_copy(update={"connection_bay_cny": {110: 5e6, 220: 2e7}})
    cost, kv = connection_cost_cny_per_kw(np.array([10.0]), np.array([150.0]), econ)
    assert cost[0] == pytest.approx((10 * 1.5e6 + 2e7) / 150e3) and kv[0] == 220


def test_site_tables_keep_their_invariants() -> None:
    from sitekit.science.supply import check_sites

    sites, _ = _extract(*_landscape())
    assert check_sites(sites) == []  # CF ≤ 1, energy = MW × CF × 8.76, LCOE within bounds
    assert sites["capacity_factor"].tolist() == pytest.approx(
        [1800 / 8760, 1700 / 8760, 1400 / 8760], abs=1e-4
    )


def test_area_bookkeeping_uses_inclusion_fraction() -> None:
    grid, score, energy, dist, zone = _landscape()
    incl = np.ones_like(score)
    incl[2:12, 2:7] = 0.5  # half of block A's left half is excluded by a fraction-rule constraint
    sites, _ = _extract(grid, score, energy, dist, zone, inclusion=incl)
    a = sites.sort_values("capacity_factor", ascending=False).iloc[0]
    assert a["area_km2"] == pytest.approx(0.01 * (50 * 0.5 + 50))


def test_raising_yield_never_lowers_rank() -> None:
    grid, score, energy, dist, zone = _landscape()
    before, _ = _extract(grid, score, energy, dist, zone)
    assert before.set_index("prefecture").loc["East", "rank"] == 3  # C is last (LCOE 0.248)
    energy2 = energy.copy()
    energy2[2:12, 25:35] = 2500.0  # C's LCOE by hand: (3800 × CRF + 50) / 2500 = 0.1389
    after, _ = _extract(grid, score, energy2, dist, zone)
    c = after.set_index("prefecture").loc["East"]
    assert c["rank"] == 1
    assert c["lcoe_cny_per_kwh"] == pytest.approx(_hand_lcoe(2500, 10.0), abs=6e-5)
    # the others keep their order, one place down
    west = after[after["prefecture"] == "West"].sort_values("rank")
    assert west["rank"].tolist() == [2, 3] and west["energy_gwh"].tolist() == [72.0, 68.0]


def test_large_region_is_split_and_small_pieces_dropped() -> None:
    cand = np.zeros((60, 60), bool)
    cand[:, :] = True  # one 36 km² region at 0.01 km² pixels
    labels, n = label_sites(cand, 0.01, max_area_km2=4.0)  # lattice of 20×20 px cells
    assert n == 9
    sizes = np.bincount(labels.ravel())[1:]
    assert (sizes * 0.01 <= 4.0 + 1e-9).all()
    # small regions are kept whole even when they straddle a lattice line
    small = np.zeros((60, 60), bool)
    small[18:23, 18:23] = True
    labels, n = label_sites(small, 0.01, max_area_km2=4.0)
    assert n == 1


def _split_cell_by_cell(cand: np.ndarray, pa: float, max_area: float) -> np.ndarray:
    """Reference: label, then label every lattice cell of the big regions on its own."""
    from scipy import ndimage

    st = np.ones((3, 3), bool)
    pieces, n = ndimage.label(cand, structure=st)
    big = np.bincount(pieces.ravel(), minlength=n + 1) * pa > max_area
    big[0] = False
    split = big[pieces]
    pieces[split] = 0
    cell = int(np.floor(np.sqrt(max_area / pa)))
    for r0 in range(0, cand.shape[0], cell):
        for c0 in range(0, cand.shape[1], cell):
            lab, m = ndimage.label(split[r0 : r0 + cell, c0 : c0 + cell], structure=st)
            view = pieces[r0 : r0 + cell, c0 : c0 + cell]
            view[lab > 0] = lab[lab > 0] + n
            n += m
    return pieces


@pytest.mark.parametrize("shape", [(60, 60), (57, 83), (7, 130)])
def test_lattice_split_equals_labelling_each_cell(shape) -> None:
    """The band-wise split gives the pieces of labelling each lattice cell alone (the same
    partition of the pixels), numbered by first pixel."""
    rng = np.random.default_rng(sum(shape))
    cand = rng.random(shape) < 0.62  # near percolation: big tangled regions and small ones
    labels, n = label_sites(cand, 0.01, max_area_km2=1.44)  # 12×12 px cells
    want = _split_cell_by_cell(cand, 0.01, 1.44)
    assert n == len(np.unique(want)) - 1 > 10
    pairs = np.unique(np.stack([labels.ravel(), want.ravel()]), axis=1)
    assert pairs.shape[1] == n + 1  # one-to-one: the same pieces
    first = [np.flatnonzero(labels.ravel() == k)[0] for k in range(1, n + 1)]
    assert first == sorted(first)  # numbered by first pixel in row-major order


def test_deterministic() -> None:
    a, _ = _extract(*_landscape())
    b, _ = _extract(*_landscape())
    assert a.drop(columns="geometry").equals(b.drop(columns="geometry"))
    assert all(x.equals(y) for x, y in zip(a.geometry, b.geometry, strict=True))


def _rough(n: int = 64, seed: int = 7):
    """A noisy landscape: many regions of every size, zones that cut through them, NaN holes."""
    rng = np.random.default_rng(seed)
    grid = small_grid((n, n), 100.0, chunks=16)
    score = rng.random((n, n)).astype(np.float32)
    score[rng.random((n, n)) < 0.02] = np.nan
    energy = (1200 + 600 * rng.random((n, n))).astype(np.float32)
    dist = (50 * rng.random((n, n))).astype(np.float32)
    incl = np.where(rng.random((n, n)) < 0.3, 0.6, 1.0).astype(np.float32)
    zone = np.ones((n, n), np.int32)
    zone[:, n // 3 :] = 2
    zone[n // 2 :, :] = 3
    zone[:2] = 0  # outside every zone
    return grid, score, energy, dist, zone, incl


def _extract_rough(grid, score, energy, dist, zone, incl, near):
    return extract_sites(
        grid,
        score=score,
        inclusion=incl,
        energy_kwh_per_kw=energy,
        grid_distance_km=dist,
        connection_distance_km=dist * 1.3,
        nearest_point=near,
        point_names=["P0", "P1", "P2"],
        prefecture_id=zone,
        prefecture_names=["A", "B", "C"],
        county_id=zone,
        county_names=["a", "b", "c"],
        rules=SiteRules(0.35, 0.02, 0.5, 40.0),
        economics=ECON,
    )


def test_strips_and_dask_layers_give_the_whole_array_result(monkeypatch) -> None:
    """Reading the layers in strips (NumPy or dask) is bit-identical to one whole strip."""
    import dask.array as da

    import sitekit.science.sites as sites_mod

    grid, score, energy, dist, zone, incl = _rough()
    near = (np.arange(score.size).reshape(score.shape) % 3).astype(np.int32)
    args = (grid, score, energy, dist, zone, incl, near)
    monkeypatch.setattr(sites_mod, "STRIP_ROWS", 10_000)
    whole, lab_whole = _extract_rough(*args)
    assert len(whole) > 10 and whole["site_id"].is_unique
    monkeypatch.setattr(sites_mod, "STRIP_ROWS", 7)  # strips cut through sites
    strips, lab_strips = _extract_rough(*args)
    lazy, lab_lazy = _extract_rough(grid, *(da.from_array(a, chunks=(13, 64)) for a in args[1:]))
    # blocks of several columns, and layers chunked unlike the score (candidates are picked
    # block by block where the layers are, then put back in row-major order)
    mixed, lab_mixed = _extract_rough(
        grid,
        *(da.from_array(a, chunks=(13, 20) if i % 2 else (9, 17)) for i, a in enumerate(args[1:])),
    )
    monkeypatch.setattr(sites_mod, "READ_BUDGET_BYTES", 1)  # one round trip per strip
    tight, lab_tight = _extract_rough(grid, *(da.from_array(a, chunks=(13, 20)) for a in args[1:]))
    cases = ((strips, lab_strips), (lazy, lab_lazy), (mixed, lab_mixed), (tight, lab_tight))
    for other, lab in cases:
        np.testing.assert_array_equal(lab, lab_whole)
        pd.testing.assert_frame_equal(
            other.drop(columns="geometry"), whole.drop(columns="geometry")
        )
        assert all(a.equals(b) for a, b in zip(other.geometry, whole.geometry, strict=True))


def test_site_statistics_by_hand() -> None:
    """Per-site means, majority zone and nearest point against a direct per-label computation."""
    grid, score, energy, dist, zone, incl = _rough()
    near = (np.arange(score.size).reshape(score.shape) % 3).astype(np.int32)
    sites, labels = _extract_rough(grid, score, energy, dist, zone, incl, near)
    pa = grid.pixel_area_km2
    names = {1: "A", 2: "B", 3: "C"}
    for _, row in sites.iterrows():
        m = labels == int(row["site_id"][1:])
        w = np.where(m, incl, 0.0)
        assert row["area_km2"] == pytest.approx(w.sum() * pa, abs=1e-3)
        ok = m & np.isfinite(score)
        assert row["mean_score"] == pytest.approx(
            (score[ok] * incl[ok]).sum() / incl[ok].sum(), abs=1e-4
        )
        assert row["grid_distance_km"] == pytest.approx(dist[m].mean(), abs=1e-3)
        votes = np.bincount(zone[m & (zone > 0)], minlength=4)
        assert row["prefecture"] == names[int(np.argmax(votes))]  # lowest id on ties
        d = np.where(m, dist, np.inf).ravel()
        assert row["grid_point_name"] == f"P{near.ravel()[np.argmin(d)]}"
    # the geometry covers exactly the site's pixels
    s = sites.iloc[0]
    assert s.geometry.area / 1e6 == pytest.approx((labels == int(s["site_id"][1:])).sum() * pa)


def test_no_county_layer_and_unzoned_sites() -> None:
    """Without a county layer (all-zero ids) sites get an empty county; outside every
    prefecture they are dropped as boundary slivers, and no error is raised."""
    grid, score, energy, dist, zone = _landscape()
    n = grid.shape[0]
    common = dict(
        grid=grid, score=score, inclusion=np.ones_like(score), energy_kwh_per_kw=energy,
        grid_distance_km=dist, connection_distance_km=dist,
        nearest_point=np.zeros((n, n), np.int64), point_names=["Sub A"],
        rules=SiteRules(0.5, 0.2, 5.0, 40.0), economics=ECON,
    )  # fmt: skip
    sites, _ = extract_sites(
        **common, prefecture_id=zone, prefecture_names=["West", "East"],
        county_id=np.zeros((n, n), np.int32), county_names=[],
    )  # fmt: skip
    assert len(sites) == 3 and (sites["county"] == "").all()
    none, _ = extract_sites(
        **common, prefecture_id=np.zeros((n, n), np.int32), prefecture_names=["West"],
        county_id=np.zeros((n, n), np.int32), county_names=[],
    )  # fmt: skip
    assert len(none) == 0


def test_zone_areas_by_hand_in_strips(monkeypatch) -> None:
    """Eligible km² per zone: Σ inclusion × pixel area, NaN counted as 0, same in any strips."""
    import dask.array as da

    import sitekit.science.sites as sites_mod
    from sitekit.science.sites import zone_areas

    zone = np.zeros((10, 6), np.int32)
    zone[:, :3], zone[:, 3:] = 1, 2
    zone[0] = 0  # outside both zones
    incl = np.full((10, 6), 0.5, np.float32)
    incl[5, 0] = np.nan
    want = {"A": (9 * 3 - 1) * 0.5 * 0.25, "B": 9 * 3 * 0.5 * 0.25}
    monkeypatch.setattr(sites_mod, "STRIP_ROWS", 3)
    assert zone_areas(incl, zone, ["A", "B"], 0.25) == pytest.approx(want)
    lazy = zone_areas(
        da.from_array(incl, chunks=4), da.from_array(zone, chunks=4), ["A", "B"], 0.25
    )
    assert lazy == pytest.approx(want)
    mixed = zone_areas(  # zone ids chunked unlike the inclusion: rechunked to its blocks
        da.from_array(incl, chunks=(4, 3)), da.from_array(zone, chunks=(3, 6)), ["A", "B"], 0.25
    )
    assert mixed == pytest.approx(want)
    with pytest.raises(ValueError, match="zone ids outside"):
        zone_areas(incl, zone + 1, ["A", "B"], 0.25)
    with pytest.raises(ValueError, match="zone ids outside"):  # raised on a worker, too
        zone_areas(da.from_array(incl, chunks=4), da.from_array(zone + 1, chunks=4), ["A"], 0.25)


def test_candidates_hold_every_site_with_its_centre_and_top_n_flag() -> None:
    grid, score, energy, dist, zone = _landscape()
    rules = SiteRules(0.5, 0.2, 5.0, 40.0, max_sites=1)  # top 1 per prefecture
    top, _, every = extract_sites(
        grid, score=score, inclusion=np.ones_like(score), energy_kwh_per_kw=energy,
        grid_distance_km=dist, connection_distance_km=dist,
        nearest_point=np.zeros(score.shape, np.int64), point_names=["Sub A"],
        prefecture_id=zone, prefecture_names=["West", "East"], county_id=zone,
        county_names=["W county", "E county"], rules=rules, economics=ECON, candidates=True,
    )  # fmt: skip
    assert len(top) == 2 and len(every) == 3  # B (West, 2nd) is only in the candidates
    assert every["in_top_n"].sum() == 2
    assert set(every.loc[every["in_top_n"], "site_id"]) == set(top["site_id"])
    assert every["lcoe_cny_per_kwh"].is_monotonic_increasing
    assert every["capacity_mw"].sum() == pytest.approx(120.0)
    # block A = rows 2–11, cols 2–11 of a 100 m grid: centre at x = 0 + 7 × 100 m
    a = every.set_index("energy_gwh").loc[72.0]
    x0, y0 = grid.transform * (7.0, 7.0)
    assert a["x_m"] == pytest.approx(x0) and a["y_m"] == pytest.approx(y0)
    assert a["connection_kv"] == 110 and a["point_index"] == 0
    assert a["connection_cny_per_kw"] == pytest.approx(2 * 800000 / 40e3)
