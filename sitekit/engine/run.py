"""Run a job: build one lazy graph for all recipes, compute it on a Dask client, write outputs.

:func:`run_job` is a sequence of named phases (:func:`_run_once`): load the specs, build the grid,
build the graph, compute the layers, write the rasters, extract the sites, the technical
potential, the tables, the GeoPackage, the map and report, and finish (``run.json``, the cache
commit). What the phases share is a :class:`Job`. The cluster is :mod:`sitekit.engine.cluster`'s
(a ``LocalCluster`` by default, or any scheduler by address); outputs are written into
:mod:`sitekit.engine.staging`'s staging folder and swapped in at the end, so a killed run leaves
the previous results intact and never a half-written file.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import pandas as pd

from sitekit.engine import rules
from sitekit.engine.cluster import (  # noqa: F401  (re-exported: the CLI, tests, benchmarks)
    BYTES_PER_PX_DISK,
    BYTES_PER_PX_MEMORY,
    IN_PROCESS_MALLOC,
    MAX_LOCAL_WORKERS,
    MIN_WORKER_MEMORY,
    SCHEDULER_TIMEOUT_S,
    WORKER_MALLOC,
    check_cluster_options,
    check_grid_size,
    check_scheduler,
    dask_client,
    local_cluster_config,
    persist,
    task_seconds,
    tune_malloc,
)
from sitekit.engine.layerstore import scratch_store, worth_storing
from sitekit.engine.pipeline import Pipeline, TechGraph
from sitekit.engine.resources import data_root
from sitekit.engine.staging import staged_output, sweep_stale_outputs  # noqa: F401  (re-exported)
from sitekit.errors import InputError, RecipeError
from sitekit.grid import DEFAULT_CHUNK, DEFAULT_CRS, Grid
from sitekit.io.catalog import Catalog
from sitekit.io.ownership import check_replaceable
from sitekit.io.provenance import versions
from sitekit.specs.recipe import Recipe, load_recipe, recipe_digest

#: the folder holding pipelines/, layers/ and maps/ (a checkout, or the wheel's bundled copy)
REPO_ROOT = data_root()
#: pumped-storage search tile edge [px] (with a halo of the maximum separation around each)
PS_TILE_PX = 2048


@dataclass
class RunOptions:
    """Everything a run needs besides the recipes."""

    catalog: Path
    out: Path
    resolution_m: float = 250.0
    crs: Any = DEFAULT_CRS
    export_crs: str | None = None
    chunks: int = DEFAULT_CHUNK
    scheduler: str | None = None
    workers: int | None = None
    threads_per_worker: int | None = None
    # local workers as in-process thread pools (default: faster, see README "Speed and scale")
    # or as processes (True: isolation, a memory limit the nanny enforces by restarting)
    processes: bool = False
    memory_limit: str = "auto"
    force: bool = False
    quiet: bool = False
    overrides: tuple[str, ...] = ()
    pumped_storage: Path | None = None
    make_map: bool = True
    online_tiles: bool = False
    data_roots: tuple[Path, ...] = ()
    map_style: Path | None = None
    cache_dir: Path | None = None  # None: no on-disk cache of intermediate layers
    #: further pumped-storage recipes: each writes its own set into ``out/<recipe name>/``
    extra_pumped_storage: tuple[Path, ...] = ()
    #: refuse a grid larger than this machine's memory/disk before computing (check_grid_size)
    size_check: bool = True
    #: steps run on the finished staging folder before it replaces ``out`` (demo: route, hosting)
    post: Callable[[Path], None] | None = None

    def __post_init__(self) -> None:
        self.catalog = Path(self.catalog)  # str paths from Python users
        self.out = Path(self.out)


@dataclass
class RunResult:
    out: Path
    summary: pd.DataFrame
    sites: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def _inputs_of(recipe_paths: list[Path], opts: RunOptions) -> tuple[Path, ...]:
    """Every input a run reads (an output folder may not hold any of them)."""
    paths = [Path(opts.catalog), Path(opts.catalog).parent, *map(Path, recipe_paths)]
    paths += [Path(p) for p in opts.data_roots]
    if opts.pumped_storage:
        paths.append(Path(opts.pumped_storage))
    if opts.cache_dir is not None:
        paths.append(Path(opts.cache_dir))
    return tuple(paths)


# ------------------------------------------------------------------------------ the job
def run_job(recipe_paths: list[Path], opts: RunOptions) -> RunResult:
    """Run recipes (PV/wind, plus pumped storage if ``opts.pumped_storage``) into ``opts.out``.

    A cache entry that fails its checksum while the run reads it
    (:class:`sitekit.engine.cache.CacheDamagedError`) is reported, dropped, and the run starts again
    without it: a damaged cache never reaches the outputs."""
    import warnings

    from sitekit.engine.cache import CacheDamagedError, drop
    from sitekit.errors import SitekitWarning

    recipe_paths, opts = _extra_runs(list(recipe_paths), opts)
    dropped: list[str] = []
    while True:
        try:
            return _run_once(recipe_paths, opts)
        except Exception as exc:
            bad = _damaged_entry(exc, CacheDamagedError)
            if bad is None or bad.entry in dropped or len(dropped) >= 50:
                raise
            warnings.warn(
                f"{bad}; dropped it, running again without it", SitekitWarning, stacklevel=2
            )
            drop(Path(bad.entry))
            dropped.append(bad.entry)


def _damaged_entry(exc: BaseException | None, kind: type) -> Any:
    """The first ``kind`` exception in ``exc``'s chain (cause/context), or None."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, kind):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _grid_shape(catalog: Catalog, opts: RunOptions) -> tuple[int, int]:
    """(rows, cols) of the study area's bounding box at ``opts.resolution_m`` (no grid made)."""
    import math

    res = float(opts.resolution_m)
    if not (math.isfinite(res) and res > 0):
        raise InputError(f"--resolution {opts.resolution_m}: give a positive number of metres")
    x0, y0, x1, y1 = catalog.study_area.to_crs(opts.crs).total_bounds
    return math.ceil((y1 - y0) / res), math.ceil((x1 - x0) / res)


