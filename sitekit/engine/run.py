"""Run a job: build one lazy graph for all recipes, compute it on a Dask client, write outputs.

The client is a ``dask.distributed`` ``LocalCluster`` by default (``workers`` processes), or any
running scheduler given by address (``tcp://host:port``: dask-jobqueue, Kubernetes, …). Outputs are
first written into a staging folder next to ``out`` and swapped in at the end, so a killed run
leaves the previous results intact and never a half-written file.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: stale staging folders are not swept
    fcntl = None  # type: ignore[assignment]

import dask
import pandas as pd

from sitekit.engine.pipeline import Pipeline, TechGraph
from sitekit.engine.resources import data_root
from sitekit.errors import InputError, RecipeError
from sitekit.grid import DEFAULT_CHUNK, DEFAULT_CRS
from sitekit.io.catalog import Catalog
from sitekit.io.ownership import check_replaceable
from sitekit.io.provenance import versions
from sitekit.specs import rules
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
    processes: bool = True  # local workers as processes (True) or in-process thread pools
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


# ------------------------------------------------------------------------------ dask client
#: glibc malloc settings for LocalCluster workers. distributed's nanny sets
#: ``MALLOC_TRIM_THRESHOLD_=65536``, which also pins glibc's mmap threshold at 128 KiB: every numpy
#: temporary above that is mmap'ed and page-faulted afresh. The raster kernels make many 1–30 MB
#: temporaries, so that default cost up to 3× CPU (mostly system time) in ``benchmarks/``
#: (README, "Findings"). A 64 MiB mmap threshold keeps them on the heap; memory is still returned
#: by the trim threshold. External clusters keep their own settings.
WORKER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(64 * 2**20)}
#: glibc ``mallopt`` parameters (malloc.h) and what :func:`tune_malloc` sets them to [bytes]
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
IN_PROCESS_MALLOC = {"mmap_threshold": 64 * 2**20, "trim_threshold": 256 * 2**20}


def tune_malloc() -> bool:
    """Give this process (in-process workers: ``--no-processes``) :data:`IN_PROCESS_MALLOC`.

    glibc only (``mallopt``; False elsewhere). The workers' block temporaries are 4–33 MB: with
    the default dynamic thresholds the larger ones are mmap'ed and their pages zeroed by the
    kernel on every allocation, and heap tops above 128 KiB are trimmed and faulted in again.
    Benchmark, 67 Mpx, 5 interleaved runs: 9.33 → 8.85 s median wall, 15.9 → 15.0 CPU-s, peak
    RSS 0.92 → 1.05–1.19 GB (up to 256 MiB of freed heap is kept for reuse). glibc releases
    before 2.35 or so cap the mmap threshold at 32 MiB (mallopt(3)): that is tried next.
    True when both thresholds were set."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or "libc" not in name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mmap_ok = any(
            libc.mallopt(_M_MMAP_THRESHOLD, v) == 1
            for v in (IN_PROCESS_MALLOC["mmap_threshold"], 32 * 2**20)
        )
        trim_ok = libc.mallopt(_M_TRIM_THRESHOLD, IN_PROCESS_MALLOC["trim_threshold"]) == 1
    except (OSError, AttributeError):
        return False
    return mmap_ok and trim_ok


def local_cluster_config(malloc: bool = True) -> dict[str, Any]:
    """Dask config for sitekit's LocalCluster (also used by ``benchmarks/``).

    Workers are not daemons (they may start processes), get :data:`WORKER_MALLOC` in their
    environment when ``malloc`` is set, and run without distributed's sampling profiler, which
    walks every worker thread's stack each 10 ms: ~3 CPU-s per 67 Mpx benchmark run on 2 cores,
    for a dashboard view sitekit does not use.
    """
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    if malloc:
        environ.update(WORKER_MALLOC)
    return {
        "distributed.worker.daemon": False,
        "distributed.nanny.pre-spawn-environ": environ,
        "distributed.worker.profile.enabled": False,
    }


#: seconds a scheduler has to answer its identity call
SCHEDULER_TIMEOUT_S = 30.0


