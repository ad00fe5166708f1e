"""End to end on the embedded four-prefecture data at a coarse grid: laziness, outputs,
area bookkeeping, determinism across chunking / workers, and a run on an external scheduler."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
from click.testing import CliRunner
from conftest import EMBEDDED, REPO

from sitekit.cli import cli, register
from sitekit.engine.pipeline import Pipeline
from sitekit.io.catalog import Catalog
from sitekit.specs.recipe import load_recipe

register()
RES = "5000"  # m: coarse enough for CI, every step still runs


def test_building_the_graph_computes_nothing() -> None:
    cat = Catalog(EMBEDDED)
    grid = cat.grid(5000)
    pipe = Pipeline(cat, grid)
    started: list[int] = []

    class Spy(dask.callbacks.Callback):
        def _start(self, dsk):
            started.append(len(dsk))

    with Spy():
        for name in ("pv.yaml", "wind.yaml"):
            recipe, _ = load_recipe(REPO / "pipelines" / name)
            g = pipe.technology(recipe)
            assert isinstance(g.score.data, dask.array.Array)
        pipe.connection_distance(recipe, g.constraints.masks.get("nobuild"))
    assert started == []


def test_cached_constraints_are_keyed_by_what_they_depend_on(tmp_path: Path) -> None:
    """The cached exclusion reasons follow the recipe's constraints and its grid layer (a
    threshold may use grid_distance), not its weights; the connection distance follows the
    settings of its forbidden constraint."""
    from sitekit.engine.cache import LayerCache

    cat = Catalog(EMBEDDED)
    grid = cat.grid(5000)
    pipe = Pipeline(cat, grid, LayerCache(tmp_path, grid, "inputs"))

    def reasons(*overrides: str) -> str:
        recipe, _ = load_recipe(REPO / "pipelines" / "pv.yaml", list(overrides))
        return pipe.constraints(recipe).reasons.data.name

    def connection(*overrides: str) -> str:
        recipe, _ = load_recipe(REPO / "pipelines" / "pv.yaml", list(overrides))
        fresh = Pipeline(cat, grid, pipe.cache)  # no memo between the two recipes
        forbidden = fresh.constraints(recipe).masks["nobuild"]
        return fresh.connection_distance(recipe, forbidden).data.name

    base = reasons()
    assert reasons("criteria.0.weight=0.9") == base  # weights: the same entry
    assert reasons("grid.layer=some_other_points") != base
    assert reasons("constraints.steep.value=30") != base
    assert connection("constraints.nobuild.buffer_m=900") != connection()


def test_one_pipeline_gives_one_connection_layer_per_line_setting(tmp_path: Path) -> None:
    """In one run (one Pipeline, its memo), the connection distance follows everything its
    masks depend on: the forbidden constraint's settings and the footprints of built plants
    (zone settings: density), not just the grid section."""
    from sitekit.engine import rules
    from sitekit.engine.cache import LayerCache

    cat = Catalog(EMBEDDED)
    grid = cat.grid(5000)
    pipe = Pipeline(cat, grid, LayerCache(tmp_path, grid, "inputs"))

    def name(*overrides: str) -> str:
        sets = ["grid.forbidden=[nobuild, existing_plants]", *overrides]
        g = pipe.technology(load_recipe(REPO / "pipelines" / "wind.yaml", sets)[0])
        assert rules.forbidden_mask(g).name == "nobuild+existing_plants"
        return pipe.connection_distance(g.recipe, rules.forbidden_mask(g)).data.name

    base = name()
    assert name() == base  # the same settings: the same layer
    assert name("constraints.nobuild.name_en=No-go areas") == base  # a label is not a setting
    assert name("constraints.nobuild.buffer_m=900") != base
    assert name("sites.power_density_mw_per_km2=5") != base  # the built farms' footprints


#: the one warning the embedded data gives: two GEM wind-farm rows with impossible coordinates
#: are named, not used (layers/sichuan-west/DATA.md)
EXPECTED_WARNING = "outside the study area or with impossible coordinates"


def _demo(out: Path, *extra: str) -> None:
    import warnings

    from sitekit.errors import SitekitWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SitekitWarning)
        _demo_run(out, *extra)
    for w in caught:
        if issubclass(w.category, SitekitWarning):
            assert EXPECTED_WARNING in str(w.message), str(w.message)


def _demo_run(out: Path, *extra: str) -> None:
    cache = out.parent / "cache"
    res = CliRunner().invoke(
        cli,
        [
            "--quiet",
            "demo",
            "--resolution",
            RES,
            "--out",
            str(out),
            "--force",
            "--cache-dir",
            str(cache),
            *extra,
        ],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "out"
    _demo(out, "--workers", "1")
    return out


def test_demo_writes_every_output(demo_run: Path) -> None:
    for name in (
        "elevation",
        "slope",
        "aspect",
        "pv_yield",
        "wind_cf",
        "exclusion_reasons",
        "grid_distance",
        "pv_score",
        "wind_score",
        "pv_lcoe",
        "wind_lcoe",
    ):
        with rasterio.open(demo_run / "rasters" / f"{name}.tif") as src:
            assert src.crs is not None and src.count == 1
    # PV and wind share their line settings: one connection layer, no per-technology copy
    tifs = {p.name for p in (demo_run / "rasters").glob("*connection_distance.tif")}
    assert tifs == {"connection_distance.tif"}
    layers = {name for name, _ in pyogrio.list_layers(demo_run / "sitekit.gpkg")}
    assert {
        "prefectures",
        "counties",
        "pv_sites",
        "wind_sites",
        "grid_points",
        "ps_pairs",
        "ps_reservoirs",
    } <= layers
    pv = gpd.read_file(demo_run / "sitekit.gpkg", layer="pv_sites")
    for col in (
        "site_id",
        "prefecture",
        "county",
        "area_km2",
        "capacity_mw",
        "energy_gwh",
        "capacity_factor",
        "mean_score",
        "lcoe_cny_per_kwh",
        "grid_distance_km",
        "grid_point_name",
        "rank",
    ):
        assert col in pv.columns
    assert len(pv) > 0 and pv["rank"].min() == 1
    assert (demo_run / "map.html").stat().st_size > 100_000
    assert (demo_run / "report.html").exists()
    run = json.loads((demo_run / "run.json").read_text(encoding="utf-8"))
    assert run["demo_terrain"] is True and "modelled" in run["modelled"]["solar"]
    # where the workers' time went: seconds per task name, largest first
    task_s = list(run["task_seconds"].values())
    assert 0 < len(task_s) <= 15 and task_s == sorted(task_s, reverse=True) and task_s[0] > 0
    with rasterio.open(demo_run / "rasters" / "elevation.tif") as src:
        assert "demo terrain" in json.dumps(src.tags())


def test_area_bookkeeping_adds_up(demo_run: Path) -> None:
    summary = pd.read_csv(demo_run / "summary.csv", encoding="utf-8-sig")
    pref = gpd.read_file(demo_run / "sitekit.gpkg", layer="prefectures")
    with rasterio.open(demo_run / "rasters" / "pv_eligible.tif") as src:
        pixel_km2 = abs(src.transform.a * src.transform.e) / 1e6
    pv = summary[summary["technology"] == "pv"]
    assert set(pv["prefecture"]) == set(pref["name_en"])
    # eligible area never exceeds a prefecture's area; the sum never exceeds the study area
    areas = dict(zip(pref["name_en"], pref.to_crs(pref.crs).area / 1e6, strict=True))
    for _, row in pv.iterrows():
        assert 0 <= row["eligible_km2"] <= areas[row["prefecture"]] * 1.001 + pixel_km2
    assert pv["eligible_km2"].sum() <= 300_483 * 1.001
    sites = gpd.read_file(demo_run / "sitekit.gpkg", layer="pv_sites")
    for zone, grp in sites.groupby("prefecture"):
        row = pv[pv["prefecture"] == zone].iloc[0]
        assert row["potential_mw"] == pytest.approx(grp["capacity_mw"].sum(), rel=1e-6)
        assert row["n_sites"] == len(grp)


def test_same_results_on_external_scheduler_other_chunks(demo_run: Path, tmp_path: Path) -> None:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        out = tmp_path / "again"
        _demo(out, "--scheduler", cluster.scheduler_address, "--chunks", "64", "--no-map")
    assert (out / "summary.csv").read_bytes() == (demo_run / "summary.csv").read_bytes()
    for tech in ("pv", "wind"):
        a = (demo_run / f"{tech}_sites.csv").read_bytes()
        b = (out / f"{tech}_sites.csv").read_bytes()
        assert a == b
    for name in ("pv_score", "wind_cf", "exclusion_reasons", "grid_distance", "slope"):
        with (
            rasterio.open(demo_run / "rasters" / f"{name}.tif") as s1,
            rasterio.open(out / "rasters" / f"{name}.tif") as s2,
        ):
            np.testing.assert_array_equal(s1.read(1), s2.read(1))


def test_in_process_workers_give_the_same_results(demo_run: Path, tmp_path: Path) -> None:
    # --no-processes: the local workers are thread pools in this process (no pickling)
    out = tmp_path / "threads"
    _demo(out, "--no-processes", "--workers", "2", "--threads-per-worker", "1", "--no-map",
          "--no-cache")  # fmt: skip
    assert (out / "summary.csv").read_bytes() == (demo_run / "summary.csv").read_bytes()
    for name in ("pv_score", "wind_cf", "grid_distance"):
        with (
            rasterio.open(demo_run / "rasters" / f"{name}.tif") as s1,
            rasterio.open(out / "rasters" / f"{name}.tif") as s2,
        ):
            np.testing.assert_array_equal(s1.read(1), s2.read(1))


def test_existing_output_needs_force(demo_run: Path) -> None:
    res = CliRunner().invoke(cli, ["demo", "--resolution", RES, "--out", str(demo_run)])
    assert res.exit_code == 2
    assert "exists; pass --force" in res.output


def test_weights_only_rerun_reads_the_cache(demo_run: Path) -> None:
    out = demo_run.parent / "reweighted"
    _demo(out, "--workers", "1", "--no-map", "--set", "criteria.slope.weight=0.5")
    cache = json.loads((out / "run.json").read_text(encoding="utf-8"))["cache"]
    assert cache["misses"] == []
    assert {"slope", "pv_yield", "wind_cf", "grid_distance", "connection_distance"} <= set(
        cache["hits"]
    )
    # vector burns and the pumped-storage pairs are read back too ...
    assert {"burn_study_fraction", "burn_nobuild", "burn_prefecture_id", "ps_pairs"} <= set(
        cache["hits"]
    )
    assert (out / "ps_pairs.csv").read_bytes() == (demo_run / "ps_pairs.csv").read_bytes()
    # the hosting step kept its least-cost search in the run's cache (one cost surface)
    assert len(list((demo_run.parent / "cache" / "mcp").glob("*.npz"))) == 1
    # ... and only the rasters the weights change are compressed again; the rest are copies
    assert sorted(cache["rasters_written"]) == ["pv_score.tif", "wind_score.tif"]
    assert {"slope.tif", "pv_lcoe.tif", "exclusion_reasons.tif"} <= set(cache["rasters_copied"])
    for name in ("pv_lcoe.tif", "exclusion_reasons.tif"):
        assert (out / "rasters" / name).read_bytes() == (demo_run / "rasters" / name).read_bytes()
    with (
        rasterio.open(demo_run / "rasters" / "pv_score.tif") as a,
        rasterio.open(out / "rasters" / "pv_score.tif") as b,
    ):
        assert not np.array_equal(a.read(1), b.read(1), equal_nan=True)
    # the scores changed, the cached layers did not
    with (
        rasterio.open(demo_run / "rasters" / "slope.tif") as a,
        rasterio.open(out / "rasters" / "slope.tif") as b,
    ):
        np.testing.assert_array_equal(a.read(1), b.read(1))


def test_a_worker_killed_mid_run_is_retried_and_outputs_are_intact(
    demo_run: Path, tmp_path: Path
) -> None:
    """SIGKILL one of two worker processes once 40 tasks have finished: the nanny restarts it, the
    scheduler recomputes what it held, and every output equals the undisturbed run's."""
    import os
    import signal

    from distributed import Client, LocalCluster
    from distributed.diagnostics.plugin import SchedulerPlugin

    class KillOnce(SchedulerPlugin):
        def __init__(self, pid: int, after: int) -> None:
            self.pid, self.after, self.done, self.killed_at, self.done_after = pid, after, 0, 0, 0

        def transition(self, key, start, finish, *args, **kwargs) -> None:  # noqa: ANN001
            if finish != "memory":
                return
            self.done += 1
            if self.killed_at:
                self.done_after += 1
            elif self.done >= self.after:
                self.killed_at = self.done
                os.kill(self.pid, signal.SIGKILL)

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:  # fmt: skip
        with Client(cluster) as client:
            pids = client.run(os.getpid)
        victim = KillOnce(pid=next(iter(pids.values())), after=40)
        cluster.scheduler.add_plugin(victim, name="kill-once")
        out = tmp_path / "killed"
        _demo(out, "--scheduler", cluster.scheduler_address, "--no-map")
        with Client(cluster) as client:
            survivors = client.run(os.getpid)
    assert victim.killed_at == 40 and victim.done_after > 0, "the kill did not land mid-run"
    assert set(pids.values()) != set(survivors.values())  # the nanny started a new worker
    assert (out / "summary.csv").read_bytes() == (demo_run / "summary.csv").read_bytes()
    for tech in ("pv", "wind"):
        assert (out / f"{tech}_sites.csv").read_bytes() == (
            demo_run / f"{tech}_sites.csv"
        ).read_bytes()
    for name in ("pv_score", "wind_score", "exclusion_reasons", "grid_distance", "slope"):
        with rasterio.open(demo_run / "rasters" / f"{name}.tif") as s1, \
                rasterio.open(out / "rasters" / f"{name}.tif") as s2:  # fmt: skip
            np.testing.assert_array_equal(s1.read(1), s2.read(1))
    assert not list(out.parent.glob(".killed*")), "a staging folder was left behind"