def _extra_runs(recipe_paths: list[Path], opts: RunOptions) -> tuple[list[Path], RunOptions]:
    """Split off every further recipe of a technology already in the run (and every further
    pumped-storage recipe, ``opts.extra_pumped_storage``): each writes its own complete set of
    outputs into ``OUT/<recipe name>/``, run after the main run on its staging folder, so the
    names of one never overwrite another's and all land together. Every recipe is validated
    first, before anything heavy starts."""
    from dataclasses import replace

    from sitekit.specs.recipe import load_ps_recipe

    first: list[Path] = []
    later: list[tuple[list[Path], Path | None]] = []
    seen: set[str] = set()
    applied: dict[str, list[str]] = {}  # --set item → the recipes it changed
    if opts.pumped_storage:
        load_ps_recipe(opts.pumped_storage, list(opts.overrides), applied)
    for p in recipe_paths:
        r, _ = load_recipe(p, list(opts.overrides), applied)
        if r.technology in seen:
            later.append(([Path(p)], None))
        else:
            first.append(Path(p))
            seen.add(r.technology)
    for ps in opts.extra_pumped_storage:
        load_ps_recipe(ps, list(opts.overrides), applied)
        later.append(([], Path(ps)))
    _check_overrides(opts.overrides, applied, [*recipe_paths, *opts.extra_pumped_storage,
                                               *([opts.pumped_storage] if opts.pumped_storage
                                                 else [])])  # fmt: skip
    if not later:
        return recipe_paths, opts
    taken = {p.stem for p in first} | ({Path(opts.pumped_storage).stem}
                                       if opts.pumped_storage else set())  # fmt: skip
    names: list[str] = []
    for paths, ps in later:
        stem = (paths[0] if paths else ps).stem
        name, k = stem, 2
        while name in taken or name in _RESERVED:
            name, k = f"{stem}-{k}", k + 1
        taken.add(name)
        names.append(name)
    then = opts.post

    def post(stage: Path) -> None:
        for (paths, ps), name in zip(later, names, strict=True):
            mine = (paths[0] if paths else ps).name  # the --set items that reached this recipe
            sets = tuple(it for it in opts.overrides if mine in applied.get(it, []))
            sub = replace(opts, out=stage / name, force=False, post=None, pumped_storage=ps,
                          extra_pumped_storage=(), overrides=sets)  # fmt: skip
            run_job(paths, sub)
        if then is not None:
            then(stage)

    return first, replace(opts, post=post, extra_pumped_storage=())


def _check_overrides(
    overrides: tuple[str, ...], applied: dict[str, list[str]], paths: list[Path]
) -> None:
    """Refuse a ``--set`` item that changed no recipe of the run (a typo, or a scope naming no
    recipe); say which recipes an unscoped item reached when it did not reach them all."""
    from sitekit.engine.logs import LOGGER
    from sitekit.specs.recipe import parse_override

    names = [Path(p).name for p in paths]
    for item in overrides:
        scope, key, _ = parse_override(item)
        if item not in applied:
            if len(names) == 1 and applied.get(f"!{item}"):  # the one recipe's own reason
                raise RecipeError(applied[f"!{item}"][0])
            where = f"no recipe named '{scope}'" if scope else f"no recipe has the key '{key}'"
            raise RecipeError(
                f"--set {item}: {where} (recipes of this run: {', '.join(names) or 'none'}); "
                "check the key, or scope it as RECIPE:key=value with RECIPE a technology (pv, "
                "wind, pumped_storage) or a recipe file name"
            )
        if scope is None and len(set(applied[item])) < len(set(names)):
            LOGGER.info(f"--set {item}: applies to {', '.join(applied[item])} only")


#: top-level names of a run folder a further recipe's folder may not take
_RESERVED = {"rasters", "route", "hosting", "overlays"}


