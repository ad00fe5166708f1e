"""Route evaluation, least-cost suggestion, route reading and the `sitekit route` verb.

Synthetic grids with hand-computable answers: squares crossed by straight lines, tilted planes.
"""

from __future__ import annotations

import math
from pathlib import Path

import dask.array as da
import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pyproj import Transformer

import sitekit.cli.route  # noqa: F401  (registers the verbs)
from sitekit.cli import cli
from sitekit.engine import routes as route_job
from sitekit.errors import CRSError, InputError, SitekitWarning
from sitekit.grid import Grid, transformer
from sitekit.io import routes as route_io
from sitekit.outputs import routes as route_files
from sitekit.outputs.static import external_references
from sitekit.science import proximity, routes, terrain
from sitekit.testing import plane, small_grid

RES = 100.0


GRID = small_grid((60, 80), RES, (0.0, 0.0), chunks=16)


@pytest.fixture(scope="module")
def grid() -> Grid:
    return GRID


def squares(grid: Grid) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"name_zh": ["甲区", "乙区"], "code": ["A", "B"]},
        geometry=[shapely.box(2000, 2000, 3000, 4000), shapely.box(5000, 1000, 5500, 5000)],
        crs=grid.crs,
    )


def flat(grid: Grid, z: float = 1000.0):
    return grid.wrap(da.full(grid.shape, z, dtype=np.float32, chunks=grid.dask_chunks), "e", "m")


# -- length and crossings --------------------------------------------------------------------
U_ROUTE = shapely.LineString([(500, 3000), (7500, 3000), (7500, 3600), (500, 3600)])


def test_length_and_crossings_of_a_u_route_through_two_squares(grid):
    sq = squares(grid)
    cons = {"A": ("Square A", "甲", sq.iloc[[0]]), "B": ("Square B", "乙", sq.iloc[[1]])}
    rep = routes.evaluate_route(U_ROUTE, grid=grid, elevation=flat(grid), slope=flat(grid, 0),
                                constraints=cons)  # fmt: skip
    assert rep.length_km == pytest.approx(14.6)
    s = rep.constraints.set_index("code")
    # A is crossed on both legs (1 km each), B on both legs (0.5 km each)
    assert s.loc["A", "length_km"] == pytest.approx(2.0)
    assert s.loc["B", "length_km"] == pytest.approx(1.0)
    assert s.loc["A", "n_crossings"] == 2 and s.loc["B", "n_crossings"] == 2
    assert s.loc["A", "share_pct"] == pytest.approx(100 * 2.0 / 14.6)
    a = rep.crossings[rep.crossings["code"] == "A"]
    assert a[["entry_km", "exit_km"]].to_numpy() == pytest.approx(
        np.array([[1.5, 2.5], [12.1, 13.1]]))  # fmt: skip
    assert list(a["features"]) == ["甲区", "甲区"]
    b = rep.crossings[rep.crossings["code"] == "B"]
    assert b[["entry_km", "exit_km"]].to_numpy() == pytest.approx(
        np.array([[4.5, 5.0], [9.6, 10.1]]))  # fmt: skip
    # entry of the return leg into A is at its east edge x = 3000, y = 3600
    assert (a["entry_x"].iloc[1], a["entry_y"].iloc[1]) == pytest.approx((3000, 3600))


def test_diagonal_crossing_length_is_sqrt2_times_the_side(grid):
    sq = gpd.GeoDataFrame(geometry=[shapely.box(1000, 1000, 2000, 2000)], crs=grid.crs)
    line = shapely.LineString([(100, 100), (5000, 5000)])
    cross = routes.crossings(line, {"sq": ("Square", "方", sq)}, grid)
    assert len(cross) == 1
    assert cross["length_km"].iloc[0] == pytest.approx(math.sqrt(2))
    assert cross["entry_km"].iloc[0] == pytest.approx(math.sqrt(2) * 0.9)


def test_raster_mask_gives_the_same_crossings_as_polygons(grid):
    sq = squares(grid)
    mask = grid.rasterize(sq)  # edges on pixel edges: the mask is exactly the squares
    cons = {"poly": ("p", "p", sq), "mask": ("m", "m", mask)}
    cross = routes.crossings(U_ROUTE, cons, grid)
    summary = routes.summarise_crossings(cross, cons, U_ROUTE.length / 1000).set_index("code")
    assert summary.loc["mask", "n_crossings"] == summary.loc["poly", "n_crossings"] == 4
    assert summary.loc["mask", "length_km"] == pytest.approx(3.0, abs=1e-9)
    assert summary.loc["poly", "length_km"] == pytest.approx(3.0)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 8000), st.floats(0, 6000)), min_size=2, max_size=6,
                unique=True))  # fmt: skip
