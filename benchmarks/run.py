"""The benchmark: sitekit vs a GDAL command-line chain vs numpy/scipy in memory vs the I/O floor.

One command generates the synthetic inputs (``synth.py``, cached in the work folder), runs every
tool on every size ``--repeats`` times as a subprocess, checks that the tools agree, and writes
``benchmarks/RESULTS.md`` (plus ``WORKDIR/results.json`` with every measurement)::

    .venv/bin/python benchmarks/run.py [--sizes 16,67,268] [--repeats 3]
        [--tools sitekit,gdal,numpy,io] [--workdir benchmarks/work]

What is measured, per run:

* wall [s]: ``time.perf_counter`` around the subprocess (interpreter start-up, imports, cluster
  start-up, reading, computing and writing included); the table shows the median of the repeats;
* CPU [s]: user + sys of the process and its waited-for children (``/usr/bin/time -v``);
* peak RSS [GiB]: the largest sum of RSS over the whole process tree (the tool, its
  ``LocalCluster`` worker processes, GDAL's subprocesses), polled every 0.2 s with
  psutil; also the largest PSS sum (shared pages split between processes, so libraries loaded by
  every worker count once; sampled every 2 s and whenever RSS grew by 5 %, because reading it
  walks each process's page tables) and ``/usr/bin/time``'s "Maximum resident set size" (the largest
  *single* process). The table shows the largest value over the repeats.

Repeats interleave the tools (run 1 of every tool, then run 2 …), so background load on a shared
machine spreads over all of them; the load average is recorded with every run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
import synth  # noqa: E402

TOOLS = ("sitekit", "gdal", "numpy", "io")
#: extra sitekit runs: 1 worker (scaling), cold run filling sitekit.engine.cache, weights-only re-run
EXTRA = {
    "sitekit-1w": "sitekit, 1 worker",
    "sitekit-1c": "sitekit, 1 worker pinned to 1 core (taskset)",
    "sitekit-proc": "sitekit, worker processes",
    "sitekit-client": "sitekit, client compresses the output (--writer client)",
    "sitekit-1w-client": "sitekit, 1 worker, client compresses the output (--writer client)",
    "sitekit-cold": "sitekit + cache, cold",
    "sitekit-warm": "sitekit, weights-only re-run, warm cache",
}
GIB = 2**30
#: PSS (``smaps_rollup``) is sampled every this many 0.2 s polls, and when RSS grows by 5 %
PSS_EVERY = 10
TARGETS = {
    "speed_vs_gdal": 2.0,
    "vs_io_floor": 2.0,
    "workers_2_vs_1": 1.6,
    "rss_gib_268": 3.0,
    "rss_growth": 1.3,
    "warm_rerun": 0.25,
}


# ------------------------------------------------------------------------------- measuring
def _tree(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _mem(procs: list, pss: bool = True) -> tuple[int, int]:
    """(RSS, PSS) summed over ``procs``; PSS only with ``pss`` (else 0).

    RSS comes from ``/proc/PID/statm`` (~0.04 ms a process). PSS needs ``smaps_rollup``, which
    walks the process's page tables: 70–100 ms for a 5–6 GB dask worker, time taken from the
    measured run's two cores and under its memory-map lock, so it is sampled less often."""
    import psutil

    rss_sum = pss_sum = 0
    for p in procs:
        try:
            if pss:
                info = p.memory_full_info()
                rss_sum += info.rss
                pss_sum += getattr(info, "pss", info.rss)
            else:
                rss_sum += p.memory_info().rss
        except psutil.Error:
            continue
    return rss_sum, pss_sum


def _parse_time_v(text: str) -> dict:
    def grab(label: str) -> float | None:
        m = re.search(rf"{re.escape(label)}: ([0-9.:]+)", text)
        return None if m is None else m.group(1)

    out = {}
    if (v := grab("Maximum resident set size (kbytes)")) is not None:
        out["max_single_rss_gib"] = int(v) * 1024 / GIB
    u, s = grab("User time (seconds)"), grab("System time (seconds)")
    if u is not None and s is not None:
        out["cpu_s"] = float(u) + float(s)
        out["user_s"], out["sys_s"] = float(u), float(s)
    return out