@dataclass
class Job:
    """What the phases of one run share, filled in phase by phase (:func:`_run_once`)."""

    opts: RunOptions
    say: Callable[..., None]
    #: every input the run reads (an output folder may not hold any of them)
    inputs: tuple[Path, ...]
    #: (path, recipe, YAML text) of every recipe, the pumped-storage one appended by its phase
    recipes: list[tuple[Path, Recipe, str]]
    catalog: Catalog
    t0: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)
    # -- build_grid / build_graph
    grid: Grid = None  # type: ignore[assignment]
    cache: Any = None  # sitekit.engine.cache.LayerCache, the run's only cache (or None)
    pipe: Pipeline = None  # type: ignore[assignment]
    graphs: list[TechGraph] = field(default_factory=list)
    # -- compute_layers
    stage: Path = None  # type: ignore[assignment]
    #: the run's Zarr layer store (:mod:`sitekit.engine.layerstore`; None: in cluster memory)
    store: Path | None = None
    layers: dict[str, Any] = field(default_factory=dict)  # dask arrays reading the store
    others: dict[str, Any] = field(default_factory=dict)  # gathered results (pumped storage)
    attrs: dict[str, dict] = field(default_factory=dict)  # the lazy layers' attributes
    task_s: dict[str, float] = field(default_factory=dict)
    base_prov: dict[str, Any] = field(default_factory=dict)  # run.json, grown by later phases
    tag_prov: dict[str, Any] = field(default_factory=dict)  # what every file is tagged with
    # -- rasters / sites / potential / tables / geopackage
    rasters: dict[str, Any] = field(default_factory=dict)  # the written rasters, for the map
    feats: dict[str, Any] = field(default_factory=dict)  # connection points per grid layer
    sites: dict[str, Any] = field(default_factory=dict)
    summaries: list[pd.DataFrame] = field(default_factory=list)
    land: dict[str, Any] = field(default_factory=dict)
    candidates: dict[str, Any] = field(default_factory=dict)
    points: Any = None  # the last recipe's connection points and their names (supply curves)
    point_names: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # technical potential, supply curves
    summary: pd.DataFrame = None  # type: ignore[assignment]
    vectors: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def techs(self) -> dict[str, Any]:
        return {g.recipe.technology: g.recipe for g in self.graphs}

    def timed(self, key: str, since: float) -> None:
        self.timings[key] = time.perf_counter() - since


def _run_once(recipe_paths: list[Path], opts: RunOptions) -> RunResult:
    """One attempt of :func:`run_job`: its phases in order."""
    job = _load_specs(recipe_paths, opts)
    _build_grid(job)
    _build_graph(job)
    # the pool is left first: a failed run waits for the GeoTIFF writer before the client closes
    with (
        staged_output(opts.out, opts.force, job.inputs, opts.post) as job.stage,
        # removed before the staging folder is swapped in (and after the workers are gone)
        # large grids only (layerstore.MIN_PX); remote workers may not see this disk
        scratch_store(job.stage, enabled=_stores_layers(job)) as job.store,
        dask_client(opts) as client,
        ThreadPoolExecutor(1, thread_name_prefix="sitekit-cog") as cog_pool,
    ):
        _compute_layers(job, client)
        _tag_provenance(job)
        cogs = _write_rasters(job, cog_pool)
        _sites(job)
        _potential(job)
        _tables(job)
        _geopackage(job)
        if opts.make_map:
            _map_and_report(job)
        job.timings["rasters_s"] = cogs.result()  # the writer's own time; it overlapped the above
        _finish(job)
    job.say(f"results in {opts.out.resolve()}")
    return RunResult(opts.out, job.summary, job.sites, job.timings)


def _stores_layers(job: Job) -> bool:
    """Whether the run computes its layers into a Zarr store (:mod:`sitekit.engine.layerstore`)
    rather than persisting them in cluster memory: large grids on a local cluster."""
    ny, nx = job.grid.shape
    return job.opts.scheduler is None and worth_storing(ny * nx)


# ------------------------------------------------------------------------------ the phases
def _load_specs(recipe_paths: list[Path], opts: RunOptions) -> Job:
    """Check the output folder, load the recipes and the catalogue, refuse a grid this machine
    cannot hold (before the grid is made: an absurd resolution never allocates)."""
    from sitekit.engine.logs import LOGGER

    t0 = time.perf_counter()
    say = (lambda *a: None) if opts.quiet else LOGGER.info
    inputs = _inputs_of(recipe_paths, opts)
    check_replaceable(opts.out, opts.force, inputs)  # before any work or cache folder
    recipes: list[tuple[Path, Recipe, str]] = []
    for p in recipe_paths:
        r, text = load_recipe(p, list(opts.overrides), {})  # checked run-wide in _extra_runs
        recipes.append((Path(p), r, text))
    _check_one_point_layer(recipes)
    catalog = Catalog(opts.catalog, extra_roots=opts.data_roots)
    if opts.size_check:
        check_grid_size(_grid_shape(catalog, opts), opts, Path(opts.out).parent)
    return Job(opts, say, inputs, recipes, catalog, t0=t0)


def connection_layer(layers: dict[str, Any], tech: str) -> Any:
    """The least-cost connection distance [km] a technology's sites use: its own layer when its
    line settings (``grid.forbidden``, ``crossing_costs``, ``cost_terms`` and the constraints
    they name) differ from the first recipe's, else the run's ``connection_distance``."""
    return layers.get(f"{tech}_connection_distance", layers["connection_distance"])