def test_crossings_do_not_depend_on_direction_and_never_exceed_the_length(pts):
    g = GRID
    line = shapely.LineString(pts)
    assume(line.length >= 1 and line.is_simple)  # a rejected example, not a silent pass
    cons = {"sq": ("s", "s", squares(g))}
    fwd = routes.crossings(line, cons, g)
    back = routes.crossings(line.reverse(), cons, g)
    assert fwd["length_km"].sum() == pytest.approx(back["length_km"].sum(), abs=1e-9)
    assert len(fwd) == len(back)
    assert fwd["length_km"].sum() <= line.length / 1000 + 1e-9
    assert (fwd["exit_km"] >= fwd["entry_km"]).all()


# -- profile ---------------------------------------------------------------------------------
def test_profile_on_a_tilted_plane(grid):
    # aspect 270°: downhill to the west, so elevation rises eastwards by tan(10°) per metre
    elev = plane(grid, 10.0, 270.0, z0_m=4000.0)
    slope = terrain.slope(elev)
    line = shapely.LineString([(500, 3000), (7500, 3000)])
    rep = routes.evaluate_route(line, grid=grid, elevation=elev, slope=slope, sample_m=250)
    p = rep.profile
    xmid = grid.x.mean()
    assert p["distance_km"].iloc[-1] == pytest.approx(7.0)
    assert np.diff(p["distance_km"].to_numpy())[:-1] == pytest.approx(0.25)
    assert p["x"].to_numpy() == pytest.approx(500 + 1000 * p["distance_km"].to_numpy())
    expected = 4000 + math.tan(math.radians(10)) * (p["x"] - xmid)
    assert p["elevation_m"].to_numpy() == pytest.approx(expected.to_numpy(), abs=0.01)
    assert p["slope_deg"].to_numpy() == pytest.approx(10.0, abs=1e-3)
    lon, lat = transformer(grid.crs, 4326).transform(p["x"].to_numpy(), p["y"].to_numpy())
    assert p["lon"].to_numpy() == pytest.approx(lon) and p["lat"].to_numpy() == pytest.approx(lat)
    # above 4000 m exactly east of the plane's middle: (7500 − 4000) / 7000
    assert rep.share_above_elevation == pytest.approx((7500 - xmid) / 7000, abs=1e-6)
    assert rep.share_steep == 0.0
    steep = terrain.slope(plane(grid, 30.0, 270.0))
    rep2 = routes.evaluate_route(line, grid=grid, elevation=elev, slope=steep)
    assert rep2.share_steep == 1.0


def test_a_route_in_two_parts_counts_no_length_across_the_gap(grid):
    elev = plane(grid, 10.0, 270.0, z0_m=4000.0)  # above 4000 m east of x = 4000
    gdf = gpd.GeoDataFrame(
        geometry=[
            shapely.LineString([(500, 3000), (2500, 3000)]),
            shapely.LineString([(5000, 3000), (7000, 3000)]),
        ],
        crs=grid.crs,
    )
    sq = squares(grid)
    rep = routes.evaluate_route(gdf, grid=grid, elevation=elev, slope=flat(grid, 0.0),
                                constraints={"sq": ("s", "s", sq)})  # fmt: skip
    assert rep.length_km == pytest.approx(4.0)
    assert rep.share_above_elevation == pytest.approx(0.5)
    assert rep.crossings[["entry_km", "exit_km"]].to_numpy() == pytest.approx(
        np.array([[1.5, 2.0], [2.0, 2.5]])
    )
    assert rep.profile["distance_km"].is_monotonic_increasing


def test_profile_computes_only_the_chunks_along_the_route(grid):
    touched: set = set()

    def _block(block_info=None):
        loc = block_info[None]["array-location"]
        touched.add((loc[0][0], loc[1][0]))
        return np.full(block_info[None]["chunk-shape"], 1500.0, np.float32)

    chunks = da.empty(grid.shape, chunks=16).chunks
    arr = da.map_blocks(_block, chunks=chunks, dtype=np.float32, meta=np.array((), np.float32))
    elev = grid.wrap(arr, "elevation", "m")
    line = shapely.LineString([(150, 5850), (1400, 5850)])  # top-left corner, rows 0–15
    rep = routes.evaluate_route(line, grid=grid, elevation=elev, slope=flat(grid, 0.0))
    assert (rep.profile["elevation_m"] == 1500.0).all()
    assert touched == {(0, 0)}  # one of the 20 chunks