def check_scheduler(address: str, timeout_s: float = SCHEDULER_TIMEOUT_S) -> None:
    """Raise :class:`InputError` unless a Dask scheduler answers at ``address`` within
    ``timeout_s``: a port that accepts and never speaks (another service, a stuck scheduler)
    would otherwise hang ``Client()`` for ever."""
    import asyncio

    from distributed.core import rpc

    async def identity() -> dict:
        async with rpc(address, timeout=timeout_s) as remote:
            return await remote.identity()

    try:
        info = asyncio.run(asyncio.wait_for(identity(), timeout_s))
    except TimeoutError:
        raise InputError(
            f"--scheduler {address}: no answer within {timeout_s:g} s; is a Dask scheduler "
            "running there?"
        ) from None
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"--scheduler {address}: cannot connect ({exc})") from None
    if not isinstance(info, dict) or info.get("type") != "Scheduler":
        raise InputError(f"--scheduler {address}: what answers there is not a Dask scheduler")


#: most local workers / threads per worker accepted (a typo like --workers 4000 would fork
#: thousands of processes)
MAX_LOCAL_WORKERS = 256
#: smallest per-worker memory limit that runs a block of the default chunking [bytes]
MIN_WORKER_MEMORY = 256 * 2**20


def check_cluster_options(opts: RunOptions) -> None:
    """Raise :class:`InputError` for local-cluster options that cannot work (0 or thousands of
    workers, a memory limit too small for one block or larger than the machine)."""
    import psutil
    from dask.utils import parse_bytes

    for name, value in (("--workers", opts.workers), ("--threads-per-worker",
                                                      opts.threads_per_worker)):  # fmt: skip
        if value is not None and not 1 <= value <= MAX_LOCAL_WORKERS:
            raise InputError(f"{name} {value}: give a number from 1 to {MAX_LOCAL_WORKERS}")
    limit = opts.memory_limit
    if limit in (None, "auto", 0, "0"):
        return
    try:
        n = parse_bytes(limit) if isinstance(limit, str) else int(limit)
    except (ValueError, TypeError):
        raise InputError(
            f"--memory-limit {limit!r}: give a size such as 3GiB or 3000MB, or 'auto'"
        ) from None
    total = psutil.virtual_memory().total
    if n < MIN_WORKER_MEMORY:
        raise InputError(f"--memory-limit {limit}: below {MIN_WORKER_MEMORY >> 20} MiB per worker")
    if n > total:
        raise InputError(
            f"--memory-limit {limit} per worker is more than this machine's "
            f"{total / 2**30:.1f} GiB; give less, or 'auto'"
        )


#: bytes per grid pixel a run needs, over all processes (the 90 m demo: 12.1 GiB peak for 75 Mpx,
#: README "Speed and scale") and on disk (outputs + cache: ~7.5 GB cache for 75 Mpx)
BYTES_PER_PX_MEMORY = 175
BYTES_PER_PX_DISK = 120


def check_grid_size(shape: tuple[int, int], opts: RunOptions, where: Path) -> None:
    """Refuse a grid this machine cannot hold, before anything is computed: the estimate, the
    machine's memory and free disk, and how to go on (coarser --resolution, or
    --no-size-check to run anyway, e.g. on a larger --scheduler cluster)."""
    import shutil as _shutil

    import psutil

    px = int(shape[0]) * int(shape[1])
    need_mem = px * BYTES_PER_PX_MEMORY
    total = psutil.virtual_memory().total
    hint = "use a coarser --resolution, split the study area, or pass --no-size-check"
    if opts.scheduler is None and need_mem > total:
        raise InputError(
            f"a {shape[0]:,} × {shape[1]:,} px grid ({px / 1e6:,.0f} Mpx) needs ~"
            f"{need_mem / 2**30:,.0f} GiB of memory (~{BYTES_PER_PX_MEMORY} B/px) and this "
            f"machine has {total / 2**30:.0f} GiB; {hint}"
        )
    probe = Path(where).resolve()
    while not probe.exists():
        probe = probe.parent
    need_disk = px * BYTES_PER_PX_DISK
    free = _shutil.disk_usage(probe).free
    if need_disk > free:
        raise InputError(
            f"a {px / 1e6:,.0f} Mpx grid needs ~{need_disk / 1e9:,.0f} GB of disk for outputs "
            f"and cache (~{BYTES_PER_PX_DISK} B/px); {probe} has {free / 1e9:,.0f} GB free; {hint}"
        )