def _check_one_point_layer(recipes: list[tuple[Path, Recipe, str]]) -> None:
    """Refuse PV and wind recipes that connect to different ``grid.layer`` s in one run: the run
    gathers both technologies' capacity at one set of connection points (supply curves,
    hosting) and writes one ``grid_points`` layer, so a second set would be matched by index to
    the first one's names."""
    from sitekit.specs.loader import read_yaml

    if not recipes:
        return
    p0, r0, _ = recipes[0]
    for p, r, _ in recipes[1:]:
        for key in ("layer", "name_field"):
            mine, theirs = getattr(r.grid, key), getattr(r0.grid, key)
            if mine == theirs:
                continue
            _, lines = read_yaml(p)
            line = lines.get(("grid", key), lines.get(("grid",), 1))
            raise RecipeError(
                f"{p}:{line}: grid.{key} '{mine}' is not the '{theirs}' of {p0} (--set "
                "overrides applied): one run gathers PV and wind capacity at one set of "
                f"connection points; give both recipes the same grid.{key}, or run them one at "
                "a time"
            )


def _build_grid(job: Job) -> None:
    """The study grid and the run's layer cache on it (``opts.cache_dir``; None: no cache)."""
    opts, catalog = job.opts, job.catalog
    job.grid = catalog.grid(opts.resolution_m, opts.crs, opts.chunks)
    job.say(job.grid.describe())
    if opts.cache_dir is not None:
        from sitekit.engine.cache import LayerCache, digest

        inputs_key = digest(  # the code's own digest is in every key (cache.code_digest)
            catalog.digest(),
            catalog.content_key(),  # every file a layer reads: VRT members, sidecars too
        )
        job.cache = LayerCache(opts.cache_dir, job.grid, inputs_key)


def _build_graph(job: Job, cache: Any = None) -> None:
    """The lazy graph of every recipe (nothing computes yet), through ``cache`` if given, else
    the run's cache."""
    job.pipe = Pipeline(job.catalog, job.grid, cache if cache is not None else job.cache)
    job.graphs = [job.pipe.technology(r) for _, r, _ in job.recipes]
    if "graph_s" not in job.timings:
        job.timed("graph_s", job.t0)


def _intermediates(job: Job, client: Any) -> dict[str, float]:
    """Write the shared intermediate layers (elevation, slope, aspect, yield, CF, distances,
    burns: the cache's entries) to disk first, then rebuild the graph to read them back.

    In one graph with the layers built on them, dask kept each intermediate block in worker
    memory until its last consumer ran: at 90 m ~4 GiB were held at once (slope, elevation,
    aspect, masks, each a whole layer). Written first, none is held; the layers' graph then
    reads each block from disk where it is needed. Without ``--cache-dir`` the run uses a
    private cache in its staging folder (removed with the layer store). Returns the worker
    seconds per task name of this step."""
    import xarray as xr
    from distributed import get_task_stream, wait

    from sitekit.engine import logs
    from sitekit.engine.cache import LayerCache
    from sitekit.engine.layerstore import SCRATCH_CACHE

    cache = job.cache
    if cache is None:
        cache = LayerCache(job.store.parent / SCRATCH_CACHE, job.grid, "run")
        _build_graph(job, cache)
    step = 0
    with get_task_stream(client) as stream:
        while True:
            arrays = _layer_graph(job)
            saves = cache.saving([getattr(a, "data", a) for a in arrays.values()
                                  if isinstance(a, xr.DataArray)])  # fmt: skip
            if not saves:
                break
            # level by level (burns, then elevation, then slope …): in one graph the consumers'
            # priorities left each level's blocks in memory (13.5 GiB after 5 min at 30 m)
            step += 1
            label = f"writing intermediate layers, step {step}"

            def compute(collections: list[Any], label: str = label) -> None:
                futures = client.compute(collections)
                if not job.opts.quiet:
                    logs.progress(futures, label)
                wait(futures)
                for f in futures:
                    f.result()  # a failed block raises here

            cache.materialise(cache.first(saves) or saves, compute)  # (a DAG has a first)
            _build_graph(job, cache)
    return task_seconds(stream.data)


def _layer_graph(job: Job) -> dict[str, Any]:
    """The named lazy layers a run computes (shared intermediates computed once)."""
    pipe = job.pipe
    arrays: dict[str, Any] = {
        "elevation": pipe.elevation,
        "slope": pipe.slope,
        "aspect": pipe.aspect,
        "hillshade": pipe.hillshade,
        "study_fraction": pipe.study_fraction,
    }
    for key, (ids, _, _) in pipe.zones.items():
        arrays[f"{key}_id"] = ids
    for g in job.graphs:
        t = g.recipe.technology
        arrays[f"{t}_score"] = g.score
        arrays[f"{t}_eligible"] = g.eligible
        arrays[f"{t}_inclusion"] = g.inclusion
        arrays[f"{t}_lcoe"] = g.lcoe
        arrays[f"{t}_energy"] = g.energy_kwh_per_kw
        arrays[f"{t}_exclusion_reasons"] = g.constraints.reasons
        arrays["grid_distance"] = pipe.grid_distance(g.recipe)  # one grid.layer per run
        arrays["nearest_point"] = pipe.nearest_point(g.recipe)
        # the line avoids the recipe's grid.forbidden constraints (default: nobuild); a
        # technology whose line settings differ from the first's gets its own layer
        cd = pipe.connection_distance(g.recipe, rules.forbidden_mask(g), rules.crossing_penalty(g))
        first = arrays.setdefault("connection_distance", cd)
        if first is not cd:
            name = cd.attrs.get("long_name", "least-cost connection distance")
            arrays[f"{t}_connection_distance"] = cd.assign_attrs(long_name=f"{name} ({t} recipe)")
        if t == "pv":
            arrays["pv_yield"] = pipe.pv_yield(g.recipe)
        else:
            for k, v in pipe.wind_layers(g.recipe).items():
                arrays[k] = v
    return arrays