def test_sites_in_the_corridor_by_technology_and_rank_class(grid):
    def box(cx, cy):
        return shapely.box(cx - 100, cy - 100, cx + 100, cy + 100)

    pv = gpd.GeoDataFrame({"site_id": ["P1", "P2", "P3"], "rank": [1, 12, 60],
                           "capacity_mw": [100.0, 50.0, 25.0], "energy_gwh": [150.0, 75, 30]},
                          geometry=[box(1000, 3500), box(4000, 4100), box(6000, 5800)],
                          crs=grid.crs)  # fmt: skip
    wind = gpd.GeoDataFrame({"site_id": ["W1"], "rank": [3], "capacity_mw": [80.0],
                             "energy_gwh": [200.0]}, geometry=[box(3000, 2200)],
                            crs=grid.crs)  # fmt: skip
    line = shapely.LineString([(500, 3000), (7500, 3000)])
    rep = routes.evaluate_route(line, grid=grid, elevation=flat(grid), slope=flat(grid, 0),
                                sites={"pv": pv, "wind": wind}, corridor_km=1.0)  # fmt: skip
    # P1 is 0.4 km away, P2 1.0 km (edge at y = 4000), W1 0.7 km; P3 2.7 km is outside
    assert set(rep.sites["site_id"]) == {"P1", "P2", "W1"}
    s = rep.sites.set_index("site_id")
    assert s.loc["P2", "distance_km"] == pytest.approx(1.0)
    assert s.loc["W1", "route_km"] == pytest.approx(2.5)
    cap = rep.capacity.set_index(["technology", "rank_class"])["capacity_mw"]
    assert cap[("pv", "1–10")] == 100.0 and cap[("pv", "11–50")] == 50.0
    assert cap[("pv", "all")] == 150.0 and cap[("wind", "all")] == 80.0
    assert ("pv", "51+") not in cap.index


# -- least-cost suggestion -------------------------------------------------------------------
@pytest.mark.parametrize("as_mask", [False, True])
def test_suggestion_detours_around_a_forbidden_block(grid, as_mask):
    cost = proximity.cost_surface(flat(grid, 0.0))
    block = gpd.GeoDataFrame(
        {"name_zh": ["保护区"]}, geometry=[shapely.box(3500, 1000, 4500, 5000)], crs=grid.crs
    )
    start, end = (1050.0, 3050.0), (7050.0, 3050.0)
    if as_mask:  # a numpy-backed mask, as a user might pass
        mask = grid.rasterize(block, all_touched=True).compute()
        sg = routes.suggest_route(start, end, cost=cost, grid=grid, forbidden_mask=mask)
    else:
        sg = routes.suggest_route(start, end, cost=cost, grid=grid, redlines=block)
    assert sg.straight_km == pytest.approx(6.0)
    assert sg.length_km > 6.0 * 1.1  # must go round the block, 4 km tall
    assert sg.length_ratio == pytest.approx(sg.length_km / 6.0)
    assert sg.line.intersection(block.geometry.iloc[0]).length == 0.0
    assert not sg.crosses_redlines and len(sg.crossings) == 0
    assert sg.line.coords[0] == start and sg.line.coords[-1] == end
    assert math.isinf(sg.straight_cost_km)
    assert sg.cost_km >= sg.length_km * 0.999


def test_enclosed_start_crosses_the_fewest_redline_km_and_names_the_crossing(grid):
    # a ring around the start: 200 m thick on the east side, 600 m elsewhere; end lies west
    outer = shapely.box(2000, 1500, 5000, 4500)
    inner = shapely.box(2600, 2100, 4800, 3900)
    ring = gpd.GeoDataFrame({"name_zh": ["环形红线"]}, geometry=[outer.difference(inner)],
                            crs=grid.crs)  # fmt: skip
    cost = proximity.cost_surface(flat(grid, 0.0))
    sg = routes.suggest_route((3750.0, 3050.0), (550.0, 3050.0), cost=cost, grid=grid,
                              redlines=ring)  # fmt: skip
    assert sg.crosses_redlines and "penalised" in sg.method
    assert len(sg.crossings) == 1
    c = sg.crossings.iloc[0]
    assert c["code"] == "redline" and c["features"] == "环形红线"
    assert 0.2 - 1e-9 <= c["length_km"] < 0.3  # the thin east side, not 0.6 km west
    assert c["entry_x"] >= 4800 - 1e-6 and c["exit_x"] <= 5000 + 1e-6


# -- reading ---------------------------------------------------------------------------------
KML = """<?xml version="1.0" encoding="UTF-8"?>
<kml xmlns="http://www.opengis.net/kml/2.2"><Document>
<Placemark><name>&lt;script&gt;alert(1)&lt;/script&gt;</name>
<LineString><coordinates>{coords}</coordinates></LineString></Placemark>
</Document></kml>
"""