def test_task_seconds_sums_compute_time_per_task_name() -> None:
    from sitekit.engine.run import task_seconds

    def rec(key, *spans):
        return {
            "key": key,
            "startstops": [{"action": a, "start": s, "stop": e} for a, s, e in spans],
        }

    stream = [
        rec(("slope-abc123", 0, 0), ("compute", 0.0, 1.5)),
        rec(("slope-abc123", 0, 1), ("transfer", 0.0, 9.0), ("compute", 2.0, 3.0)),
        rec("distance-ffee01", ("compute", 0.0, 4.0)),
        rec(("score-77", 1, 1), ("compute", 1.0, 1.25)),
    ]
    assert task_seconds(stream) == {"distance": 4.0, "slope": 2.5, "score": 0.25}
    assert task_seconds(stream, top=1) == {"distance": 4.0}


#: blocks read by _count_read (an in-process worker runs it: the list is shared)
_READS: list[int] = []


def _count_read(b: np.ndarray) -> np.ndarray:
    _READS.append(1)  # list.append is atomic under the GIL
    return b + 1.0


def test_persist_builders_read_the_persisted_layers() -> None:
    """A builder (the pumped-storage search) gets the persisted layers: its graph reads their
    futures, so the layers' upstream blocks are computed once (a delayed graph over the lazy
    layers made dask copy them; the 250 m demo read its DEM 7 times)."""
    import dask.array as da
    from distributed import Client, LocalCluster

    from sitekit.engine.run import persist

    _READS.clear()
    base = da.zeros((64, 64), chunks=16, dtype=np.float32)
    dem = base.map_blocks(_count_read, dtype=np.float32, meta=np.empty((0, 0), np.float32))
    arrays = {
        "elevation": dem,
        "slope": dem * 2.0,
        "ps": lambda layers, stage: (
            (stage is None or pytest.fail("stage without a store"))
            and dask.delayed(np.sum)(layers["elevation"][10:40, 5:50].rechunk(8))
        ),
    }
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None)
        as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        layers, others, task_s = persist(client, arrays, quiet=True, label="test")
        assert float(others["ps"]) == 30 * 45
        assert set(layers) == {"elevation", "slope"} and task_s
    assert len(_READS) == dem.npartitions