def _compute_layers(job: Job, client: Any) -> None:
    """Compute the layers into the run's Zarr store (and the pumped-storage search on them, or
    its cached pairs) and read them back lazily (:func:`sitekit.engine.cluster.persist`)."""
    import xarray as xr

    opts, cache = job.opts, job.cache
    t1 = time.perf_counter()
    first_s = _intermediates(job, client) if job.store is not None else {}
    arrays = _layer_graph(job)
    ps_cached: dict[str, Any] | None = None
    if opts.pumped_storage:
        ps_recipe, ps_text = _ps_graph(job.pipe, opts, arrays)
        job.recipes.append((Path(opts.pumped_storage), ps_recipe, ps_text))
        # the pairs depend on the DEM, the catalogue's files and their own recipe only: a
        # re-run with other PV/wind weights or thresholds reads them back
        ps_key = {"recipe": ps_text, "tile_px": PS_TILE_PX}
        if cache is not None:
            ps_cached = cache.load_frames("ps_pairs", ps_key)
        if ps_cached is not None:
            for k in ("ps", "_ps_excluded"):
                arrays.pop(k)
    job.attrs = {k: dict(a.attrs) for k, a in arrays.items() if isinstance(a, xr.DataArray)}
    # with a store (large grids, local cluster) the layers are written into it and read back
    # lazily, so no layer stays in worker memory
    crs = {"_CRS": {"wkt": job.grid.crs.to_wkt()}, "transform": list(job.grid.transform)[:6]}
    job.layers, job.others, job.task_s = persist(
        client, arrays, opts.quiet, "computing layers", store=job.store, store_attrs=crs
    )
    if first_s:  # both steps' worker seconds, the 15 largest
        for k, v in job.task_s.items():
            first_s[k] = round(first_s.get(k, 0.0) + v, 2)
        job.task_s = dict(sorted(first_s.items(), key=lambda kv: -kv[1])[:15])
    if job.store is not None:
        from sitekit.engine.layerstore import size_bytes
        from sitekit.engine.logs import LOGGER

        LOGGER.debug(f"layer store {job.store}: {size_bytes(job.store) / 1e6:,.1f} MB")
    if ps_cached is not None:
        job.others["ps"] = (ps_cached["reservoirs"], ps_cached["pairs"])
    elif cache is not None and "ps" in job.others:
        ps_res, ps_pairs = job.others["ps"]
        cache.save_frames("ps_pairs", ps_key, {"reservoirs": ps_res, "pairs": ps_pairs})
    job.timed("compute_s", t1)


def _tag_provenance(job: Job) -> None:
    """``run.json``'s provenance (inputs hashed once per run) and the copy every file is tagged
    with (:mod:`sitekit.outputs.tags`, issue 26: what is modelled or illustrative)."""
    graphs = job.graphs
    job.base_prov = _provenance(job.catalog, job.recipes, job.pipe, job.grid)  # inputs hashed once
    job.tag_prov = copy.deepcopy(job.base_prov)
    job.tag_prov["exclusion_legend"] = (
        [list(b) for b in graphs[0].constraints.legend] if graphs else []
    )
    job.tag_prov["exclusion_legends"] = {
        g.recipe.technology: [list(b) for b in g.constraints.legend] for g in graphs
    }


def _write_rasters(job: Job, cog_pool: ThreadPoolExecutor) -> Future:
    """Start writing the rasters as COGs on ``cog_pool``, while the later phases run; returns
    the future of the writer's seconds."""
    from sitekit.outputs import export, tags

    grid, pipe, layers, attrs = job.grid, job.pipe, job.layers, job.attrs
    cache, graphs = job.cache, job.graphs
    run_recipes = [r for _, r, _ in job.recipes]
    rdir = job.stage / "rasters"
    raster_out = {
        "elevation": "elevation",
        "slope": "slope",
        "aspect": "aspect",
        "pv_yield": "pv_yield",
        "wind_cf": "wind_cf",
        "wind_speed": "wind_speed",
        "grid_distance": "grid_distance",
        "connection_distance": "connection_distance",
        "hillshade": "hillshade",
    }
    for g in graphs:
        t = g.recipe.technology
        raster_out.update(
            {
                f"{t}_connection_distance": f"{t}_connection_distance",  # when it has its own
                f"{t}_score": f"{t}_score",
                f"{t}_lcoe": f"{t}_lcoe",
                f"{t}_eligible": f"{t}_eligible",
                f"{t}_exclusion_reasons": f"{t}_exclusion_reasons",
            }
        )
    rasters = job.rasters
    cog_jobs: list[tuple[Path, Any]] = []
    # with a cache, a raster whose content an earlier run already exported is copied
    write_cog = export.write_cog if cache is None else cache.write_cog
    if cache is not None:  # the rasters' content digests (cache keys), in one round trip
        cache.prefetch_digests([layers[k] for k in raster_out if k in layers])
    for key, fname in raster_out.items():
        if key not in layers:
            continue
        template = attrs[key]
        # persisted on the workers, which compress its COG tiles and overviews (write_cog)
        da_np = grid.wrap(
            layers[key], fname, template.get("units", "1"), template.get("long_name", fname)
        )
        da_np.attrs.update(
            {k: str(v) for k, v in template.items() if k in ("modelled", "method", "file_modelled")}
        )
        if pipe.dem_is_modelled and key in ("elevation", "slope", "aspect", "hillshade"):
            da_np.attrs["modelled"] = "demo terrain"
        rasters[key] = da_np
        cog_jobs.append(
            (
                rdir / f"{fname}.tif",
                tags.for_file(
                    key, da_np, job.tag_prov, template, layers["study_fraction"], run_recipes
                ),
            )
        )
    # the combined exclusion-reasons raster of the first recipe is the headline one
    if graphs:
        first = graphs[0].recipe.technology
        reasons = f"{first}_exclusion_reasons"
        cog_jobs.append(
            (
                rdir / "exclusion_reasons.tif",
                tags.for_file(
                    "exclusion_reasons",
                    rasters[reasons],
                    job.tag_prov,
                    attrs[reasons],
                    layers["study_fraction"],
                    run_recipes,
                ),
            )
        )
    # written on a thread of their own while the sites, tables, GeoPackage and map are made:
    # the workers encode the tiles; this thread only waits for them and lays out the files
    # (GDAL's COG driver on this thread for a raster the workers cannot write)
    return cog_pool.submit(_write_cogs, write_cog, cog_jobs)