def _lonlat(grid: Grid, pts: list) -> list:
    lon, lat = transformer(grid.crs, 4326).transform(*np.asarray(pts, float).T)
    return list(zip(lon, lat, strict=True))


def test_kml_route_is_read_and_its_name_escaped_everywhere(grid, tmp_path):
    pts = [(500.0, 3000.0), (7500.0, 3000.0)]
    coords = " ".join(f"{lo:.8f},{la:.8f},1200" for lo, la in _lonlat(grid, pts))
    path = tmp_path / "r.kml"
    path.write_text(KML.format(coords=coords), encoding="utf-8")
    gdf = route_io.read_route(path, grid=grid)
    assert len(gdf) == 1 and gdf["name"].iloc[0] == "<script>alert(1)</script>"
    assert not gdf.geometry.iloc[0].has_z
    assert np.asarray(gdf.geometry.iloc[0].coords) == pytest.approx(np.array(pts), abs=1e-3)
    rep = routes.evaluate_route(gdf, grid=grid, elevation=flat(grid), slope=flat(grid, 0),
                                constraints={"A": ("A", "甲", squares(grid))})  # fmt: skip
    assert rep.name == "<script>alert(1)</script>"
    files = route_files.write_route_report(rep, tmp_path / "out")
    for key in ("summary_md", "map_html"):
        text = files[key].read_text(encoding="utf-8")
        assert "<script>alert(1)" not in text
        assert "&lt;script&gt;alert(1)" in text or "\\u0026lt;script" in text
    for name in ("route_profile.csv", "route_profile.png", "route_crossings.csv",
                 "route_sites.csv", "route_summary.md", "route_map.html"):  # fmt: skip
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert external_references(files["map_html"].read_text(encoding="utf-8")) == []


def test_route_map_overlays_come_from_the_run_cache(grid, tmp_path, monkeypatch):
    """With the run's cache folder, the route map's overlays are computed once and read back;
    the page is the same as without a cache (apart from folium's random element ids)."""
    import re

    from sitekit.outputs import render

    line = gpd.GeoDataFrame(geometry=[shapely.LineString([(500, 3000), (7500, 3000)])],
                            crs=grid.crs)  # fmt: skip
    ramp = np.broadcast_to(np.arange(grid.shape[1], dtype=np.float32) * 5 + 1000, grid.shape)
    elev = grid.wrap(da.from_array(ramp.copy(), chunks=grid.dask_chunks), "e", "m")
    rep = routes.evaluate_route(line, grid=grid, elevation=elev, slope=flat(grid, 0))
    made = []
    real = render.overview
    monkeypatch.setattr(render, "overview", lambda *a, **k: made.append(1) or real(*a, **k))
    pages = []
    for out, cache in (("plain", None), ("a", tmp_path / "cache"), ("b", tmp_path / "cache")):
        before = len(made)
        page = route_job.write_route_report(rep, tmp_path / out, cache_dir=cache)["map_html"]
        pages.append(re.sub(r"[0-9a-f]{32}", "", page.read_text(encoding="utf-8")))
        if out == "b":
            assert len(made) == before, "the second run computed an overlay again"
        else:
            assert len(made) == before + 2  # elevation and its hillshade
    assert len(list((tmp_path / "cache" / "overlays").glob("*.json"))) == 2
    assert pages[0] == pages[1] == pages[2]


def test_epsg4543_geopackage_route_lands_on_the_grid(grid, tmp_path):
    pts = np.array([(500.0, 3000.0), (4000.0, 5000.0), (7500.0, 1000.0)])
    to_ll = Transformer.from_crs(grid.crs, 4326, always_xy=True)
    to_gk = Transformer.from_crs(4326, 4543, always_xy=True)  # GK zone: northing-first CRS
    e, n = to_gk.transform(*to_ll.transform(pts[:, 0], pts[:, 1]))
    assert e.min() > 400_000 and n.min() > 3_000_000  # easting/northing, not swapped
    gk = gpd.GeoDataFrame(
        {"name": ["GK route"]}, geometry=[shapely.LineString(np.column_stack([e, n]))], crs=4543
    )
    gk.to_file(tmp_path / "r.gpkg", layer="route", engine="pyogrio")
    gdf = route_io.read_route(tmp_path / "r.gpkg", grid=grid)
    got = np.asarray(gdf.geometry.iloc[0].coords)
    assert got == pytest.approx(pts, abs=0.01)
    rep = routes.evaluate_route(gdf, grid=grid, elevation=flat(grid), slope=flat(grid, 0))
    assert rep.length_km == pytest.approx(shapely.LineString(pts).length / 1000, rel=1e-4)


