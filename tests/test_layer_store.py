"""The run's Zarr layer store (issue 27): layers computed once into it, read back lazily with
their blocks, builders reading the store, the store removed at the end of the run."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import dask
import numpy as np
import pytest
from conftest import EMBEDDED, REPO

from sitekit.engine import layerstore
from sitekit.errors import SitekitWarning

_READS: list[int] = []
_LOCK = threading.Lock()


def _count_read(b: np.ndarray) -> np.ndarray:
    with _LOCK:
        _READS.append(1)
    return b + 1.0


@pytest.fixture
def client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None)
        as cluster,
        Client(cluster) as c,
    ):  # fmt: skip
        yield c


def test_layers_go_through_the_store_once(tmp_path: Path, client) -> None:
    """Every layer is written into the Zarr store in one graph (shared blocks computed once),
    comes back as a lazy array reading the store with the same blocks and values, and the
    builder (the pumped-storage search) reads the stored layers, not their upstream graph."""
    import dask.array as da
    import xarray as xr
    import zarr

    from sitekit.engine.cluster import persist

    _READS.clear()
    base = da.zeros((64, 80), chunks=(16, 32), dtype=np.float32)
    dem = base.map_blocks(_count_read, dtype=np.float32, meta=np.empty((0, 0), np.float32))
    irregular = da.ones((64, 80), chunks=((10, 54), (30, 50)), dtype=np.uint8)
    store = tmp_path / "layers.zarr"
    arrays = {
        "elevation": xr.DataArray(dem, dims=("y", "x"), attrs={"units": "m"}),
        "slope": dem * 2.0,
        "mask": dem > 0.5,
        "odd": irregular,
        "ps": lambda layers, stage: dask.delayed(np.sum)(
            layers["elevation"][10:40, 5:50].rechunk(8)
        ),
    }
    layers, others, task_s = persist(
        client, arrays, quiet=True, label="test", store=store, store_attrs={"_CRS": {"wkt": "x"}}
    )
    assert len(_READS) == dem.npartitions  # one graph: the DEM's blocks computed once
    assert float(others["ps"]) == 30 * 45 and task_s
    assert set(layers) == {"elevation", "slope", "mask", "odd"}
    for k, arr in layers.items():
        src = arrays[k].data if k == "elevation" else arrays[k]
        assert arr.chunks == src.chunks and arr.dtype == src.dtype, k
        assert not any(str(key[0] if isinstance(key, tuple) else key).startswith("_count_read")
                       for key in arr.dask), k  # fmt: skip
    np.testing.assert_array_equal(layers["slope"].compute(), np.full((64, 80), 2, np.float32))
    np.testing.assert_array_equal(layers["odd"].compute(), np.ones((64, 80), np.uint8))
    assert len(_READS) == dem.npartitions  # reading the layers never recomputes them
    z = zarr.open_group(str(store), mode="r")
    assert z["elevation"].attrs["units"] == "m" and z["slope"].attrs["_CRS"] == {"wkt": "x"}
    assert z["elevation"].metadata.dimension_names == ("y", "x")
    assert layerstore.size_bytes(store) > 0
    # xarray reads the store as one dataset
    ds = xr.open_zarr(store, consolidated=False)
    assert {"elevation", "slope", "mask", "odd"} <= set(ds.data_vars)


def test_a_builder_stages_its_intermediates_in_the_store(tmp_path: Path, client) -> None:
    """A builder's ``stage`` computes its arrays into the store at once and hands them back
    as lazy reads of the store: the staged step is computed once, later steps read the disk."""
    import dask.array as da
    import zarr

    from sitekit.engine.cluster import persist

    _READS.clear()
    base = da.zeros((40, 24), chunks=(16, 16), dtype=np.float32)
    seen: dict = {}

    def build(layers, stage):
        mid = (
            layers["a"].map_blocks(_count_read, dtype=np.float32, meta=np.empty((0, 0), np.float32))
            * 3.0
        )
        staged = stage({"_mid": mid}, "staging")
        seen["graph"] = dict(staged["_mid"].__dask_graph__())
        seen["after_stage"] = len(_READS)
        return dask.delayed(np.sum)(staged["_mid"] + staged["_mid"])

    layers, others, _ = persist(client, {"a": base, "ps": build}, quiet=True, label="t",
                                store=tmp_path / "s.zarr")  # fmt: skip
    assert seen["after_stage"] == base.npartitions  # computed by the stage, before the rest
    assert len(_READS) == base.npartitions  # the second use read the disk, not the step again
    assert not any("_count_read" in str(k) for k in seen["graph"])
    assert float(others["ps"]) == 2 * 3.0 * 40 * 24
    z = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    np.testing.assert_array_equal(z["_mid"][:], np.full((40, 24), 3.0, np.float32))


def test_layers_are_written_in_bands_of_block_rows(tmp_path: Path) -> None:
    """The layers' writes go band after band of whole block rows (memory: no block waits for a
    write dask schedules later); every block is written once, whatever each layer's chunks,
    and the store then holds every layer whole."""
    import dask.array as da
    import zarr

    _READS.clear()
    base = da.arange(10 * 8, dtype=np.float32).reshape(10, 8).rechunk(4)
    counted = base.map_blocks(_count_read, dtype=np.float32, meta=np.empty((0, 0), np.float32))
    arrays = {"a": counted, "b": counted * 2, "c": da.ones((10, 8), chunks=(3, 8), dtype=np.uint8)}
    writes = layerstore.write(arrays, tmp_path / "s.zarr")
    parts = layerstore.bands(writes, band_px=8 * 4)  # one block row of "a" per band
    assert [(r0, r1) for r0, r1, _ in parts] == [(0, 4), (4, 8), (8, 10)]
    # "c" (3-row blocks starting at 0, 3, 6, 9): each block in the band holding its first row
    assert [sum(p.npartitions for p in part) for _, _, part in parts] == [2 + 2 + 2, 2 + 2 + 1,
                                                                        2 + 2 + 1]  # fmt: skip
    for _, _, part in parts:
        dask.compute(*part, scheduler="sync")
    assert len(_READS) == base.npartitions  # shared by "a" and "b": once per block
    z = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    np.testing.assert_array_equal(
        z["b"][:], 2 * (np.arange(80, dtype=np.float32).reshape(10, 8) + 1)
    )
    np.testing.assert_array_equal(z["c"][:], np.ones((10, 8), np.uint8))
    assert layerstore.bands({}) == []


def test_without_a_store_layers_are_persisted(client) -> None:
    """An external scheduler (no shared disk assumed) keeps the old in-memory persist."""
    import dask.array as da
    from distributed import futures_of

    from sitekit.engine.cluster import persist

    layers, _, _ = persist(client, {"a": da.ones((8, 8), chunks=4)}, quiet=True, label="t")
    assert futures_of(layers["a"])


def test_scratch_store_is_removed(tmp_path: Path) -> None:
    """The store is removed when the run ends, also when it fails; disabled, nothing is made."""
    with layerstore.scratch_store(tmp_path) as store:
        assert store == tmp_path / layerstore.STORE_NAME
        store.mkdir()
        (store / "zarr.json").write_text("{}")
    assert not store.exists()
    with pytest.raises(RuntimeError), layerstore.scratch_store(tmp_path) as store:
        store.mkdir()
        raise RuntimeError("killed")
    assert not store.exists() and list(tmp_path.iterdir()) == []
    with layerstore.scratch_store(tmp_path, enabled=False) as none:
        assert none is None


def test_a_run_leaves_no_store_and_writes_nothing_outside_its_stage(tmp_path: Path) -> None:
    """The run's store is made inside its staging folder (sitekit's own) and is gone from the
    output folder at the end."""
    from sitekit.engine import run

    seen: list[Path] = []
    real = run.persist

    def spy(client, arrays, quiet, label, store=None, store_attrs=None):
        seen.append(store)
        return real(client, arrays, quiet, label, store=store, store_attrs=store_attrs)

    out = tmp_path / "out"
    opts = run.RunOptions(catalog=EMBEDDED, out=out, resolution_m=5000, workers=1,
                          processes=False, quiet=True, make_map=False)  # fmt: skip
    mp = pytest.MonkeyPatch()
    mp.setattr(run, "persist", spy)
    mp.setattr(layerstore, "MIN_PX", 0)  # a 5 km grid goes through the store too
    try:
        run.run_job([REPO / "pipelines" / "pv.yaml"], opts)
    finally:
        mp.undo()
    assert seen and seen[0] is not None
    assert seen[0].name == layerstore.STORE_NAME and seen[0].parent.name.endswith(".part")
    assert seen[0].parent.parent == tmp_path and not seen[0].exists()
    assert not list(out.rglob("*.zarr")) and (out / "run.json").exists()


def test_only_large_grids_go_through_the_store() -> None:
    """The 90 m study grid (75 Mpx) is computed into the store; the 250 m demo (9.7 Mpx), whose
    layers fit in worker memory, is not (the store cost it +12 % wall time)."""
    assert layerstore.worth_storing(75_000_000)
    assert not layerstore.worth_storing(2648 * 3672)


def _run(tmp_path: Path, name: str, store: bool, cache: bool, mp: pytest.MonkeyPatch):
    from sitekit.engine import run

    out = tmp_path / name
    opts = run.RunOptions(catalog=EMBEDDED, out=out, resolution_m=5000, workers=1,
                          processes=False, quiet=True, make_map=False,
                          cache_dir=tmp_path / "cache" if cache else None)  # fmt: skip
    mp.setattr(layerstore, "MIN_PX", 0 if store else 10**12)
    with warnings.catch_warnings():  # the wind farms outside the study area: named elsewhere
        warnings.simplefilter("ignore", SitekitWarning)
        run.run_job([REPO / "pipelines" / "pv.yaml", REPO / "pipelines" / "wind.yaml"], opts)
    return out


def test_intermediates_are_written_first_and_read_back(tmp_path: Path) -> None:
    """With the store, the shared intermediates (the cache's entries: elevation, slope, yield,
    burns …) are written to disk in a first step and the layers' graph is rebuilt to read them:
    no layer graph then recomputes an intermediate. Without ``--cache-dir`` they go to a private
    cache in the staging folder, gone at the end. Every table equals the run without the store
    (the 250 m path), and a second run with the cache has nothing left to write first."""
    import pandas as pd

    from sitekit.engine import run
    from sitekit.engine.cache import LayerCache

    written: list[set[str]] = []  # the entries of each first-step compute
    rebuilt_saves: list[int] = []  # entries a rebuilt graph would still save
    real_m, real_layers = LayerCache.materialise, run._layer_graph

    def spy_m(self, saves, compute):
        written.append({f.name for f in saves})
        return real_m(self, saves, compute)

    def spy_layers(job):
        arrays = real_layers(job)
        cache = job.pipe.cache
        if cache is not None and cache.ready:  # a graph rebuilt after a first step
            names = set()
            for a in arrays.values():
                names.update(getattr(a, "data", a).__dask_graph__().layers)
            rebuilt_saves.append(sum(n.startswith("cache-save-") for n in names))
        return arrays

    mp = pytest.MonkeyPatch()
    mp.setattr(LayerCache, "materialise", spy_m)
    mp.setattr(run, "_layer_graph", spy_layers)
    try:
        plain = _run(tmp_path, "plain", store=False, cache=False, mp=mp)
        assert written == []
        private = _run(tmp_path, "private", store=True, cache=False, mp=mp)
        # level by level: burns, then what reads them (elevation), then slope …, each once
        steps = list(written)
        assert len(steps) >= 3 and sum(map(len, steps)) == len(set().union(*steps)) >= 5
        assert any(n.startswith("burn_") for n in steps[0])
        assert not any(n.startswith(("slope-", "aspect-")) for n in steps[0] | steps[1])
        assert rebuilt_saves[-1] == 0  # the layers' graph reads every intermediate
        written.clear()
        cached = _run(tmp_path, "cached", store=True, cache=True, mp=mp)
        assert len(written) == len(steps) and rebuilt_saves[-1] == 0
        written.clear()
        again = _run(tmp_path, "again", store=True, cache=True, mp=mp)
        assert written == []  # every entry complete: nothing to write first
    finally:
        mp.undo()
    for out in (private, cached, again):
        assert not list(out.rglob("intermediates.cache")) and not list(out.parent.glob("*.part"))
        for csv in sorted(plain.glob("*.csv")):
            pd.testing.assert_frame_equal(pd.read_csv(out / csv.name), pd.read_csv(csv))
    assert len(list(plain.glob("*.csv"))) >= 3
