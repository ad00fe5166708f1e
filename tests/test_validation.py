"""The check against built plants: hand-computed AUC, percentiles and shares on a 4 × 4 grid."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from rasterio.transform import from_origin

import sitekit.cli.validate  # noqa: F401  (registers the verb)
from sitekit.cli import cli
from sitekit.engine.validation import auc, read_plants, validate_arrays, validate_run
from sitekit.grid import DEFAULT_CRS

T = from_origin(0.0, 400.0, 100.0, 100.0)  # 4 × 4 px of 100 m, top-left corner (0, 400)
SCORE = np.array(
    [
        [0.1, 0.2, 0.3, 0.4],
        [0.5, 0.6, 0.7, 0.8],
        [0.9, 0.95, np.nan, 0.35],
        [0.15, 0.25, 0.45, 0.55],
    ],
    dtype=np.float32,
)
# bit 0 = steep (excludes), bit 1 = existing_plants (ignored by the check)
REASONS = np.zeros((4, 4), np.uint32)
REASONS[0, 0] = 1  # steep
REASONS[1, 1] = 2  # a built farm's own footprint
REASONS[2, 0] = 1 | 2
LEGEND = [(0, "steep", "Slope", "坡度"), (1, "existing_plants", "Built", "已建")]
CF = np.full((4, 4), 0.25, np.float32)


def _centre(r: int, c: int) -> shapely.Point:
    return shapely.Point(50.0 + 100.0 * c, 350.0 - 100.0 * r)


def _plants() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "name": ["A", "B", "C", "D", "E"],
            "status": ["operating", "operating", "operating", "operating", "construction"],
            "capacity_mw": [50.0, 60.0, 70.0, 80.0, 90.0],
        },
        geometry=[
            _centre(1, 1),
            _centre(2, 0),
            _centre(0, 3),
            shapely.Point(900, 900),
            _centre(3, 3),
        ],
        crs=DEFAULT_CRS,
    )


def test_auc_by_hand() -> None:
    # pairs won by the positives: 0.9 beats 0.1, 0.8 (2); 0.8 beats 0.1, ties 0.8 (1.5) → 3.5 / 6
    assert auc(np.array([0.9, 0.8]), np.array([0.1, 0.8, 0.95])) == pytest.approx(3.5 / 6)
    assert auc(np.array([1.0]), np.array([0.0, 0.5])) == 1.0
    assert np.isnan(auc(np.array([]), np.array([0.5])))


def test_validate_arrays_by_hand() -> None:
    summary, table = validate_arrays(
        _plants(),
        technology="wind",
        score=SCORE,
        reasons=REASONS,
        cf=CF,
        transform=T,
        crs=DEFAULT_CRS,
        legend=LEGEND,
        n_random=100,  # more than the 13 eligible pixels: all of them, whatever the seed
    )
    # eligible: 15 finite pixels minus the two "steep" ones (0,0) and (2,0) = 13
    assert summary["eligible_pixels"] == 13
    # D is off the grid → reported, not used
    assert summary["plants_outside"] == 1 and list(table.loc[~table.in_study_area, "name"]) == ["D"]
    # operating in the area: A (own footprint only → eligible), B (steep → not), C (eligible)
    assert summary["operating_in_study_area"] == 3 and summary["operating_on_eligible"] == 2
    assert summary["share_operating_on_eligible"] == pytest.approx(2 / 3, abs=1e-4)
    assert table.set_index("name").loc["B", "excluded_by"] == "steep,existing_plants"
    # eligible scores sorted: .15 .2 .25 .3 .35 .4 .45 .5 .55 .6 .7 .8 .95 → 13 values;
    # A = 0.6: 10 of 13 are ≤ 0.6 → 76.92 %; B = 0.9: 12/13 → 92.31 %; C = 0.4: 6/13 → 46.15 %
    pct = table.set_index("name")["score_percentile"]
    assert pct["A"] == pytest.approx(100 * 10 / 13)
    assert pct["B"] == pytest.approx(100 * 12 / 13)
    assert pct["C"] == pytest.approx(100 * 6 / 13)
    assert summary["median_score_percentile"] == pytest.approx(100 * 10 / 13, abs=1e-3)
    # AUC of operating A, B, C (0.6, 0.9, 0.4) against the 13 eligible scores, by rank:
    # 0.6 beats 9 and ties 1 (9.5); 0.9 beats 12 (only .95 higher); 0.4 beats 5, ties 1 (5.5)
    # → 27 / 39
    assert summary["auc_operating_vs_random_eligible"] == pytest.approx(27 / 39, abs=1e-4)
    assert summary["median_cf_modelled_operating"] == pytest.approx(0.25)


def test_validate_arrays_reads_dask_layers_in_strips(monkeypatch) -> None:
    """Inside a run the layers are dask arrays: they are read in strips of rows (and at the
    plants), never whole, with the same summary and table as whole NumPy arrays, including
    the random eligible pixels drawn for the AUC."""
    import dask.array as da

    import sitekit.engine.validation as v

    args = dict(technology="wind", transform=T, crs=DEFAULT_CRS, legend=LEGEND, n_random=5)
    whole = validate_arrays(_plants(), score=SCORE, reasons=REASONS, cf=CF, **args)
    monkeypatch.setattr(v, "STRIP_PX", 4)  # one row per strip
    lazy = validate_arrays(
        _plants(), score=da.from_array(SCORE, chunks=2), reasons=da.from_array(REASONS, chunks=2),
        cf=da.from_array(CF, chunks=2), **args,
    )  # fmt: skip
    assert lazy[0] == whole[0]
    pd.testing.assert_frame_equal(lazy[1], whole[1])
    other_seed = validate_arrays(_plants(), score=SCORE, reasons=REASONS, cf=CF, seed=3, **args)
    assert (
        other_seed[0]["auc_operating_vs_random_eligible"]
        != whole[0]["auc_operating_vs_random_eligible"]
    )  # the draw matters, so the equality above checks it


def test_gem_csv_bad_longitude_kept_and_reported(tmp_path: Path) -> None:
    csv = tmp_path / "gem.csv"
    csv.write_text(
        "Project Name,Phase Name,Capacity (MW),Status,Start year,Latitude,Longitude\n"
        "Good farm,,50,operating,2016,27.6,102.8\n"
        "Bad farm,Phase II,48,operating,2019,27.8,212.2\n"
    )
    plants = read_plants(csv)
    assert list(plants["name"]) == ["Good farm", "Bad farm"]
    assert plants.geometry.iloc[1] is None or plants.geometry.iloc[1].is_empty
    _, table = validate_arrays(
        plants,
        technology="wind",
        score=SCORE,
        reasons=REASONS,
        cf=None,
        transform=T,
        crs=DEFAULT_CRS,
        legend=LEGEND,
    )
    assert list(table.loc[~table.in_study_area, "name"]) == ["Good farm", "Bad farm (Phase II)"]


def _run_folder(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "rasters").mkdir(parents=True)
    for name, arr in (
        ("wind_score", SCORE),
        ("wind_exclusion_reasons", REASONS),
        ("wind_cf", CF),
    ):
        with rasterio.open(
            run / "rasters" / f"{name}.tif", "w", driver="GTiff", width=4, height=4, count=1,
            dtype=arr.dtype, crs=DEFAULT_CRS.to_wkt(), transform=T,
        ) as dst:  # fmt: skip
            dst.write(arr, 1)
    meta = {"rules": {"wind": {"legend": [list(b) for b in LEGEND], "forced_bits": 0}}}
    (run / "run.json").write_text(json.dumps(meta))
    return run


def test_validate_command_on_a_user_plant_list(tmp_path: Path) -> None:
    run = _run_folder(tmp_path)
    gpkg = tmp_path / "mine.gpkg"
    _plants().to_file(gpkg, engine="pyogrio")
    res = CliRunner().invoke(cli, ["validate", str(run), "--plants", str(gpkg)])
    assert res.exit_code == 0, res.output
    assert "2/3 operating plants on eligible land" in res.output
    got = pd.read_csv(run / "validation.csv").iloc[0]
    assert got["auc_operating_vs_random_eligible"] == pytest.approx(27 / 39, abs=1e-4)
    per_plant = pd.read_csv(run / "validation_plants.csv")
    assert len(per_plant) == 5
    # the library function gives the same answer without writing
    again = validate_run(run, gpkg, write=False)
    assert again.iloc[0]["operating_on_eligible"] == 2


def test_validate_command_needs_a_plant_list(tmp_path: Path) -> None:
    run = _run_folder(tmp_path)
    res = CliRunner().invoke(cli, ["validate", str(run)])
    assert res.exit_code == 2 and "pass --plants FILE" in res.output


def test_report_section_lists_applied_missing_and_outside() -> None:
    from sitekit.outputs.report import report_section

    prov = {
        "rules": {
            "wind": {
                "eligible_share": 0.9,
                "eligible_share_without_rules": 0.95,
                "study_area_km2": 100.0,
                "rules": [
                    {"id": "water_no_pv_wind", "name_zh": "水", "name_en": "water",
                     "status": "applied", "layer": "water", "removed_km2": 5.0,
                     "removed_only_km2": 0.0, "citation": "水河湖〔2022〕216号"},
                    {"id": "eco_redline", "name_zh": "红线", "name_en": "redline",
                     "status": "layer_missing", "citation": "自然资发〔2022〕142号"},
                ],
            }
        },
        "validation": [{"technology": "wind", "auc_operating_vs_random_eligible": 0.55}],
        "existing_plants": {"wind": {"outside": ["Sichuan Xichang Wanao wind farm"]}},
    }  # fmt: skip
    html = report_section(prov)
    assert "NOT applied: layer missing" in html and "自然资发〔2022〕142号" in html
    assert "95.0 % with the recipe's own constraints, 90.0 % with the rules" in html
    assert "Sichuan Xichang Wanao wind farm" in html and "0.55" in html
    assert report_section({}) == ""
