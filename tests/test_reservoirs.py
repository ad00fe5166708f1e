"""Existing (bluefield) reservoirs: flooded to their published pool level, the embedded table."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from sitekit.science.hydrology import fill_depressions, flow_receivers
from sitekit.science.reservoirs import flood, read_table, upstream_below
from sitekit.testing import small_grid

RES = 100.0
TABLE = Path(__file__).parents[1] / "layers" / "sichuan-west" / "hydro" / "reservoirs.csv"


def _valley() -> np.ndarray:
    """A valley along row 10 falling 10 m/px to the west edge; flanks rise 100 m/px.

    The stream is at 1000 + 10·c m; the dam sits at column 10 (1100 m)."""
    r, c = np.mgrid[0:21, 0:30]
    return (1000.0 + 10.0 * c + 100.0 * np.abs(r - 10)).astype(np.float32)


def test_upstream_below_floods_only_upstream_of_the_dam_below_the_level():
    z = _valley()
    zf = fill_depressions(z)
    recv = flow_receivers(zf)
    nx = z.shape[1]
    dam = 10 * nx + 10
    pix = upstream_below(zf, recv, dam, 1150.0, (0, 21, 0, 30))
    rr, cc = np.divmod(pix, nx)
    # stream pixels c = 10..14 (1100 … 1140 m) lie below 1150 m; the flanks (≥ 1200 m) do not;
    # downstream of the dam (c < 10), though lower, is not the reservoir
    assert set(zip(rr.tolist(), cc.tolist(), strict=True)) == {(10, c) for c in range(10, 15)}


def test_flood_uses_the_pool_level_and_falls_back_to_a_disc():
    grid = small_grid((21, 30), RES, chunks=30)
    z = _valley()
    zf = fill_depressions(z)
    recv = flow_receivers(zf)
    dam_xy = (grid.x[10], grid.y[10])
    gdf = gpd.GeoDataFrame(
        {"name": ["Real", "High", "Unknown"], "water_level_m": [1150.0, 1050.0, np.nan],
         "volume_gl": [5.0, np.nan, 1.0]},
        geometry=[shapely.Point(*dam_xy)] * 3, crs=grid.crs,
    )  # fmt: skip
    out = flood(gdf, zf, recv, grid, radius_km=0.1, reach_km=5.0, snap_m=0.0)
    assert [f.name for f in out] == ["Real", "High"]  # no pool level: not used, never guessed
    real, high = out
    assert real.level_m == 1150.0 and real.volume_m3 == pytest.approx(5e6)
    assert real.pixels.size == 5 and real.method.startswith("DEM flooded")
    # the DEM at the dam (1100 m) is above 1050 m: a disc at the dam, still at 1050 m
    assert high.level_m == 1050.0 and high.method.startswith("disc")
    assert high.volume_m3 == np.inf
    assert high.pixels.size == 5  # radius 1 px: the dam pixel and its 4 neighbours
    # a dam point 1 px off the valley floor snaps to the lowest pixel within snap_m
    (snapped,) = flood(gdf.iloc[:1], zf, recv, grid, reach_km=5.0, snap_m=RES)
    assert snapped.pixels.size == 6  # dam moved to c = 9 (1090 m): c = 9..14 below 1150 m


def test_embedded_table_levels_are_cited_or_empty():
    df = pd.read_csv(TABLE)
    assert {"Lianghekou", "Jinping I", "Ertan", "Baihetan", "Xiluodu"} <= set(df["name"])
    has = df["water_level_m"].notna()
    assert has.sum() >= 5
    # every level carries a source; a dam without a level says so
    assert df.loc[has, "level_source"].str.len().gt(20).all()
    assert df.loc[~has, "level_source"].str.contains("not used").all()
    # dead level below the normal pool level where both are known
    both = df.dropna(subset=["water_level_m", "dead_level_m"])
    assert (both["dead_level_m"] < both["water_level_m"]).all()
    gdf = read_table(TABLE)
    assert gdf.crs.to_epsg() == 4326 and len(gdf) == len(df)
    b = gdf.total_bounds  # in and next to the four prefectures
    assert b[0] > 97.3 and b[2] < 104.5 and b[1] > 26.0 and b[3] < 34.4


def test_recipe_layer_to_existing_reservoirs(tmp_path):
    """The recipe's existing_reservoirs keys map a layer's columns; rows without a pool level
    are dropped (never guessed); a missing column is an input error naming the key to set."""
    from sitekit.errors import InputError
    from sitekit.science.pumped_storage import existing_from_layer, params_from_recipe
    from sitekit.specs.recipe import load_ps_recipe

    f = tmp_path / "ps.yaml"
    f.write_text(
        "technology: pumped_storage\nname_zh: 抽蓄\nname_en: PSH\n"
        "search: {classes: [[5, 18], [50, 50]], max_power_mw: 1200}\n"
        "existing_reservoirs: {layer: dams, name_field: dam, level_field: npl, reach_km: 30}\n",
        encoding="utf-8",
    )
    recipe, _ = load_ps_recipe(f)
    p = params_from_recipe(recipe)
    assert p.classes == ((5.0, 18.0), (50.0, 50.0)) and p.existing_reach_km == 30.0
    assert p.served_classes() == [(5.0, 18.0), (50.0, 50.0)]  # 1000 MW ≤ 1200 MW
    layer = gpd.GeoDataFrame(
        {"dam": ["A", "B"], "npl": [1200.0, np.nan], "volume_gl": [5.0, 1.0]},
        geometry=[shapely.Point(0, 0), shapely.Point(1, 1)], crs="EPSG:3857",
    )  # fmt: skip
    out = existing_from_layer(layer, recipe.existing_reservoirs)
    assert list(out["name"]) == ["A"] and list(out["water_level_m"]) == [1200.0]
    assert list(out["volume_gl"]) == [5.0]
    with pytest.raises(InputError, match="level_field"):
        existing_from_layer(layer.drop(columns="npl"), recipe.existing_reservoirs)