def _sites(job: Job) -> None:
    """Land competition between the technologies, then each recipe's sites (read from the
    persisted layers one strip of rows at a time) and its per-prefecture summary."""
    import dask.array as da

    from sitekit.science import supply  # technical potential, land competition, supply curves
    from sitekit.science.sites import SiteRules, extract_sites, summarise, zone_areas

    t1 = time.perf_counter()
    grid, layers, graphs = job.grid, job.layers, job.graphs
    job.feats = {g.recipe.grid.layer: job.pipe.grid_features(g.recipe) for g in graphs}
    zones = job.pipe.zones
    pref_ids, pref_names, pref_gdf = zones["prefecture"]
    cnty = zones.get("county")
    job.land = supply.land_use(layers, job.techs) if graphs else {}
    for g in graphs:
        r = g.recipe
        t = r.technology
        pts = job.feats[r.grid.layer]
        names = (
            [str(v) for v in pts[r.grid.name_field]]
            if r.grid.name_field in pts.columns
            else [str(i) for i in range(len(pts))]
        )
        job.points, job.point_names = pts, names
        # persisted layers: site extraction reads them one strip of rows at a time
        incl = job.land[t].inclusion_after  # one technology per pixel (recipe competition rule)
        gdf, _labels, job.candidates[t] = extract_sites(
            grid,
            score=layers[f"{t}_score"],
            inclusion=incl,
            energy_kwh_per_kw=layers[f"{t}_energy"],
            grid_distance_km=layers["grid_distance"],
            connection_distance_km=connection_layer(layers, t),
            nearest_point=layers["nearest_point"],
            point_names=names,
            prefecture_id=layers["prefecture_id"],
            prefecture_names=pref_names,
            county_id=layers["county_id"] if cnty else da.zeros_like(layers["prefecture_id"]),
            county_names=cnty[1] if cnty else [],
            rules=SiteRules(**r.sites.model_dump()),
            economics=r.economics,
            candidates=True,
            return_labels=False,  # labelled strip by strip: no label raster of the grid
        )
        job.sites[f"{t}_sites"] = gdf
        areas = zone_areas(incl, layers["prefecture_id"], pref_names, grid.pixel_area_km2)
        job.summaries.append(summarise(gdf, areas, t))
        del incl, _labels
    job.timed("sites_s", t1)


def _potential(job: Job) -> None:
    """Technical potential and supply curves (:func:`sitekit.science.supply.run_tables`), written
    by :func:`sitekit.outputs.supply.write_run_tables`."""
    from sitekit.outputs.supply import write_run_tables
    from sitekit.science import supply

    t1 = time.perf_counter()
    graphs = job.graphs
    job.extra = (
        supply.run_tables(
            grid=job.grid,
            layers=job.layers,
            recipes=job.techs,
            legends={g.recipe.technology: g.constraints for g in graphs},
            land=job.land,
            zones=job.pipe.zones,
            candidates=job.candidates,
            points=job.points,
            point_names=job.point_names,
        )
        if graphs
        else {}
    )
    if graphs:
        write_run_tables(job.stage, job.extra, provenance=job.tag_prov)
    job.timed("potential_s", t1)
    job.timings.update(job.extra.get("timings", {}))


def _tables(job: Job) -> None:
    """``summary.csv`` and each technology's sites (CSV and Excel), with admin names."""
    from sitekit.outputs import export, labels

    zones = job.pipe.zones
    _, pref_names, pref_gdf = zones["prefecture"]
    cnty = zones.get("county")
    if "ps" in job.others:
        job.summaries.append(_ps_summary(job.others["ps"][1], pref_names))
    job.summary = pd.concat(job.summaries, ignore_index=True) if job.summaries else pd.DataFrame()
    cnty_gdf = cnty[2] if cnty else None  # Chinese names and adcodes next to the English ones
    job.sites = {k: labels.with_admin_names(v, pref_gdf, cnty_gdf) for k, v in job.sites.items()}
    export.write_table(job.stage / "summary.csv", job.summary, provenance=job.tag_prov)
    for key, gdf in job.sites.items():
        export.write_table(job.stage / f"{key}.csv", gdf, provenance=job.tag_prov)
        export.write_table(job.stage / f"{key}.xlsx", gdf, provenance=job.tag_prov)