def measure(cmd: list[str], log: Path, env: dict, time_limit_s: float, mem_limit: int) -> dict:
    """Run ``cmd`` under ``/usr/bin/time -v``, polling the tree's memory; kill it over the limits."""
    log.parent.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with open(log.with_suffix(".out"), "w") as fo, open(log.with_suffix(".err"), "w") as fe:
        p = subprocess.Popen(
            ["/usr/bin/time", "-v", *cmd],
            stdout=fo,
            stderr=fe,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
        peak_rss = peak_pss = 0
        killed = None
        polls = pss_rss = 0
        while p.poll() is None:
            # RSS every poll; PSS every PSS_EVERY-th poll and when RSS passes 1.05× the RSS of
            # the last PSS sample
            procs = _tree(p.pid)
            rss, _ = _mem(procs, pss=False)
            if rss > 1.05 * pss_rss or polls % PSS_EVERY == 0:
                rss, pss = _mem(procs)
                peak_pss, pss_rss = max(peak_pss, pss), rss
            peak_rss = max(peak_rss, rss)
            polls += 1
            el = time.perf_counter() - t0
            if rss > mem_limit:
                killed = f"process tree RSS {rss / GIB:.1f} GiB > limit {mem_limit / GIB:.0f} GiB"
            elif el > time_limit_s:
                killed = f"still running after {el / 60:.0f} min (limit {time_limit_s / 60:.0f})"
            if killed:
                os.killpg(
                    p.pid, signal.SIGKILL
                )  # the session we started: the tool and its children
                p.wait()
                break
            time.sleep(0.2)
    wall = time.perf_counter() - t0
    out_text = log.with_suffix(".out").read_text()
    err_text = log.with_suffix(".err").read_text()
    res = {
        "wall_s": wall,
        "peak_rss_gib": peak_rss / GIB,
        "peak_pss_gib": peak_pss / GIB,
        "returncode": p.returncode,
        "load_start": load0,
        "load_end": os.getloadavg()[0],
    }
    res.update(_parse_time_v(err_text))
    if killed:
        res["skipped"] = killed
    elif p.returncode != 0:
        res["error"] = err_text.strip().splitlines()[-12:]
    for line in out_text.splitlines():
        if line.startswith("BENCH_RESULT "):
            res["internal"] = json.loads(line[len("BENCH_RESULT ") :])
    steps: dict[str, float] = {}
    for line in err_text.splitlines():
        if line.startswith("STEP "):
            _, name, a, b = line.split()
            key = name
            k = 2
            while key in steps:
                key, k = f"{name}#{k}", k + 1
            steps[key] = round(float(b) - float(a), 2)
    if steps:
        res["internal"] = {"tool": "gdal", "steps": steps}
    return res


def tool_cmd(
    tool: str,
    man: dict,
    data: Path,
    out: Path,
    a: argparse.Namespace,
    workers: int | None = None,
    extra: tuple[str, ...] = (),
    pin: bool = False,
) -> tuple[list[str], dict]:
    env = dict(os.environ)
    py = sys.executable
    if tool == "sitekit":
        cmd = [
            py,
            str(HERE / "workload_sitekit.py"),
            str(data),
            str(out),
            "--workers",
            str(workers or a.workers),
            "--threads",
            str(a.threads),
            "--chunks",
            str(a.chunks),
            "--reader",
            a.reader,
            "--malloc",
            a.malloc,
            *(("--processes",) if a.processes else ()),
            *(() if "--writer" in extra else ("--writer", a.writer)),
            *extra,
        ]
        if pin:  # every thread (workers, GDAL's compression and decoding) on CPU 0
            cmd = ["taskset", "-c", "0", *cmd]
    elif tool == "gdal":
        b = man["bounds"]
        cmd = [
            "bash",
            str(HERE / "workload_gdal.sh"),
            str(data),
            str(out),
            *(repr(float(v)) for v in b),
            repr(float(man["res_m"])),
        ]
        for k in ("GDAL_DATA", "PROJ_LIB", "PROJ_DATA", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
            env.pop(k, None)  # the system GDAL and its python bindings, not the venv's wheels
        env["PATH"] = "/usr/bin:/bin:" + env.get("PATH", "")
    elif tool == "numpy":
        cmd = [py, str(HERE / "workload_numpy.py"), str(data), str(out)]
    elif tool == "io":
        cmd = [py, str(HERE / "io_floor.py"), str(data), str(out)]
    else:
        raise SystemExit(f"unknown tool {tool!r}; choose from {', '.join(TOOLS)}")
    return cmd, env


def run_tool(
    tool: str,
    size: int,
    rep: int,
    a: argparse.Namespace,
    work: Path,
    workers: int | None = None,
    tag: str | None = None,
    extra: tuple[str, ...] = (),
    pin: bool = False,
) -> dict:
    man = synth.load_manifest(work, size)
    data = synth.data_dir(work, size)
    name = tag or tool
    out = work / "out" / f"{name}-{size}"
    shutil.rmtree(out, ignore_errors=True)
    cmd, env = tool_cmd(tool, man, data, out, a, workers, extra, pin)
    print(f"  {name:>10} {size:>4} Mpx run {rep + 1}/{a.repeats} …", end="", flush=True)
    r = measure(
        cmd,
        work / "logs" / f"{name}-{size}-{rep}",
        env,
        a.time_limit_min * 60,
        int(a.mem_limit_gib * GIB),
    )
    r.update(tool=tool, tag=name, size=size, rep=rep, pixels=man["pixels"])
    if "skipped" in r:
        print(f" skipped: {r['skipped']}")
    elif "error" in r:
        print(" FAILED:\n    " + "\n    ".join(r["error"]))
    else:
        print(
            f" {r['wall_s']:7.1f} s  CPU {r.get('cpu_s', float('nan')):7.1f} s  "
            f"RSS {r['peak_rss_gib']:5.2f} GiB  (load {r['load_start']:.1f})"
        )
        if tool != "io":
            r["outputs"] = common.summarise_outputs(out)
    return r


# ------------------------------------------------------------------------------- reporting
def _ok(r: dict) -> bool:
    return "skipped" not in r and "error" not in r


def aggregate(runs: list[dict]) -> dict:
    """Median wall/CPU and max memory of a tool's repeats at one size."""
    good = [r for r in runs if _ok(r)]
    if not good:
        bad = runs[0] if runs else {}
        return {"status": bad.get("skipped") or "failed: " + " ".join(bad.get("error", [])[-1:])}
    walls = [r["wall_s"] for r in good]
    med = statistics.median(walls)
    px = good[0]["pixels"]
    agg = {
        "status": "ok",
        "n": len(good),
        "wall_s": med,
        "wall_min_s": min(walls),
        "wall_max_s": max(walls),
        "mpx_per_s": px / 1e6 / med,
        "cpu_s": statistics.median([r.get("cpu_s", float("nan")) for r in good]),
        "peak_rss_gib": max(r["peak_rss_gib"] for r in good),
        "peak_pss_gib": max(r["peak_pss_gib"] for r in good),
        "max_single_rss_gib": max(r.get("max_single_rss_gib", 0.0) for r in good),
        "load": statistics.median([r["load_start"] for r in good]),
    }
    # the run closest to the median: its internal step timings describe the typical run
    typical = min(good, key=lambda r: abs(r["wall_s"] - med))
    agg["internal"] = typical.get("internal")
    if "outputs" in good[-1]:
        agg["outputs"] = good[-1]["outputs"]
    return agg


def agreement(results: dict, sizes: list[int], work: Path) -> dict:
    """Eligible fractions per tool and size; max pairwise difference; pixel checks vs numpy."""
    out = {}
    for s in sizes:
        fr = {
            t: results[t][s]["outputs"]["eligible_fraction"]
            for t in ("sitekit", "gdal", "numpy")
            if s in results.get(t, {}) and "outputs" in results[t][s]
        }
        diff = max(fr.values()) - min(fr.values()) if len(fr) >= 2 else None
        pix = {}
        ref = work / "out" / f"numpy-{s}"
        for t in ("sitekit", "gdal"):
            other = work / "out" / f"{t}-{s}"
            if t in fr and "numpy" in fr and (ref / "mask.tif").exists():
                pix[t] = common.compare_outputs(ref, other)
        out[s] = {
            "fractions": fr,
            "max_diff": diff,
            "ok": diff is not None and diff <= 0.005,
            "pixels_vs_numpy": pix,
        }
    return out


def _fmt(v: float | None, f: str = "{:.1f}") -> str:
    return "—" if v is None else f.format(v)


def _machine() -> dict:
    import psutil

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        commit += " (+ uncommitted changes)" if dirty else ""
    except OSError:
        commit = "unknown"
    try:
        gdal = subprocess.run(
            ["gdalinfo", "--version"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        gdal = "gdal-bin not found"
    import dask
    import distributed
    import numpy
    import rasterio
    import scipy
    import shapely

    return {
        "nproc": os.cpu_count(),
        "ram_gib": psutil.virtual_memory().total / GIB,
        "cpu": cpu,
        "python": platform.python_version(),
        "gdal_cli": gdal,
        "versions": (
            f"numpy {numpy.__version__}, scipy {scipy.__version__}, rasterio "
            f"{rasterio.__version__} (GDAL {rasterio.__gdal_version__}), shapely "
            f"{shapely.__version__}, dask {dask.__version__}, distributed "
            f"{distributed.__version__}"
        ),
        "commit": commit,
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _pf(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**PASS**" if ok else "**FAIL**")


def write_results(path: Path, doc: dict) -> None:
    res, sizes, a = doc["results"], doc["sizes"], doc["args"]
    m = doc["machine"]
    L = [
        "# Benchmark results",
        "",
        "Written by `benchmarks/run.py` (do not edit by hand; see `benchmarks/README.md` for the "
        "workload and what is measured).",
        "",
        f"- command: `{doc['command']}`",
        f"- date: {m['date']}; git commit {m['commit']}",
        f"- machine: {m['nproc']} cores ({m['cpu']}), {m['ram_gib']:.1f} GiB RAM; Python "
        f"{m['python']}; {m['versions']}; GDAL CLI: {m['gdal_cli']}",
        f"- sitekit: LocalCluster {a['workers']} worker "
        f"{'process(es)' if a.get('processes', True) else 'thread pool(s) in-process'} × "
        f"{a['threads']} thread(s), "
        f"chunks {a['chunks']} px, DEM reader `{a['reader']}`, worker malloc `{a['malloc']}`, "
        f"output compressed by the `{a.get('writer', 'client')}`",
        f"- repeats: {a['repeats']} (median wall shown; min–max in brackets); memory is the max "
        "over the repeats",
        f"- limits: a run is killed and recorded as skipped above {a['mem_limit_gib']:g} GiB "
        f"process-tree RSS or {a['time_limit_min']:g} min",
        "- background load: the machine is shared; `load` is the 1-min load average when each "
        "run started (2 cores: load > 2 means other processes competed for the CPU)",
        "",
        "## Wall time, throughput, memory",
        "",
        "| tool | size | wall s (min–max) | Mpx/s | CPU s | peak RSS GiB (tree) | PSS GiB (tree) "
        "| max single-process RSS GiB | load | eligible fraction |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in [*doc["tools"], *(k for k in EXTRA if k in res)]:
        for s in sizes:
            g = res.get(t, {}).get(s)
            if g is None:
                continue
            label = EXTRA.get(t, t)
            if g["status"] != "ok":
                L.append(f"| {label} | {s} Mpx | skipped: {g['status']} | | | | | | | |")
                continue
            ef = g.get("outputs", {}).get("eligible_fraction")
            L.append(
                f"| {label} | {s} Mpx | {g['wall_s']:.1f} ({g['wall_min_s']:.1f}–"
                f"{g['wall_max_s']:.1f}) | {g['mpx_per_s']:.2f} | {_fmt(g['cpu_s'])} | "
                f"{g['peak_rss_gib']:.2f} | {g['peak_pss_gib']:.2f} | "
                f"{g['max_single_rss_gib']:.2f} | {g['load']:.1f} | "
                f"{_fmt(ef, '{:.4f}') if t != 'io' else '(I/O only)'} |"
            )
    L += ["", "## Ratios and targets", ""]

    def wall(t: str, s: int) -> float | None:
        g = res.get(t, {}).get(s)
        return g["wall_s"] if g and g["status"] == "ok" else None

    def rss(t: str, s: int) -> float | None:
        g = res.get(t, {}).get(s)
        return g["peak_rss_gib"] if g and g["status"] == "ok" else None

    L += [
        "| ratio | " + " | ".join(f"{s} Mpx" for s in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]

    def row(label: str, f) -> None:
        vals = []
        for s in sizes:
            v = f(s)
            vals.append("—" if v is None else f"{v:.2f}")
        L.append(f"| {label} | " + " | ".join(vals) + " |")

    def ratio(x: float | None, y: float | None) -> float | None:
        return None if x is None or y is None or y == 0 else x / y

    row(
        "GDAL chain wall / sitekit wall (speed-up)",
        lambda s: ratio(wall("gdal", s), wall("sitekit", s)),
    )
    row("sitekit wall / I/O floor wall", lambda s: ratio(wall("sitekit", s), wall("io", s)))
    row("numpy wall / sitekit wall", lambda s: ratio(wall("numpy", s), wall("sitekit", s)))
    row(
        "sitekit 1-worker wall / 2-worker wall",
        lambda s: ratio(wall("sitekit-1w", s), wall("sitekit", s)),
    )
    row(
        "sitekit 1-worker-on-1-core wall / 2-worker wall",
        lambda s: ratio(wall("sitekit-1c", s), wall("sitekit", s)),
    )
    row(
        "the same, 1 worker / 2 workers, with the other `--writer`",
        lambda s: ratio(wall("sitekit-1w-client", s), wall("sitekit-client", s)),
    )
    row("sitekit peak RSS [GiB]", lambda s: rss("sitekit", s))
    L.append("")
    big = max(sizes)
    mid = 67 if 67 in sizes else None
    tg = doc["targets"]
    L += ["| target (issue 9) | measured | result |", "|---|---|---|"]
    for s in (mid, big):
        if s is None or s not in (67, 268):
            continue
        v = ratio(wall("gdal", s), wall("sitekit", s))
        L.append(
            f"| sitekit ≥ {TARGETS['speed_vs_gdal']:g}× faster than the GDAL chain at {s} "
            f"Mpx | {_fmt(v, '{:.2f}×')} | {_pf(None if v is None else v >= 2.0)} |"
        )
    if 268 in sizes:
        v = ratio(wall("sitekit", 268), wall("io", 268))
        L.append(
            f"| sitekit within 2× of the I/O floor at 268 Mpx | {_fmt(v, '{:.2f}×')} | "
            f"{_pf(None if v is None else v <= 2.0)} |"
        )
    v = tg.get("workers_ratio")
    ws = tg.get("workers_size") or 67
    pinned = ratio(wall("sitekit-1c", ws), wall("sitekit", ws))
    note = f" (1 worker pinned to 1 core: {pinned:.2f}×)" if pinned else ""
    L.append(
        f"| 2 workers ≥ 1.6× faster than 1 worker at {ws} Mpx | "
        f"{_fmt(v, '{:.2f}×')}{note} | {_pf(None if v is None else v >= 1.6)} |"
    )
    if 268 in sizes:
        v = rss("sitekit", 268)
        L.append(
            f"| peak RSS ≤ 3 GiB at 268 Mpx (process tree) | {_fmt(v, '{:.2f} GiB')} | "
            f"{_pf(None if v is None else v <= 3.0)} |"
        )
    if 268 in sizes and 67 in sizes:
        v = ratio(rss("sitekit", 268), rss("sitekit", 67))
        L.append(
            f"| RSS growth 67 → 268 Mpx < 1.3× | {_fmt(v, '{:.2f}×')} | "
            f"{_pf(None if v is None else v < 1.3)} |"
        )
    v = tg.get("warm_ratio")
    L.append(
        f"| weights-only re-run with a warm cache ≤ 25 % of the cold run | "
        f"{tg['warm_cache']} | {_pf(None if v is None else v <= 0.25)} |"
    )
    L.append(
        "| full demo at 250 m ≤ 5 min; 90 m full run recorded; the demo's weights-only re-run "
        "| not part of this harness: `benchmarks/demo_rerun.py` → `DEMO_RESULTS.md` (250 m) and "
        "`DEMO_RESULTS_90m.md` | see there |"
    )
    L += [
        "",
        "## Do the tools agree?",
        "",
        "Eligible fraction = pixels with mask = 1 / all pixels; the tools must agree within "
        "0.005 (absolute). Pixel checks compare each tool's outputs with the numpy reference.",
        "",
        "| size | sitekit | GDAL chain | numpy | max difference | agree? | mask pixels "
        "differing from numpy (sitekit / GDAL) | mean abs score diff vs numpy (sitekit / "
        "GDAL) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in sizes:
        ag = doc["agreement"].get(str(s)) or doc["agreement"].get(s)
        if not ag:
            continue
        fr, pix = ag["fractions"], ag["pixels_vs_numpy"]
        L.append(
            f"| {s} Mpx | {_fmt(fr.get('sitekit'), '{:.4f}')} | {_fmt(fr.get('gdal'), '{:.4f}')} "
            f"| {_fmt(fr.get('numpy'), '{:.4f}')} | {_fmt(ag['max_diff'], '{:.4f}')} | "
            f"{_pf(ag['ok'] if ag['max_diff'] is not None else None)} | "
            f"{_fmt(pix.get('sitekit', {}).get('mask_mismatch_fraction'), '{:.2e}')} / "
            f"{_fmt(pix.get('gdal', {}).get('mask_mismatch_fraction'), '{:.2e}')} | "
            f"{_fmt(pix.get('sitekit', {}).get('score_mean_abs_diff'), '{:.1e}')} / "
            f"{_fmt(pix.get('gdal', {}).get('score_mean_abs_diff'), '{:.1e}')} |"
        )
    L += [
        "",
        "## Where the time goes",
        "",
        "Step timings of the run closest to the median (seconds). sitekit: summed task compute "
        "time per dask graph layer over all workers (from the scheduler's task stream; wall "
        "time of each task, so it includes time a task waited for a CPU), the client's block "
        "writing time, cluster start-up and graph building. GDAL: each command's wall time.",
        "",
    ]
    for t in [*doc["tools"], *(k for k in EXTRA if k in res)]:
        for s in sizes:
            g = res.get(t, {}).get(s)
            if not g or g["status"] != "ok" or not g.get("internal"):
                continue
            st = g["internal"].get("steps", {})
            flat = []
            for k, v in st.items():
                if isinstance(v, dict):
                    flat.append(
                        f"{k}: {{"
                        + ", ".join(f"{kk} {vv:.1f}" for kk, vv in v.items() if vv >= 0.05)
                        + "}"
                    )
                elif isinstance(v, bool):
                    flat.append(f"{k} {'yes' if v else 'no'}")
                elif isinstance(v, int | float):
                    flat.append(f"{k} {v:.1f}")
                elif v:
                    flat.append(f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}")
            L.append(f"- **{EXTRA.get(t, t)}, {s} Mpx**: " + "; ".join(flat))
    if doc.get("profile"):
        L += [
            "",
            "## sitekit per-step cost (profile runs, outside the timed repeats)",
            "",
            "Each step computed alone on the same LocalCluster (the sum of the result, nothing "
            "written); worker CPU = user + sys of all worker processes, from `getrusage`.",
            "",
            "| size | step | wall s | worker CPU s | worker sys s |",
            "|---|---|---|---|---|",
        ]
        for s, prof in doc["profile"].items():
            for step, v in prof.items():
                if isinstance(v, dict) and "wall_s" in v:
                    L.append(
                        f"| {s} Mpx | {step} | {v['wall_s']:.1f} | {v['cpu_s']:.1f} | "
                        f"{v['sys_s']:.1f} |"
                    )
    if doc.get("notes"):
        L += ["", "## Notes", ""] + [f"- {n}" for n in doc["notes"]]
    path.write_text("\n".join(L) + "\n")


# ------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="16,67,268", help="sizes in Mpx (1 = smoke test)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--workdir", type=Path, default=HERE / "work")
    ap.add_argument("--workers", type=int, default=2, help="sitekit LocalCluster workers")
    ap.add_argument("--threads", type=int, default=1, help="threads per sitekit worker")
    ap.add_argument(
        "--processes",
        action="store_true",
        help="sitekit workers as processes (default: thread pools in the workload's process; "
        "the scaling size also gets a run with worker processes either way)",
    )
    ap.add_argument(
        "--both-modes",
        action="store_true",
        help="every size also gets a sitekit run with worker processes (the CLI's --processes), "
        "beside the default in-process thread pools",
    )
    ap.add_argument("--chunks", type=int, default=1024, help="sitekit chunk edge [px]")
    ap.add_argument("--reader", choices=("io", "window"), default="io")
    ap.add_argument("--malloc", choices=("tuned", "default"), default="tuned")
    ap.add_argument(
        "--writer",
        choices=("workers", "client"),
        default="workers",
        help="who compresses sitekit's output tiles (workload_sitekit.py --writer); the scaling "
        "size also gets 1- and 2-worker runs with the other writer",
    )
    ap.add_argument(
        "--scaling-size",
        type=int,
        default=67,
        help="size at which sitekit also runs with 1 worker (0 = skip)",
    )
    ap.add_argument(
        "--cache-size",
        type=int,
        default=67,
        help="size at which sitekit's cold run with sitekit.engine.cache and a weights-only warm "
        "re-run are timed (0 = skip)",
    )
    ap.add_argument(
        "--profile-sizes",
        default="16,67",
        help="sizes with a per-step sitekit profile run ('' = none; each costs ~2.5 sitekit runs)",
    )
    ap.add_argument("--mem-limit-gib", type=float, default=20.0)
    ap.add_argument("--time-limit-min", type=float, default=25.0)
    ap.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="only rewrite --results from WORKDIR/results.json (no runs)",
    )
    a = ap.parse_args(argv)
    if a.report_only:
        doc = _load_doc(a.workdir.resolve() / "results.json")
        write_results(a.results, doc)
        print(f"wrote {a.results}")
        return 0
    sizes = [int(v) for v in a.sizes.split(",") if v]
    tools = [t for t in a.tools.split(",") if t]
    for t in tools:
        if t not in TOOLS:
            ap.error(f"unknown tool {t!r}; choose from {', '.join(TOOLS)}")
    if "gdal" in tools and not shutil.which("gdal_proximity.py", path="/usr/bin:/bin"):
        ap.error(
            "the GDAL chain needs Debian's gdal-bin and python3-gdal: "
            "apt-get install -y gdal-bin python3-gdal"
        )
    work = a.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    command = "benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])

    for s in sizes:
        t0 = time.perf_counter()
        man = synth.generate(s, work)
        print(f"data {s} Mpx: {man['side_px']}² px ready ({time.perf_counter() - t0:.0f} s)")

    runs: dict[str, dict[int, list]] = {}
    scaling = a.scaling_size if a.scaling_size in sizes and "sitekit" in tools else None
    has_cache = _has_layer_cache()
    cache_size = a.cache_size if a.cache_size in sizes and "sitekit" in tools else None
    cache_size = cache_size if has_cache else None
    for s in sizes:
        print(f"size {s} Mpx")
        for rep in range(a.repeats):
            for t in tools:
                runs.setdefault(t, {}).setdefault(s, []).append(run_tool(t, s, rep, a, work))
            if "sitekit" in tools and not a.processes and (s == scaling or a.both_modes):
                runs.setdefault("sitekit-proc", {}).setdefault(s, []).append(
                    run_tool("sitekit", s, rep, a, work, tag="sitekit-proc",
                             extra=("--processes",))
                )  # fmt: skip
            if s == scaling:
                runs.setdefault("sitekit-1w", {}).setdefault(s, []).append(
                    run_tool("sitekit", s, rep, a, work, workers=1, tag="sitekit-1w")
                )
                if shutil.which("taskset"):  # 1 worker with GDAL's threads on the same core
                    runs.setdefault("sitekit-1c", {}).setdefault(s, []).append(
                        run_tool("sitekit", s, rep, a, work, workers=1, tag="sitekit-1c", pin=True)
                    )
                other = "client" if a.writer == "workers" else "workers"
                for tag, n in (("sitekit-client", None), ("sitekit-1w-client", 1)):
                    runs.setdefault(tag, {}).setdefault(s, []).append(
                        run_tool("sitekit", s, rep, a, work, workers=n, tag=tag,
                                 extra=("--writer", other))
                    )  # fmt: skip
            if s == cache_size:
                cdir = work / "cache"
                shutil.rmtree(cdir, ignore_errors=True)
                for tag, w in (("sitekit-cold", "0.6,0.4"), ("sitekit-warm", "0.5,0.5")):
                    extra = ("--cache", str(cdir), "--weights", w)
                    runs.setdefault(tag, {}).setdefault(s, []).append(
                        run_tool("sitekit", s, rep, a, work, tag=tag, extra=extra)
                    )
                runs["sitekit-warm"][s][-1]["cache_gib"] = _du(cdir) / GIB

    results = {t: {s: aggregate(v) for s, v in by.items()} for t, by in runs.items()}
    profile = {}
    prof_sizes = [int(v) for v in a.profile_sizes.split(",") if v]
    if "sitekit" in tools:
        for s in (s for s in sizes if s in prof_sizes):
            print(f"  sitekit per-step profile at {s} Mpx …", flush=True)
            profile[s] = profile_sitekit(s, a, work)
    warm_ratio = None
    if not has_cache:
        warm = (
            "not measurable yet: sitekit has no `sitekit.engine.cache.LayerCache` (no on-disk cache of "
            "intermediate layers)"
        )
    elif cache_size is None:
        warm = "not run (--cache-size not among --sizes)"
    else:
        cold, hot = results["sitekit-cold"][cache_size], results["sitekit-warm"][cache_size]
        if cold["status"] == "ok" and hot["status"] == "ok":
            warm_ratio = hot["wall_s"] / cold["wall_s"]
            warm = (
                f"{warm_ratio:.0%} at {cache_size} Mpx (warm {hot['wall_s']:.1f} s / cold "
                f"{cold['wall_s']:.1f} s, `sitekit.engine.cache.LayerCache` for slope, distance and "
                "the exclusion status; the warm run changes the weights to 0.5/0.5)"
            )
        else:
            warm = f"failed: cold {cold['status']}, warm {hot['status']}"
    wr = None
    if scaling:
        w1 = results["sitekit-1w"][scaling]
        w2 = results["sitekit"][scaling]
        if w1["status"] == "ok" and w2["status"] == "ok":
            wr = w1["wall_s"] / w2["wall_s"]
    doc = {
        "command": command,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "sizes": sizes,
        "tools": tools,
        "machine": _machine(),
        "runs": runs,
        "results": results,
        "agreement": agreement(results, sizes, work),
        "targets": {
            "workers_ratio": wr,
            "workers_size": scaling,
            "warm_cache": warm,
            "warm_ratio": warm_ratio,
        },
        "profile": profile,
        "notes": [],
    }
    doc["notes"] = auto_notes(doc)
    (work / "results.json").write_text(json.dumps(doc, indent=1, default=str))
    write_results(a.results, doc)
    print(a.results.read_text())
    return 0


def auto_notes(doc: dict) -> list[str]:
    """Measured facts about what bounds sitekit, derived from the results."""
    notes = []
    res = doc["results"]
    for s in doc["sizes"]:
        sk, gd = res.get("sitekit", {}).get(s), res.get("gdal", {}).get(s)
        if sk and gd and sk["status"] == "ok" and gd["status"] == "ok":
            px = sk["mpx_per_s"] * sk["wall_s"]
            notes.append(
                f"{s} Mpx: CPU per Mpx — sitekit {sk['cpu_s'] / px:.2f} s (all processes; 2 "
                f"cores), GDAL chain {gd['cpu_s'] / px:.2f} s (mostly one core). The wall-time "
                f"speed-up is bounded by the CPU ratio × the cores sitekit can use."
            )
            st = (sk.get("internal") or {}).get("steps", {})
            if "cluster_s" in st:
                imp = st.get("imports_s")
                notes.append(
                    f"{s} Mpx: sitekit fixed costs — "
                    + (f"imports {imp:.1f} s, " if imp is not None else "")
                    + f"cluster start {st['cluster_s']:.1f} s, graph (vectors, DEM validation"
                    f"{'' if imp is not None else ', imports'}) {st['graph_s']:.1f} s, "
                    f"client-side writing {st.get('client_write_s', 0):.1f} s of compute+write "
                    f"{st.get('compute_write_s', 0):.1f} s."
                )
    for s, prof in (doc.get("profile") or {}).items():
        full = prof.get("score + mask (everything, not written)", {})
        dist = prof.get("distance to grid features", {})
        if full.get("cpu_s") and dist.get("cpu_s"):
            notes.append(
                f"{s} Mpx profile: distance_to_features alone costs {dist['cpu_s']:.1f} worker "
                f"CPU-s, the whole graph {full['cpu_s']:.1f} ({dist['cpu_s'] / full['cpu_s']:.0%})."
            )
    return notes


def _load_doc(path: Path) -> dict:
    """results.json with its size keys back to int (JSON turned them into strings)."""
    doc = json.loads(path.read_text())

    def ints(d: dict) -> dict:
        return {int(k): v for k, v in d.items()}

    doc["results"] = {t: ints(by) for t, by in doc["results"].items()}
    doc["runs"] = {t: ints(by) for t, by in doc["runs"].items()}
    doc["agreement"] = ints(doc["agreement"])
    doc["profile"] = ints(doc.get("profile") or {})
    return doc


def _has_layer_cache() -> bool:
    try:
        from sitekit.engine.cache import LayerCache  # noqa: F401
    except ImportError:
        return False
    return True


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def profile_sitekit(size: int, a: argparse.Namespace, work: Path) -> dict:
    """Per-step cost of the sitekit graph (one subprocess, see workload_sitekit --profile)."""
    data = synth.data_dir(work, size)
    cmd = [
        sys.executable,
        str(HERE / "workload_sitekit.py"),
        str(data),
        str(work / "out" / f"profile-{size}"),
        "--workers",
        str(a.workers),
        "--threads",
        str(a.threads),
        "--chunks",
        str(a.chunks),
        "--reader",
        a.reader,
        "--malloc",
        a.malloc,
        "--writer",
        a.writer,
        "--profile",
    ]
    r = measure(
        cmd,
        work / "logs" / f"profile-{size}",
        dict(os.environ),
        a.time_limit_min * 60 * 3,
        int(a.mem_limit_gib * GIB),
    )
    steps = (r.get("internal") or {}).get("steps", {})
    return steps.get("profile", {"error": r.get("error") or r.get("skipped")})


if __name__ == "__main__":
    sys.exit(main())