@contextlib.contextmanager
def dask_client(opts: RunOptions) -> Iterator[Any]:
    """A distributed Client: to ``opts.scheduler`` if given, else a fresh LocalCluster."""
    from distributed import Client, LocalCluster

    if opts.scheduler:
        check_scheduler(opts.scheduler)  # Client(timeout=) waits forever on a silent peer
        with Client(opts.scheduler, timeout="30s") as client:
            yield client
        return
    check_cluster_options(opts)
    cores = os.cpu_count() or 1
    workers = opts.workers or min(2, cores)
    threads = opts.threads_per_worker or max(1, cores // workers)
    if not opts.processes:
        tune_malloc()
    with (
        dask.config.set(local_cluster_config()),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=opts.processes,
            memory_limit=opts.memory_limit,
            dashboard_address="127.0.0.1:0",
            silence_logs=50,  # critical only: workers log heartbeat errors while shutting down
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def task_seconds(stream: list[dict], top: int | None = None) -> dict[str, float]:
    """Summed compute seconds per task-name prefix (dask's ``key_split``) of a distributed task
    stream, largest first (the ``top`` largest if given): where a run's worker time went."""
    from collections import defaultdict

    from dask.utils import key_split

    acc: dict[str, float] = defaultdict(float)
    for t in stream:
        for ss in t.get("startstops", ()):
            if ss["action"] == "compute":
                acc[key_split(t["key"])] += ss["stop"] - ss["start"]
    ranked = sorted(((k, round(v, 2)) for k, v in acc.items()), key=lambda kv: -kv[1])
    return dict(ranked[:top] if top else ranked)


def persist(
    client: Any, arrays: dict[str, Any], quiet: bool, label: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, float]]:
    """Compute named lazy layers into the cluster's memory (one graph, shared intermediates).

    A value may also be a callable ``build(layers) -> collection``: it is called with the
    persisted layers and its collection computed too (the pumped-storage search).

    Returns ``(layers, others, task_s)``: the dask arrays, now backed by finished futures on the
    workers (distributed spills them to disk above its memory limits), every non-array
    collection (e.g. the pumped-storage pairs) computed and gathered, and the worker seconds
    per task name (:func:`task_seconds`, the 15 largest; the scheduler keeps the last
    ``distributed.scheduler.dashboard.tasks.task-stream-length`` tasks, 100,000 by default, so a
    larger graph's totals cover its last tasks only). Nothing is gathered whole: rasters
    are then written strip by strip and site extraction reads its layers strip by strip.
    """
    import dask.array as da
    import xarray as xr
    from distributed import futures_of, get_task_stream, wait

    from sitekit.engine import logs

    datas = {k: (a.data if isinstance(a, xr.DataArray) else a) for k, a in arrays.items()}
    lazy = {k: d for k, d in datas.items() if isinstance(d, da.Array)}
    # a builder is a plain callable (a Delayed is callable too, but it is a collection)
    builds = {
        k: d
        for k, d in datas.items()
        if k not in lazy and callable(d) and not dask.is_dask_collection(d)
    }
    other = {k: d for k, d in datas.items() if k not in lazy and k not in builds}
    with get_task_stream(client) as stream:
        done = dict(zip(lazy, client.persist(list(lazy.values())), strict=True))
        # builders get the persisted layers, so their graphs read futures instead of copying
        # the layers' upstream graphs
        other.update({k: build(done) for k, build in builds.items()})
        # client.compute on a list mixing collections does not keep the order: one per collection
        futures = {k: client.compute(d) for k, d in other.items()}
        watch = [f for d in done.values() for f in futures_of(d)] + list(futures.values())
        if not quiet:  # on stderr: a live bar on a terminal, a line per ~10 s elsewhere
            logs.progress(watch, label)
        wait(watch)
    task_s = task_seconds(stream.data, top=15)
    return done, {k: f.result() for k, f in futures.items()}, task_s


# ------------------------------------------------------------------------------ output dir
#: lock file a live run holds (flock) inside its staging folder; the kernel drops the lock when
#: the process dies, however it dies, so a lockable staging folder belongs to a killed run
_STAGE_LOCK = ".sitekit-run.lock"


def _lock(folder: Path) -> int | None:
    """Create and exclusively lock ``folder/_STAGE_LOCK``; keep the returned fd open."""
    if fcntl is None:
        return None
    fd = os.open(folder / _STAGE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _stale_stage(folder: Path) -> bool:
    """True when ``folder`` has a lock file that no live process holds."""
    try:
        fd = os.open(folder / _STAGE_LOCK, os.O_RDWR)
    except OSError:
        return False  # no lock file (yet): not provably stale, leave it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False  # a live run holds it
    finally:
        os.close(fd)


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def sweep_stale_outputs(out: Path) -> list[Path]:
    """Remove what killed runs left next to ``out``: their staging folders ``.<out>.*.part`` and
    ``.<out>.old-<pid>`` (restored as ``out`` if a kill fell between the two renames)."""
    out = Path(out)
    removed: list[Path] = []
    if fcntl is None or not out.parent.is_dir():
        return removed
    for old in sorted(out.parent.glob(f".{out.name}.old-*")):
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and _dead(int(pid)):
            if not out.exists():
                os.replace(old, out)  # the previous results, put back
            else:
                shutil.rmtree(old, ignore_errors=True)
                removed.append(old)
    for stage in sorted(out.parent.glob(f".{out.name}.*.part")):
        if stage.is_dir() and _stale_stage(stage):
            shutil.rmtree(stage, ignore_errors=True)
            removed.append(stage)
    return removed


@contextlib.contextmanager
def staged_output(
    out: Path,
    force: bool,
    inputs: tuple[Path, ...] = (),
    post: Callable[[Path], None] | None = None,
) -> Iterator[Path]:
    """Yield a staging folder; on success it replaces ``out`` (which needs ``force`` if present).

    ``out`` is replaced only when it is sitekit's own (:func:`sitekit.io.ownership.check_replaceable`:
    its marker, never the working folder or a folder holding one of ``inputs``). ``post(stage)``
    runs after the caller's block and before the swap, so later steps (route, hosting) land with
    the rest or not at all. The staging folders of killed runs (left next to ``out``) are removed
    first; the folder of a run still going is recognised by its lock and left alone.
    """
    from sitekit.io.ownership import mark_output

    out = Path(out)
    sweep_stale_outputs(out)
    check_replaceable(out, force, inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(stage, 0o777 & ~umask)  # mkdtemp makes 0700; results are as readable as any file
    lock = _lock(stage)
    try:
        mark_output(stage)
        yield stage
        if post is not None:
            post(stage)
        check_replaceable(out, force, inputs)  # the folder may have changed during the run
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        (stage / _STAGE_LOCK).unlink(missing_ok=True)
        os.replace(stage, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            os.close(lock)


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


def _run_once(recipe_paths: list[Path], opts: RunOptions) -> RunResult:
    """One attempt of :func:`run_job`."""
    import dask.array as da
    import xarray as xr

    from sitekit.outputs import export
    from sitekit.science.sites import SiteRules, extract_sites, summarise, zone_areas

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    from sitekit.engine.logs import LOGGER

    say = (lambda *a: None) if opts.quiet else LOGGER.info
    inputs = _inputs_of(recipe_paths, opts)
    check_replaceable(opts.out, opts.force, inputs)  # before any work or cache folder
    recipes: list[tuple[Path, Recipe, str]] = []
    for p in recipe_paths:
        r, text = load_recipe(p, list(opts.overrides), {})  # checked run-wide in _extra_runs
        recipes.append((Path(p), r, text))
    catalog = Catalog(opts.catalog, extra_roots=opts.data_roots)
    if opts.size_check:  # before the grid is made: an absurd resolution never allocates
        check_grid_size(_grid_shape(catalog, opts), opts, Path(opts.out).parent)
    grid = catalog.grid(opts.resolution_m, opts.crs, opts.chunks)
    say(grid.describe())
    cache = None
    if opts.cache_dir is not None:
        from sitekit.engine.cache import LayerCache, digest

        inputs_key = digest(  # the code's own digest is in every key (cache.code_digest)
            catalog.digest(),
            catalog.content_key(),  # every file a layer reads: VRT members, sidecars too
        )
        cache = LayerCache(opts.cache_dir, grid, inputs_key)
    pipe = Pipeline(catalog, grid, cache)
    graphs: list[TechGraph] = [pipe.technology(r) for _, r, _ in recipes]
    timings["graph_s"] = time.perf_counter() - t0

    # the pool is left first: a failed run waits for the GeoTIFF writer before the client closes
    with (
        staged_output(opts.out, opts.force, inputs, opts.post) as stage,
        dask_client(opts) as client,
        ThreadPoolExecutor(1, thread_name_prefix="sitekit-cog") as cog_pool,
    ):
        arrays: dict[str, Any] = {
            "elevation": pipe.elevation,
            "slope": pipe.slope,
            "aspect": pipe.aspect,
            "hillshade": pipe.hillshade,
            "study_fraction": grid.study_fraction(),
        }
        for key, (ids, _, _) in pipe.zones.items():
            arrays[f"{key}_id"] = ids
        for g in graphs:
            t = g.recipe.technology
            arrays[f"{t}_score"] = g.score
            arrays[f"{t}_eligible"] = g.eligible
            arrays[f"{t}_inclusion"] = g.inclusion
            arrays[f"{t}_lcoe"] = g.lcoe
            arrays[f"{t}_energy"] = g.energy_kwh_per_kw
            arrays[f"{t}_exclusion_reasons"] = g.constraints.reasons
            arrays["grid_distance"] = pipe.grid_distance(g.recipe)
            arrays["nearest_point"] = pipe.nearest_point(g.recipe)
            # the line avoids the recipe's grid.forbidden constraints (default: nobuild)
            arrays["connection_distance"] = pipe.connection_distance(
                g.recipe, rules.forbidden_mask(g), rules.crossing_penalty(g)
            )
            if t == "pv":
                arrays["pv_yield"] = pipe.pv_yield(g.recipe)
            else:
                for k, v in pipe.wind_layers(g.recipe).items():
                    arrays[k] = v
        ps_recipe = None
        ps_cached: dict[str, Any] | None = None
        if opts.pumped_storage:
            ps_recipe, ps_text = _ps_graph(pipe, opts, arrays)
            recipes.append((Path(opts.pumped_storage), ps_recipe, ps_text))
            # the pairs depend on the DEM, the catalogue's files and their own recipe only: a
            # re-run with other PV/wind weights or thresholds reads them back
            ps_key = {"recipe": ps_text, "tile_px": PS_TILE_PX}
            if cache is not None:
                ps_cached = cache.load_frames("ps_pairs", ps_key)
            if ps_cached is not None:
                for k in ("ps", "_ps_excluded"):
                    arrays.pop(k)
        attrs = {k: dict(a.attrs) for k, a in arrays.items() if isinstance(a, xr.DataArray)}
        t1 = time.perf_counter()
        layers, others, task_s = persist(client, arrays, opts.quiet, "computing layers")
        if ps_cached is not None:
            others["ps"] = (ps_cached["reservoirs"], ps_cached["pairs"])
        elif cache is not None and "ps" in others:
            ps_res, ps_pairs = others["ps"]
            cache.save_frames("ps_pairs", ps_key, {"reservoirs": ps_res, "pairs": ps_pairs})
        timings["compute_s"] = time.perf_counter() - t1
        # honest tags for every file (sitekit.outputs.tags, issue 26): what is modelled or illustrative
        from sitekit.outputs import labels, tags

        base_prov = _provenance(catalog, recipes, pipe, grid)  # inputs hashed once per run
        tag_prov = copy.deepcopy(base_prov)
        tag_prov["exclusion_legend"] = (
            [list(b) for b in graphs[0].constraints.legend] if graphs else []
        )
        tag_prov["exclusion_legends"] = {
            g.recipe.technology: [list(b) for b in g.constraints.legend] for g in graphs
        }
        run_recipes = [r for _, r, _ in recipes]
        # ---- rasters
        rdir = stage / "rasters"
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
                    f"{t}_score": f"{t}_score",
                    f"{t}_lcoe": f"{t}_lcoe",
                    f"{t}_eligible": f"{t}_eligible",
                    f"{t}_exclusion_reasons": f"{t}_exclusion_reasons",
                }
            )
        rasters: dict[str, Any] = {}
        cog_jobs: list[tuple[Path, Any]] = []
        # with a cache, a raster whose content an earlier run already exported is copied
        write_cog = export.write_cog if cache is None else cache.write_cog
        if cache is not None:  # the rasters' content digests (cache keys), in one round trip
            cache.prefetch_digests([layers[k] for k in raster_out if k in layers])
        for key, fname in raster_out.items():
            if key not in layers:
                continue
            template = attrs[key]
            # persisted on the workers: write_cog fetches it strip by strip
            da_np = grid.wrap(
                layers[key], fname, template.get("units", "1"), template.get("long_name", fname)
            )
            da_np.attrs.update(
                {
                    k: str(v)
                    for k, v in template.items()
                    if k in ("modelled", "method", "file_modelled")
                }
            )
            if pipe.dem_is_modelled and key in ("elevation", "slope", "aspect", "hillshade"):
                da_np.attrs["modelled"] = "demo terrain"
            rasters[key] = da_np
            cog_jobs.append(
                (
                    rdir / f"{fname}.tif",
                    tags.for_file(
                        key, da_np, tag_prov, template, layers["study_fraction"], run_recipes
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
                        tag_prov,
                        attrs[reasons],
                        layers["study_fraction"],
                        run_recipes,
                    ),
                )
            )
        # written on a thread of their own while the sites, tables, GeoPackage and map are made:
        # GDAL's COG encoding releases the GIL and takes the CPU the client's Python leaves idle
        cogs = cog_pool.submit(_write_cogs, write_cog, cog_jobs)

        # ---- sites
        t1 = time.perf_counter()
        feats = {g.recipe.grid.layer: pipe.grid_features(g.recipe) for g in graphs}
        zones = pipe.zones
        pref_ids, pref_names, pref_gdf = zones["prefecture"]
        cnty = zones.get("county")
        sites: dict[str, Any] = {}
        summaries = []
        from sitekit.science import supply  # technical potential, land competition, supply curves

        techs = {g.recipe.technology: g.recipe for g in graphs}
        land = supply.land_use(layers, techs) if graphs else {}
        candidates: dict[str, Any] = {}
        for g in graphs:
            r = g.recipe
            t = r.technology
            pts = feats[r.grid.layer]
            names = (
                [str(v) for v in pts[r.grid.name_field]]
                if r.grid.name_field in pts.columns
                else [str(i) for i in range(len(pts))]
            )
            # persisted layers: site extraction reads them one strip of rows at a time
            incl = land[t].inclusion_after  # one technology per pixel (recipe competition rule)
            gdf, _labels, candidates[t] = extract_sites(
                grid,
                score=layers[f"{t}_score"],
                inclusion=incl,
                energy_kwh_per_kw=layers[f"{t}_energy"],
                grid_distance_km=layers["grid_distance"],
                connection_distance_km=layers["connection_distance"],
                nearest_point=layers["nearest_point"],
                point_names=names,
                prefecture_id=layers["prefecture_id"],
                prefecture_names=pref_names,
                county_id=layers["county_id"] if cnty else da.zeros_like(layers["prefecture_id"]),
                county_names=cnty[1] if cnty else [],
                rules=SiteRules(**r.sites.model_dump()),
                economics=r.economics,
                candidates=True,
            )
            sites[f"{t}_sites"] = gdf
            areas = zone_areas(incl, layers["prefecture_id"], pref_names, grid.pixel_area_km2)
            summaries.append(summarise(gdf, areas, t))
            del incl, _labels
        timings["sites_s"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        extra = (
            supply.run_outputs(
                stage,
                grid=grid,
                layers=layers,
                recipes=techs,
                legends={g.recipe.technology: g.constraints for g in graphs},
                land=land,
                zones=zones,
                candidates=candidates,
                points=pts,
                point_names=names,
                write_table=functools.partial(export.write_table, provenance=tag_prov),
                provenance=tag_prov,
            )
            if graphs
            else {}
        )
        timings["potential_s"] = time.perf_counter() - t1
        timings.update(extra.get("timings", {}))

        if "ps" in others:
            summaries.append(_ps_summary(others["ps"][1], pref_names))
        summary = pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame()
        cnty_gdf = cnty[2] if cnty else None  # Chinese names and adcodes next to the English ones
        sites = {k: labels.with_admin_names(v, pref_gdf, cnty_gdf) for k, v in sites.items()}
        export.write_table(stage / "summary.csv", summary, provenance=tag_prov)
        for key, gdf in sites.items():
            export.write_table(stage / f"{key}.csv", gdf, provenance=tag_prov)
            export.write_table(stage / f"{key}.xlsx", gdf, provenance=tag_prov)

        # ---- vectors → GeoPackage
        vectors: dict[str, Any] = {"prefectures": pref_gdf}
        if cnty:
            vectors["counties"] = cnty[2]
        vectors.update(sites)
        if extra.get("layer") is not None:
            vectors["technical_potential"] = extra["layer"]
        if "ps" in others:
            ps_res, ps_pairs = (labels.with_admin_names(f, pref_gdf) for f in others["ps"])
            vectors["ps_reservoirs"] = ps_res
            vectors["ps_pairs"] = ps_pairs
            export.write_table(stage / "ps_pairs.csv", ps_pairs, provenance=tag_prov)
        for gdf in feats.values():
            kinds = set(gdf.geom_type)
            vectors[
                "grid_lines" if kinds & {"LineString", "MultiLineString"} else "grid_points"
            ] = gdf
        for spec in catalog.by_role("constraint"):
            vectors[f"constraint_{spec.id}"] = catalog.vector(spec.id, grid)
        # siting rules applied / missing (with areas), built plants, validation (sitekit.engine.validation)
        from sitekit.engine.validation import in_run

        rules_prov, plant_vectors, validation = in_run(
            stage, graphs, layers, grid, catalog, provenance=tag_prov
        )
        vectors.update(plant_vectors)
        provenance = base_prov
        provenance.update(rules_prov)
        provenance["validation"] = [] if validation is None else validation.to_dict("records")
        legend = [tuple(b) for b in graphs[0].constraints.legend] if graphs else []
        provenance["exclusion_legend"] = legend
        # PV∩wind site area [km²]: 0 unless the recipes' competition rule is "shared"
        provenance["site_overlap_km2"] = supply.site_overlaps(sites)[1] if graphs else {}
        export.write_geopackage(
            stage / "sitekit.gpkg", vectors, crs=opts.export_crs, metadata=provenance
        )

        # ---- map + report
        if opts.make_map:
            t1 = time.perf_counter()
            from sitekit.outputs import render, report, style

            st = style.load_style(opts.map_style or REPO_ROOT / "maps" / "default.yaml")
            map_rasters = {
                k: rasters[k]
                for k in (
                    "hillshade",
                    "elevation",
                    "pv_yield",
                    "wind_cf",
                    "pv_score",
                    "wind_score",
                    "grid_distance",
                )
                if k in rasters
            }
            if graphs:
                map_rasters["exclusion_reasons"] = rasters[
                    f"{graphs[0].recipe.technology}_exclusion_reasons"
                ]
            render.render_map(
                stage / "map.html",
                grid=grid,
                rasters=map_rasters,
                vectors=vectors,
                style=st,
                provenance=provenance,
                online_tiles=opts.online_tiles,
                cache=cache,
            )
            report.render_report(
                stage / "report.html",
                summary=summary,
                sites=sites,
                ps_pairs=vectors.get("ps_pairs"),
                recipes={p.name: text for p, _, text in recipes},
                provenance=provenance,
                potential=extra.get("potential"),
                supply=extra.get("supply"),
                style=st,  # the run's labels (top-N sites vs technical potential)
            )
            timings["map_s"] = time.perf_counter() - t1
        timings["rasters_s"] = cogs.result()  # the writer's own time; it overlapped the above
        from sitekit.outputs.rasterstyle import write_sidecars  # .qml (+ attribute tables) for QGIS

        write_sidecars(rdir, provenance=tag_prov)
        if cache is not None:
            cache.commit()
            provenance["cache"] = {
                "dir": str(cache.root),  # absolute
                "hits": cache.hits,
                "misses": cache.misses,
                "rasters_copied": cache.rasters_copied,
                "rasters_written": cache.rasters_written,
            }
        timings["total_s"] = time.perf_counter() - t0
        provenance["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
        provenance["task_seconds"] = task_s  # worker time per task name, while computing layers
        from sitekit.io.atomic import write_text

        write_text(
            stage / "run.json", json.dumps(provenance, indent=2, ensure_ascii=False, default=str)
        )
    say(f"results in {opts.out.resolve()}")
    return RunResult(opts.out, summary, sites, timings)


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
    excluded = cons.excluded | (pipe.grid.study_fraction() <= 0)
    # the search tiles are part of the method, not the user's --chunks: fixed tiles make the
    # selected pairs independent of chunking and worker count
    tile = (PS_TILE_PX, PS_TILE_PX)
    arrays["_ps_excluded"] = excluded  # persisted with the layers, not written

    def _search(layers: dict[str, Any]) -> Any:
        # built on the persisted layers: a search graph over the lazy ones made dask copy their
        # whole upstream graph (DEM read, constraints) once per argument, 5 copies at 250 m
        found = ps.find_pairs(
            layers["elevation"].rechunk(tile),
            layers["_ps_excluded"].rechunk(tile),
            pipe.grid,
            params,
            existing=existing,
            zones=pref,
            zone_field=zone_field,
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