def _geopackage(job: Job) -> None:
    """``sitekit.gpkg``: zones, sites, potential, pumped storage, connection points, constraint
    layers, built plants; the rules applied and the validation go into the provenance."""
    from sitekit.engine.validation import in_run  # siting rules, built plants, validation
    from sitekit.outputs import export, labels
    from sitekit.science import supply

    stage, graphs, catalog, grid = job.stage, job.graphs, job.catalog, job.grid
    zones = job.pipe.zones
    pref_gdf = zones["prefecture"][2]
    cnty = zones.get("county")
    vectors: dict[str, Any] = {"prefectures": pref_gdf}
    if cnty:
        vectors["counties"] = cnty[2]
    vectors.update(job.sites)
    if job.extra.get("layer") is not None:
        vectors["technical_potential"] = job.extra["layer"]
    if "ps" in job.others:
        ps_res, ps_pairs = (labels.with_admin_names(f, pref_gdf) for f in job.others["ps"])
        vectors["ps_reservoirs"] = ps_res
        vectors["ps_pairs"] = ps_pairs
        export.write_table(stage / "ps_pairs.csv", ps_pairs, provenance=job.tag_prov)
    for gdf in job.feats.values():
        kinds = set(gdf.geom_type)
        vectors["grid_lines" if kinds & {"LineString", "MultiLineString"} else "grid_points"] = gdf
    for spec in catalog.by_role("constraint"):
        vectors[f"constraint_{spec.id}"] = catalog.vector(spec.id, grid)
    rules_prov, plant_vectors, validation = in_run(
        stage, graphs, job.layers, grid, catalog, provenance=job.tag_prov
    )
    vectors.update(plant_vectors)
    provenance = job.base_prov
    provenance.update(rules_prov)
    provenance["validation"] = [] if validation is None else validation.to_dict("records")
    legend = [tuple(b) for b in graphs[0].constraints.legend] if graphs else []
    provenance["exclusion_legend"] = legend
    # PV∩wind site area [km²]: 0 unless the recipes' competition rule is "shared"
    provenance["site_overlap_km2"] = supply.site_overlaps(job.sites)[1] if graphs else {}
    export.write_geopackage(
        stage / "sitekit.gpkg", vectors, crs=job.opts.export_crs, metadata=provenance
    )
    job.vectors, job.provenance = vectors, provenance


#: the rasters drawn on the map (when the run has them)
MAP_RASTERS = (
    "hillshade",
    "elevation",
    "pv_yield",
    "wind_cf",
    "pv_score",
    "wind_score",
    "grid_distance",
)


def _map_and_report(job: Job) -> None:
    """``map.html`` and ``report.html``."""
    from sitekit.outputs import render, report, style

    t1 = time.perf_counter()
    opts, graphs, rasters = job.opts, job.graphs, job.rasters
    st = style.load_style(opts.map_style or REPO_ROOT / "maps" / "default.yaml")
    map_rasters = {k: rasters[k] for k in MAP_RASTERS if k in rasters}
    if graphs:
        map_rasters["exclusion_reasons"] = rasters[
            f"{graphs[0].recipe.technology}_exclusion_reasons"
        ]
    render.render_map(
        job.stage / "map.html",
        grid=job.grid,
        rasters=map_rasters,
        vectors=job.vectors,
        style=st,
        provenance=job.provenance,
        online_tiles=opts.online_tiles,
        cache=job.cache,
    )
    report.render_report(
        job.stage / "report.html",
        summary=job.summary,
        sites=job.sites,
        ps_pairs=job.vectors.get("ps_pairs"),
        recipes={p.name: text for p, _, text in job.recipes},
        provenance=job.provenance,
        potential=job.extra.get("potential"),
        supply=job.extra.get("supply"),
        style=st,  # the run's labels (top-N sites vs technical potential)
    )
    job.timed("map_s", t1)


def _finish(job: Job) -> None:
    """QGIS sidecars of the rasters, the cache's commit, ``run.json``."""
    from sitekit.io.atomic import write_text
    from sitekit.outputs.rasterstyle import write_sidecars  # .qml (+ attribute tables) for QGIS

    write_sidecars(job.stage / "rasters", provenance=job.tag_prov)
    provenance, cache = job.provenance, job.cache
    if cache is not None:
        cache.commit()
        provenance["cache"] = {
            "dir": str(cache.root),  # absolute
            "hits": cache.hits,
            "misses": cache.misses,
            "rasters_copied": cache.rasters_copied,
            "rasters_written": cache.rasters_written,
        }
    job.timed("total_s", job.t0)
    provenance["timings_s"] = {k: round(v, 3) for k, v in job.timings.items()}
    provenance["task_seconds"] = job.task_s  # worker time per task name, while computing layers
    write_text(
        job.stage / "run.json", json.dumps(provenance, indent=2, ensure_ascii=False, default=str)
    )