def test_polygon_route_is_refused(grid, tmp_path):
    gdf = gpd.GeoDataFrame(geometry=[shapely.box(1000, 1000, 2000, 2000)], crs=grid.crs)
    gdf.to_file(tmp_path / "poly.geojson", engine="pyogrio")
    with pytest.raises(InputError, match="route must be a LineString"):
        route_io.read_route(tmp_path / "poly.geojson", grid=grid)


def test_route_without_crs_is_refused_unless_one_is_given(grid, tmp_path):
    gdf = gpd.GeoDataFrame(geometry=[shapely.LineString([(500, 3000), (7500, 3000)])])
    with pytest.warns(UserWarning, match="crs"):  # pyogrio: "'crs' was not provided"
        gdf.to_file(tmp_path / "nocrs.shp", engine="pyogrio")
    assert not (tmp_path / "nocrs.prj").exists()
    with pytest.raises(CRSError, match="no CRS"):
        route_io.read_route(tmp_path / "nocrs.shp", grid=grid)
    ok = route_io.read_route(tmp_path / "nocrs.shp", grid=grid, crs=grid.crs)
    assert ok.geometry.iloc[0].length == pytest.approx(7000)


def test_route_outside_the_study_area_is_refused(tmp_path):
    g = small_grid((60, 80), RES, (0.0, 0.0), chunks=16)
    area = shapely.box(0, 0, 8000, 6000)
    g = Grid(g.crs, g.transform, g.shape, g.chunks, area)
    far = gpd.GeoDataFrame(geometry=[shapely.LineString([(90.0, 40.0), (90.5, 40.2)])], crs=4326)
    far.to_file(tmp_path / "far.geojson", engine="pyogrio")
    with pytest.raises(InputError, match="outside the study area"):
        route_io.read_route(tmp_path / "far.geojson", grid=g)
    with pytest.raises(InputError, match="outside the study area"):
        routes.evaluate_route(far, grid=g, elevation=flat(g), slope=flat(g, 0))