def test_the_study_fraction_is_read_through_the_cache_only(tmp_path: Path) -> None:
    """With a cache, every layer that uses the study fraction (elevation mask, score, the
    constraints' inclusion fraction) reads the one cache-wrapped burn: the raw burn feeds only
    the cache's save step, so a re-run never burns the study area again. The grid itself holds
    no cache (a plain value)."""
    from sitekit.engine.cache import LayerCache

    cat = Catalog(EMBEDDED)
    grid = cat.grid(5000)
    raw = grid.study_fraction().data.name
    pipe = Pipeline(cat, grid, LayerCache(tmp_path, grid, "inputs"))
    recipe, _ = load_recipe(REPO / "pipelines" / "pv.yaml")
    g = pipe.technology(recipe)
    cached = pipe.study_fraction.data.name
    assert cached != raw and cached.startswith("cache-save-")
    for arr in (g.score, g.inclusion, pipe.elevation, g.constraints.inclusion_fraction):
        deps = arr.data.dask.dependencies
        assert {k for k, d in deps.items() if raw in d} <= {cached}, arr.name
    assert Pipeline(cat, grid).study_fraction is grid.study_fraction()  # no cache: the grid's
    assert not hasattr(grid, "_cache")


def test_run_keeps_the_names_it_moved_to_cluster_and_staging() -> None:
    """The job's cluster set-up and staging live in their own modules; ``sitekit.engine.run``
    re-exports them, and calls ``dask_client``/``staged_output`` through its own globals (the
    bad-input harness replaces ``sitekit.engine.run.dask_client``)."""
    from sitekit.engine import cluster, run, staging

    for name in ("check_cluster_options", "check_scheduler", "check_grid_size", "dask_client",
                 "local_cluster_config", "persist", "task_seconds", "tune_malloc"):  # fmt: skip
        assert getattr(run, name) is getattr(cluster, name), name
    assert run.staged_output is staging.staged_output
    assert {"dask_client", "staged_output"} <= set(run._run_once.__code__.co_names)