# ------------------------------------------------------------------------------ helpers
def _write_cogs(write_cog: Any, jobs: list[tuple[Path, Any]]) -> float:
    """Write each (path, DataArray) as a COG with ``write_cog``; returns the seconds taken."""
    t0 = time.perf_counter()
    for path, layer in jobs:
        write_cog(path, layer)
    return time.perf_counter() - t0


def _ps_graph(pipe: Pipeline, opts: RunOptions, arrays: dict[str, Any]) -> tuple[Any, str]:
    """Add the lazy pumped-storage search to ``arrays['ps']``; returns (recipe, YAML text)."""
    from sitekit.science import pumped_storage as ps
    from sitekit.specs.recipe import load_ps_recipe

    recipe, text = load_ps_recipe(opts.pumped_storage, list(opts.overrides), {})
    cons = pipe.constraints(recipe, inclusion=False)
    params = ps.params_from_recipe(recipe)
    existing = None
    if recipe.existing_reservoirs:
        ex = recipe.existing_reservoirs
        existing = ps.existing_from_layer(pipe.catalog.vector(ex.layer, pipe.grid), ex)
    feats = pipe.catalog.vector(recipe.grid.layer, pipe.grid) if recipe.grid else None
    _, _, pref = pipe.zones["prefecture"]
    zone_field = "name_en" if "name_en" in pref.columns else pref.columns[0]
    excluded = cons.excluded | (pipe.study_fraction <= 0)
    # the search tiles are part of the method, not the user's --chunks: fixed tiles make the
    # selected pairs independent of chunking and worker count
    tile = (PS_TILE_PX, PS_TILE_PX)
    arrays["_ps_excluded"] = excluded  # persisted with the layers, not written

    def _search(layers: dict[str, Any], stage: Any) -> Any:
        # built on the persisted layers: a search graph over the lazy ones made dask copy their
        # whole upstream graph (DEM read, constraints) once per argument, 5 copies at 250 m.
        # With the layer store its hydrology is staged there step by step (``stage``)
        found = ps.find_pairs(
            layers["elevation"].rechunk(tile),
            layers["_ps_excluded"].rechunk(tile),
            pipe.grid,
            params,
            existing=existing,
            zones=pref,
            zone_field=zone_field,
            stage=stage,
        )
        return dask.delayed(ps.connect_found, pure=True)(found, feats, recipe.grid)

    arrays["ps"] = _search
    arrays["ps_exclusion_reasons"] = cons.reasons
    return recipe, text


def _ps_summary(pairs: Any, prefectures: list[str]) -> pd.DataFrame:
    rows = []
    for zone in sorted(prefectures):
        p = pairs[pairs["prefecture"] == zone] if len(pairs) else pairs
        rows.append(
            {
                "prefecture": zone,
                "technology": "pumped_storage",
                "eligible_km2": float("nan"),
                "potential_mw": round(float(p["power_mw"].sum()), 3) if len(p) else 0.0,
                # storage per cycle, never annual generation (energy_gwh stays PV/wind only)
                "energy_gwh": float("nan"),
                "storage_gwh": round(float(p["storage_gwh"].sum()), 3) if len(p) else 0.0,
                "n_sites": len(p),
            }
        )
    return pd.DataFrame(rows)


def _provenance(catalog, recipes, pipe, grid) -> dict[str, Any]:
    inputs = {}
    for spec in catalog.spec.layers:
        try:
            path = catalog.file(spec)
            inputs[spec.id] = {
                "path": str(spec.path),
                "sha256": catalog.sha256(path) if path.exists() else None,
                "name_zh": spec.name_zh,
                "name_en": spec.name_en,
                "modelled": spec.modelled,
                "illustrative": spec.illustrative,
                "source": spec.source,
                "licence": spec.licence,
            }
            if spec.id in catalog.coverage:  # < 99 % only with allow_gaps (then excluded)
                inputs[spec.id]["study_area_coverage_pct"] = round(
                    100.0 * catalog.coverage[spec.id], 2
                )
        except Exception as exc:  # noqa: BLE001 - provenance must not fail a run
            inputs[spec.id] = {"error": str(exc)}
    return {
        "sitekit_run": True,
        "catalog": str(catalog.path),
        "catalog_sha256": catalog.digest(),
        "grid": {
            "crs_wkt": grid.crs.to_wkt(),
            "crs_name": grid.crs.name,
            "resolution_m": grid.resolution_m,
            "shape": list(grid.shape),
            "bounds": list(grid.bounds),
            "chunks": grid.chunks,
        },
        "recipes": {
            p.name: {"sha256": recipe_digest(text), "technology": r.technology, "yaml": text}
            for p, r, text in recipes
        },
        "inputs": inputs,
        "modelled": {
            "terrain": "demo terrain — refined from a real 1/12° DEM; bring SRTM/Copernicus DEM "
            "for siting decisions"
            if pipe.dem_is_modelled
            else "real",
            "solar": "modelled (pvlib clear-sky × MERRA-2-calibrated cloudiness)"
            if any(r.technology == "pv" and r.solar.model == "modelled" for _, r, _ in recipes)
            else "measured climatology",
            "wind": "modelled (terrain-exposure model)"
            if any(r.technology == "wind" and r.wind.model == "modelled" for _, r, _ in recipes)
            else "measured climatology",
        },
        "demo_terrain": pipe.dem_is_modelled,
        "versions": versions(),
    }