def test_empty_and_partly_outside_routes(grid, tmp_path):
    (tmp_path / "empty.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(InputError, match="no features"):
        route_io.read_route(tmp_path / "empty.geojson")
    with pytest.raises(InputError, match="not found"):
        route_io.read_route(tmp_path / "missing.kml")
    line = shapely.LineString([(4000, 3000), (12000, 3000)])
    with pytest.warns(SitekitWarning, match="outside the grid"):
        rep = routes.evaluate_route(line, grid=grid, elevation=flat(grid), slope=flat(grid, 0))
    assert rep.profile["elevation_m"].isna().any() and rep.notes


# -- CLI -------------------------------------------------------------------------------------
def write_run(folder: Path) -> Grid:
    """A fake run folder: rasters/elevation.tif + slope.tif, sitekit.gpkg (as `sitekit run`)."""
    g = small_grid((60, 80), RES, (0.0, 0.0), chunks=32)
    (folder / "rasters").mkdir(parents=True)
    elev = np.asarray(plane(g, 10.0, 270.0, z0_m=3900.0).values)
    slope = np.asarray(terrain.slope(plane(g, 10.0, 270.0)).values)
    for name, arr, units in (("elevation", elev, "m"), ("slope", slope, "degree")):
        with rasterio.open(
            folder / "rasters" / f"{name}.tif",
            "w",
            driver="GTiff",
            width=g.shape[1],
            height=g.shape[0],
            count=1,
            dtype="float32",
            crs=g.crs.to_wkt(),
            transform=g.transform,
            nodata=np.nan,
        ) as dst:
            dst.write(arr.astype(np.float32), 1)
            dst.update_tags(units=units)
    gpkg = folder / "sitekit.gpkg"
    area = shapely.box(0, 0, 8000, 6000)
    gpd.GeoDataFrame({"name_en": ["Test"]}, geometry=[area], crs=g.crs).to_file(
        gpkg, layer="prefectures", engine="pyogrio")  # fmt: skip
    sq = squares(g).assign(**{"class": ["protected", "water"]})
    sq.to_crs(4490).to_file(gpkg, layer="constraint_nobuild", engine="pyogrio")

    def box(cx, cy):
        return shapely.box(cx - 150, cy - 150, cx + 150, cy + 150)

    pv = gpd.GeoDataFrame({"site_id": ["P1", "P2", "P3"], "rank": [1, 2, 3],
                           "capacity_mw": [120.0, 60.0, 30.0], "energy_gwh": [180.0, 90.0, 45.0],
                           "lcoe_cny_per_kwh": [0.25, 0.3, 0.28]},
                          geometry=[box(1000, 1000), box(6500, 5200), box(7000, 1500)],
                          crs=g.crs)  # fmt: skip
    wind = gpd.GeoDataFrame({"site_id": ["W1"], "rank": [1], "capacity_mw": [50.0],
                             "energy_gwh": [120.0], "lcoe_cny_per_kwh": [0.32]},
                            geometry=[box(1500, 5000)], crs=g.crs)  # fmt: skip
    pv.to_file(gpkg, layer="pv_sites", engine="pyogrio")
    wind.to_file(gpkg, layer="wind_sites", engine="pyogrio")
    pts = gpd.GeoDataFrame({"name": ["West", "East"], "voltage_kv": [220, 500]},
                           geometry=[shapely.Point(800, 3000), shapely.Point(7200, 3000)],
                           crs=g.crs)  # fmt: skip
    pts.to_file(gpkg, layer="grid_points", engine="pyogrio")
    return g


def test_cli_route_file_and_suggestion(tmp_path):
    g = write_run(tmp_path / "run")
    gpd.GeoDataFrame({"name": ["Test line"]}, geometry=[U_ROUTE], crs=g.crs).to_crs(4326).to_file(
        tmp_path / "line.geojson", engine="pyogrio")  # fmt: skip
    runner = CliRunner()
    res = runner.invoke(cli, ["route", str(tmp_path / "line.geojson"), "--run",
                              str(tmp_path / "run"), "--catalog", str(tmp_path / "none.yaml"),
                              "--corridor-km", "1", "--no-map"])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = tmp_path / "run" / "route"
    cross = (out / "route_crossings.csv").read_text(encoding="utf-8-sig")
    assert "nobuild.protected" in cross and "nobuild.water" in cross
    assert "route report written to" in res.output
    # an existing folder needs --force; bad input is one line and exit code 2
    again = runner.invoke(cli, ["route", str(tmp_path / "line.geojson"), "--run",
                                str(tmp_path / "run")])  # fmt: skip
    assert again.exit_code == 2 and "--force" in again.output
    ll = _lonlat(g, [(1050.0, 3050.0), (7050.0, 3050.0)])
    res = runner.invoke(cli, ["route", "--run", str(tmp_path / "run"), "--out",
                              str(tmp_path / "sug"), "--from", f"{ll[0][0]},{ll[0][1]}",
                              "--to", f"{ll[1][0]},{ll[1][1]}", "--no-map"])  # fmt: skip
    assert res.exit_code == 0, res.output
    sug = gpd.read_file(tmp_path / "sug" / "route_suggestion.geojson")
    assert sug["length_km"].iloc[0] > 6.0 and sug["n_crossings"].iloc[0] == 0
    assert "Least-cost suggestion" in (tmp_path / "sug" / "route_summary.md").read_text()
    bad = runner.invoke(cli, ["route", "--run", str(tmp_path / "run"), "--from", "1,2"])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1


# -- the run's connection cost surface -------------------------------------------------------
def write_recipe_run(folder: Path, catalog_path: Path, recipes: dict) -> Grid:
    """A run folder of the tiny catalogue as `sitekit run` leaves it for `sitekit route`:
    rasters/elevation.tif + slope.tif on the catalogue's 1 km grid, the study area in
    sitekit.gpkg, and run.json with the catalogue path, the grid and each recipe's YAML."""
    import json

    import yaml

    from sitekit.engine.pipeline import Pipeline
    from sitekit.io.catalog import Catalog

    cat = Catalog(catalog_path)
    g = cat.grid(1000.0, chunks=16)
    pipe = Pipeline(cat, g)
    (folder / "rasters").mkdir(parents=True)
    for name, arr in (("elevation", pipe.elevation), ("slope", pipe.slope)):
        with rasterio.open(
            folder / "rasters" / f"{name}.tif", "w", driver="GTiff", width=g.shape[1],
            height=g.shape[0], count=1, dtype="float32", crs=g.crs.to_wkt(),
            transform=g.transform, nodata=np.nan,
        ) as dst:  # fmt: skip
            dst.write(np.asarray(arr.values, np.float32), 1)
    cat.study_area.to_crs(g.crs).to_file(folder / "sitekit.gpkg", layer="prefectures",
                                         engine="pyogrio")  # fmt: skip
    prov = {
        "catalog": str(catalog_path),
        "grid": {"resolution_m": 1000.0, "chunks": 16, "shape": list(g.shape)},
        "recipes": {
            f"{t}.yaml": {"technology": t, "yaml": yaml.safe_dump(r.model_dump(mode="json"))}
            for t, r in recipes.items()
        },
    }
    (folder / "run.json").write_text(json.dumps(prov), encoding="utf-8")
    return g


def test_suggestion_follows_the_recipe_cost_surface_round_a_land_cover_class(tiny_catalog):
    """A WorldCover water band (class 80, from a lon/lat raster at ~50 m) runs down the 1 km
    grid, open at one pixel. With the PV recipe's ``grid.cost_terms`` {80: ×100} the suggested
    route goes through the gap; by hand on the 8-connected grid (uniform slope): start and end
    10 px either side of the band, 19 rows below the gap: 2 × (10·√2 + 9) = 46.28 km. The wind
    recipe has no cost term: straight across, 20 km."""
    from test_catalog import LANDCOVER_ENTRY, _worldcover_on_grid_blocks

    from sitekit.io.catalog import Catalog
    from sitekit.specs.recipe import CostTerm, load_recipe

    grid0 = Catalog(tiny_catalog).grid(1000.0, chunks=16)
    ny, nx = grid0.shape
    cb, gap, row = nx // 2, 8, 27
    band = [(r, cb) for r in range(ny) if r != gap]
    _worldcover_on_grid_blocks(tiny_catalog.parent, grid0, {80: band})
    tiny_catalog.write_text(tiny_catalog.read_text() + LANDCOVER_ENTRY)
    repo = Path(__file__).resolve().parents[1] / "pipelines"
    recipes = {}
    for t in ("pv", "wind"):
        base, _ = load_recipe(repo / f"{t}.yaml")
        cfg = base.grid.model_copy(update={"layer": "towns"})
        econ = base.economics
        if t == "pv":
            cfg = cfg.model_copy(
                update={"cost_terms": [CostTerm(layer="landcover", classes={80: 100.0})]}
            )
            econ = econ.model_copy(update={"search_radius_km": 15.0})  # the point is 20 km away
        recipes[t] = base.model_copy(update={"rules": [], "constraints": [], "grid": cfg,
                                             "existing_plants": None,
                                             "economics": econ})  # fmt: skip
    g = write_recipe_run(tiny_catalog.parent / "run", tiny_catalog, recipes)
    x = lambda c: g.bounds[0] + (c + 0.5) * g.resolution_m  # noqa: E731
    y = g.bounds[3] - (row + 0.5) * g.resolution_m
    a, b = _lonlat(g, [(x(cb - 10), y), (x(cb + 10), y)])
    runner = CliRunner()
    lengths = {}
    for t in ("pv", "wind"):
        out = tiny_catalog.parent / f"sug-{t}"
        res = runner.invoke(cli, ["route", "--run", str(tiny_catalog.parent / "run"), "--out",
                                  str(out), "--from", f"{a[0]},{a[1]}", "--to", f"{b[0]},{b[1]}",
                                  "--technology", t, "--no-map"])  # fmt: skip
        assert res.exit_code == 0, res.output
        sug = gpd.read_file(out / "route_suggestion.geojson").to_crs(g.crs)
        lengths[t] = sug["length_km"].iloc[0]
        line = sug.geometry.iloc[0]
        if t == "pv":
            assert "landcover ×{80: 100}" in sug["method"].iloc[0]
            gap_px = shapely.box(x(cb) - 500, y + (row - gap) * 1000 - 500,
                                 x(cb) + 500, y + (row - gap) * 1000 + 500)  # fmt: skip
            assert line.intersects(gap_px)
            for r in band:  # never through a water pixel
                cy = g.bounds[3] - (r[0] + 0.5) * 1000
                assert not line.intersects(shapely.Point(x(cb), cy).buffer(400))
    assert lengths["pv"] == pytest.approx(2 * (10 * math.sqrt(2) + 9), abs=0.05)
    assert lengths["wind"] == pytest.approx(20.0, abs=1e-6)
    # `sitekit hosting` connects sites over the same surface (the run's first recipe, PV): a
    # site west of the band reaches the one point east of it through the gap, 46.28 km
    gpkg = tiny_catalog.parent / "run" / "sitekit.gpkg"
    gpd.GeoDataFrame({"site_id": ["S1"], "rank": [1], "capacity_mw": [50.0],
                      "energy_gwh": [80.0], "lcoe_cny_per_kwh": [0.3]},
                     geometry=[shapely.Point(x(cb - 10), y).buffer(200)], crs=g.crs).to_file(
        gpkg, layer="pv_sites", engine="pyogrio")  # fmt: skip
    gpd.GeoDataFrame({"name": ["East"], "voltage_kv": [220]},
                     geometry=[shapely.Point(x(cb + 10), y)], crs=g.crs).to_file(
        gpkg, layer="grid_points", engine="pyogrio")  # fmt: skip
    res = runner.invoke(cli, ["hosting", "--run", str(tiny_catalog.parent / "run"), "--out",
                              str(tiny_catalog.parent / "host"), "--no-bases"])  # fmt: skip
    assert res.exit_code == 0, res.output
    import pandas as pd

    curve = pd.read_csv(tiny_catalog.parent / "host" / "supply_curves.csv", encoding="utf-8-sig")
    assert curve["connection_km"].iloc[0] == pytest.approx(2 * (10 * math.sqrt(2) + 9), abs=0.05)
    # the PV recipe's search radius (15 km) leaves the point, 20 km away, out of the site's reach
    assert curve["connection_status"].iloc[0] == "needs new transmission"


def test_route_cost_equals_the_runs_connection_distance(tiny_catalog):
    """One surface: a suggestion from a pixel to its connection point costs exactly what the
    run's connection_distance raster (built as `sitekit run` builds it) says there; the whole
    surface, with its forbidden zone (DEM > 2400 m, ×7) and crossing cost (DEM < 2150 m, ×3), is
    the run's pixel for pixel."""
    from sitekit.engine import rules
    from sitekit.engine.pipeline import Pipeline
    from sitekit.io.catalog import Catalog
    from sitekit.specs.recipe import ThresholdC, load_recipe

    base, _ = load_recipe(Path(__file__).resolve().parents[1] / "pipelines" / "wind.yaml")
    high = ThresholdC(kind="threshold", id="high", layer="dem", op=">", value=2400.0)
    low = ThresholdC(kind="threshold", id="low", layer="dem", op="<", value=2150.0)
    cfg = base.grid.model_copy(
        update={
            "layer": "towns",
            "forbidden": ["high"],
            "forbidden_cost": 7.0,
            "crossing_costs": {"low": 3.0},
        }
    )
    recipe = base.model_copy(update={"rules": [], "constraints": [high, low], "grid": cfg,
                                     "existing_plants": None})  # fmt: skip
    g = write_recipe_run(tiny_catalog.parent / "run", tiny_catalog, {"wind": recipe})
    cat = Catalog(tiny_catalog)
    run = route_io.open_run(tiny_catalog.parent / "run", cat)
    rc = route_job.run_connection_cost(tiny_catalog.parent / "run", cat, run.grid)
    assert rc.technology == "wind"
    with pytest.raises(InputError, match="no 'pv' recipe"):
        route_job.run_connection_cost(tiny_catalog.parent / "run", cat, run.grid, technology="pv")
    with pytest.raises(InputError, match="pass the run's catalogue"):  # another grid
        route_job.run_connection_cost(tiny_catalog.parent / "run", cat, cat.grid(2000.0))
    assert route_job.run_connection_cost(tiny_catalog.parent / "run", None, run.grid) is None
    assert "forbidden high ×7" in rc.description and "crossing low ×3" in rc.description
    pipe = Pipeline(cat, g)
    tg = pipe.technology(recipe)
    dist = pipe.connection_distance(
        tg.recipe, rules.forbidden_mask(tg), rules.crossing_penalty(tg)
    ).values  # as sitekit.engine.run builds it
    ref = pipe.line_cost(tg.recipe, rules.forbidden_mask(tg), rules.crossing_penalty(tg)).values
    mine = rc.cost.values
    assert np.array_equal(mine, ref, equal_nan=True)
    dem = pipe.derived("dem", recipe).values
    flat = mine[(dem > 2200) & (dem < 2300) & np.isfinite(mine)]  # neither zone: slope only
    assert np.allclose(mine[(dem > 2410) & np.isfinite(mine)] / np.median(flat), 7.0, rtol=0.05)
    assert np.allclose(mine[(dem < 2140) & np.isfinite(mine)] / np.median(flat), 3.0, rtol=0.05)
    # town B (101.4 °E, DEM ≈ 2500 m, forbidden) from a pixel 6 px west and 3 px south of it
    towns = cat.vector("towns", g)
    bx, by = towns.geometry.iloc[1].x, towns.geometry.iloc[1].y
    col, row = ~g.transform * (bx, by)
    r, c = int(row) + 3, int(col) - 6
    start = g.transform * (c + 0.5, r + 0.5)
    end = g.transform * (int(col) + 0.5, int(row) + 0.5)
    sg = routes.suggest_route(start, end, cost=rc.cost, grid=run.grid,
                              forbidden_mask=rc.forbidden, avoid=False)  # fmt: skip
    assert sg.cost_km == pytest.approx(float(dist[r, c]), rel=1e-5)
    assert len(sg.crossings) >= 1  # it ends inside the forbidden zone, and says so
