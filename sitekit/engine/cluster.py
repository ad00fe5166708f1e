"""The Dask cluster a run computes on: a ``dask.distributed`` ``LocalCluster`` (``workers``
processes, or in-process thread pools) or any running scheduler given by address
(``tcp://host:port``: dask-jobqueue, Kubernetes, …); the checks made before one is started (its
options, the scheduler's answer, whether the grid fits this machine); and :func:`persist`, which
computes a run's lazy layers on it (into the Zarr layer store).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask

from sitekit.errors import InputError

if TYPE_CHECKING:
    from sitekit.engine.run import RunOptions

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


#: memory a run needs over all processes [bytes]: a base plus a share per grid pixel. Since the
#: layers, the search's hydrology and the validation stream from disk, the peak follows the
#: chunks and bands in flight and the search windows, not the whole grid, so the line is fitted
#: through two measured demos (2 cores, benchmarks/RESULTS_scale.md): 90 m (75 Mpx) 3.84 GiB and
#: the 30 m search windows (675 Mpx) 12.3 GiB → 2.8 GiB + 15 B/px. Disk (outputs, cache and the
#: run's Zarr store): the 30 m demo's work folder peaked at 36.8 GB (55 B/px) with the cache's
#: GeoTIFFs hard-linked to the outputs; without ``--cache-dir`` the run still writes its
#: intermediates to a private cache, so the saving is small.
MEMORY_BASE = int(2.8 * 2**30)
BYTES_PER_PX_MEMORY = 15
BYTES_PER_PX_DISK = 60
BYTES_PER_PX_DISK_NO_CACHE = 56


def check_grid_size(shape: tuple[int, int], opts: RunOptions, where: Path) -> None:
    """Refuse a grid this machine cannot hold, before anything is computed: the estimate, the
    machine's memory and free disk, and how to go on (coarser --resolution, or
    --no-size-check to run anyway, e.g. on a larger --scheduler cluster)."""
    import shutil as _shutil

    import psutil

    px = int(shape[0]) * int(shape[1])
    need_mem = MEMORY_BASE + px * BYTES_PER_PX_MEMORY
    total = psutil.virtual_memory().total
    hint = "use a coarser --resolution, split the study area, or pass --no-size-check"
    if opts.scheduler is None and need_mem > total:
        raise InputError(
            f"a {shape[0]:,} × {shape[1]:,} px grid ({px / 1e6:,.0f} Mpx) needs ~"
            f"{need_mem / 2**30:,.0f} GiB of memory ({MEMORY_BASE / 2**30:.1f} GiB + "
            f"{BYTES_PER_PX_MEMORY} B/px) and this "
            f"machine has {total / 2**30:.0f} GiB; {hint}"
        )
    probe = Path(where).resolve()
    while not probe.exists():
        probe = probe.parent
    per_px = BYTES_PER_PX_DISK if opts.cache_dir is not None else BYTES_PER_PX_DISK_NO_CACHE
    need_disk = px * per_px
    free = _shutil.disk_usage(probe).free
    if need_disk > free:
        raise InputError(
            f"a {px / 1e6:,.0f} Mpx grid needs ~{need_disk / 1e9:,.0f} GB of disk for outputs "
            f"and cache (~{per_px} B/px); {probe} has {free / 1e9:,.0f} GB free; {hint}"
        )


def _inproc_on_loopback() -> None:
    """Name loopback in in-process workers' addresses. The IP in an ``inproc://`` address is a
    label only, but distributed finds it with a UDP "connect" towards 8.8.8.8 (no packet is sent;
    still a route lookup an offline intranet's audit flags, and tests/test_safety.py refuses)."""
    from distributed.comm import inproc

    manager = getattr(inproc, "global_manager", None)
    if manager is not None and not getattr(manager, "_ip", None):
        manager._ip = "127.0.0.1"


def in_process_memory_limit(limit: str | int | None) -> str | int | None:
    """The memory limit to give each in-process worker [bytes or dask's string].

    Thread-pool workers share one process, and each one's memory monitor reads that process's
    RSS. ``"auto"`` would give each of n workers 1/n of the machine and have them spill and pause
    against the whole process's memory, n times too early; so ``"auto"`` becomes the machine's
    memory for each (the process as a whole is the budget). An explicit limit is kept: it is
    then the process's budget, checked by every worker."""
    if limit == "auto":
        from distributed.system import MEMORY_LIMIT

        return int(MEMORY_LIMIT)
    return limit


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
    limit = opts.memory_limit
    if not opts.processes:
        tune_malloc()
        limit = in_process_memory_limit(limit)
        _inproc_on_loopback()
    with (
        dask.config.set(local_cluster_config()),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=opts.processes,
            memory_limit=limit,
            dashboard_address="127.0.0.1:0",
            worker_dashboard_address="127.0.0.1:0",  # never listen beyond loopback
            silence_logs=50,  # critical only: workers log heartbeat errors while shutting down
        ) as cluster,
        Client(cluster) as client,
    ):
        from sitekit.engine.trim import Trim

        client.register_plugin(Trim())  # free heap pages go back to the system (trim.py)
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
    client: Any,
    arrays: dict[str, Any],
    quiet: bool,
    label: str,
    store: Path | None = None,
    store_attrs: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, float]]:
    """Compute named lazy layers once (shared intermediates computed once).

    With a ``store`` (a Zarr folder, :mod:`sitekit.engine.layerstore`) the layers are written
    into it block by block, one band of block rows of every layer at a time
    (:func:`~sitekit.engine.layerstore.bands`), and come back as lazy arrays reading it:
    nothing of the study area stays in worker memory. Without one they are persisted in the cluster's memory
    (distributed spills them to disk above its memory limits): for an external scheduler whose
    workers may not see this machine's disk.

    A value may also be a callable ``build(layers, stage) -> collection``: it is called with the
    computed layers (store-backed or persisted) and its collection computed too (the
    pumped-storage search). With a store, builders are called once every layer is written, with
    the layers read from the store, and ``stage(arrays, label)`` computes named dask
    arrays into the store at once and returns them read back lazily: a builder's own
    intermediates (the search's filled DEM, flow directions) then wait on disk between its
    steps instead of in worker memory. Without a store ``stage`` is None.

    Returns ``(layers, others, task_s)``: the dask arrays, every non-array collection (e.g. the
    pumped-storage pairs) computed and gathered, and the worker seconds per task name
    (:func:`task_seconds`, the 15 largest; the scheduler keeps the last
    ``distributed.scheduler.dashboard.tasks.task-stream-length`` tasks, 100,000 by default, so a
    larger graph's totals cover its last tasks only). Nothing is gathered whole: rasters
    are then written strip by strip and site extraction reads its layers strip by strip.
    ``store_attrs`` are written as every stored array's attributes (e.g. the CRS).
    """
    import dask.array as da
    import xarray as xr
    from distributed import futures_of, get_task_stream, wait

    from sitekit.engine import layerstore, logs

    datas = {k: (a.data if isinstance(a, xr.DataArray) else a) for k, a in arrays.items()}
    lazy = {k: d for k, d in datas.items() if isinstance(d, da.Array)}
    # a builder is a plain callable (a Delayed is callable too, but it is a collection)
    builds = {
        k: d
        for k, d in datas.items()
        if k not in lazy and callable(d) and not dask.is_dask_collection(d)
    }
    other = {k: d for k, d in datas.items() if k not in lazy and k not in builds}
    attrs = {k: dict(a.attrs) for k, a in arrays.items() if isinstance(a, xr.DataArray)}

    def _watch(futures: list[Any], what: str) -> None:
        if not quiet:  # on stderr: a live bar on a terminal, a line per ~10 s elsewhere
            logs.progress(futures, what)
        wait(futures)

    def _write_now(collections: list[Any], what: str) -> None:
        """Compute store writes, showing progress; a failed block write raises here."""
        written = client.compute(collections)
        _watch(written, what)
        for f in written:
            f.result()

    futures: dict[str, Any] = {}
    with get_task_stream(client) as stream:
        if store is None:
            done = dict(zip(lazy, client.persist(list(lazy.values())), strict=True))
            # builders get the persisted layers, so their graphs read futures instead of
            # copying the layers' upstream graphs
            other.update({k: build(done, None) for k, build in builds.items()})
            # client.compute on a list mixing collections does not keep the order: one each
            futures = {k: client.compute(d) for k, d in other.items()}
            _watch([f for d in done.values() for f in futures_of(d)] + list(futures.values()),
                   label)  # fmt: skip
        else:
            # the layers' writes band after band of block rows: in one graph, whole layers
            # waited in memory for writes dask ran later (13.9 GiB at 30 m)
            writes = layerstore.write(lazy, store, attrs, store_attrs)
            parts = layerstore.bands(writes)
            ny = parts[-1][1] if parts else 0  # the last band ends at the last row
            for r0, r1, part in parts:
                _write_now(
                    part, f"{label} (rows {r0:,}–{r1:,} of {ny:,})" if len(parts) > 1 else label
                )
            # builders read the layers back from the store (all written now) and may stage
            # their own intermediates there (``stage``)
            done = layerstore.read(store, lazy)

            stage = layerstore.Stage(store, _write_now, store_attrs)
            other.update({k: build(done, stage) for k, build in builds.items()})
            futures = {k: client.compute(d) for k, d in other.items()}
            if futures:
                _watch(list(futures.values()), f"{label} ({', '.join(futures)})")
    task_s = task_seconds(stream.data, top=15)
    return done, {k: f.result() for k, f in futures.items()}, task_s
