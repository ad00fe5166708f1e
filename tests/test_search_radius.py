"""The connection search radius (``economics.search_radius_km``, reVX least-cost transmission's
``--radius``): a point beyond it is out of a site's reach; a site with none in reach needs new
transmission. Distances by hand on a straight east–west line of points."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import shapely

from sitekit.errors import RecipeError
from sitekit.science import hosting
from sitekit.specs.recipe import Economics, load_recipe

CRS = "EPSG:4543"
ECON = dict(
    capex_cny_per_kw=3600, fixed_om_cny_per_kw_yr=50, wacc=0.06, lifetime_yr=25,
    connection_cny_per_km={110: 800000, 220: 1500000},
    connection_bay_cny={110: 8000000, 220: 20000000}, voltage_by_capacity_mw={110: 100, 220: 500},
)  # fmt: skip


def _case():
    """Sites A (0.20 CNY/kWh) and B (0.25), 60 MW each, 2 km north and south of P1 (100 MW);
    P2 (500 MW) 10 km east of P1: B, which no longer fits P1, is hypot(10, 2) = 10.2 km from P2."""
    pts = gpd.GeoDataFrame({"name": ["P1", "P2"], "voltage_kv": [110, 220],
                            "available_mw": [100.0, 500.0]},
                           geometry=[shapely.Point(0, 0), shapely.Point(10_000, 0)],
                           crs=CRS)  # fmt: skip
    s = pd.DataFrame({"technology": ["pv", "pv"], "site_id": ["B", "A"],
                      "capacity_mw": [60.0, 60.0], "energy_gwh": [90.0, 90.0],
                      "lcoe_cny_per_kwh": [0.25, 0.20], "x_m": [0.0, 0.0], "y_m": [2000.0, -2000.0],
                      "point_index": [0, 0], "connection_distance_km": [2.0, 2.0]})  # fmt: skip
    cap, _ = hosting.point_capacity_mw(pts)
    return s, pts, cap


@pytest.mark.parametrize(
    ("radius_km", "status_a", "status_b", "point_b"),
    [
        (None, "allocated", "allocated", 1),  # no limit: B goes to P2, 10.2 km away
        (11.0, "allocated", "allocated", 1),  # P2 (10.2 km) still in reach
        (5.0, "allocated", "needs new transmission", 0),  # P2 out of reach; P1 full
        (1.5, "needs new transmission", "needs new transmission", 0),  # even P1 (2 km) is out
    ],
)
def test_points_beyond_the_search_radius_are_not_connected(radius_km, status_a, status_b, point_b):
    s, pts, cap = _case()
    econ = {"pv": Economics(**ECON, search_radius_km=radius_km)}
    a = hosting.allocate(s, pts, cap, economics=econ).set_index("site_id")
    assert a.loc["A", "connection_status"] == status_a
    assert a.loc["B", "connection_status"] == status_b
    # a site that fits nowhere gets a new 110 kV line to its cheapest point of that class
    assert a.loc["B", "allocated_point_index"] == point_b
    new = a["connection_status"] == hosting.NEW_TRANSMISSION
    assert (a.loc[new, "new_transmission_cny"] > 0).all()
    assert (a.loc[~new, "new_transmission_cny"] == 0).all()
    # the argument overrides the recipe's value
    b = hosting.allocate(s, pts, cap, economics=econ, search_radius_km=1.5)
    assert (b["connection_status"] == hosting.NEW_TRANSMISSION).all()


def test_search_radius_is_a_recipe_key_with_no_limit_by_default():
    pv = Path(__file__).resolve().parents[1] / "pipelines" / "pv.yaml"
    r, _ = load_recipe(pv)
    assert r.economics.search_radius_km is None
    r, text = load_recipe(pv, ["economics.search_radius_km=30"])
    assert r.economics.search_radius_km == 30.0 and "search_radius_km: 30" in text
    with pytest.raises(RecipeError):
        load_recipe(pv, ["economics.search_radius_km=0"])
