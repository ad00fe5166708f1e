"""Scale benchmark: one `sitekit demo` at a given resolution, with its whole-process-tree memory,
scratch disk, wall time and worker restarts (issue 27's figures).

Usage::

    python benchmarks/scale.py --resolution 90 [--label NAME] [-- extra sitekit demo options]
    python benchmarks/scale.py --resolution 90 -- --processes --workers 2 --memory-limit 3GiB

Each run appends a section to ``benchmarks/RESULTS_scale.md`` (or ``--results``): the command,
commit, machine, wall time, peak RSS summed over the process tree (sampled every 0.2 s), the
largest single process, the peak size of the work folder (outputs, cache and the run's Zarr
layer store; sampled every 2 s), the worker processes seen (more than ``--workers``: restarts), the run's
``timings_s`` and ``task_seconds`` (from ``run.json``) and the memory timeline (per 30 s).
Run on demand, never in the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent


def _du(path: Path) -> int:
    """Bytes of the files under ``path``, each hard-linked file once (as ``du``)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for root, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(root, f))
                if st.st_nlink > 1:
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def run(resolution: float, work: Path, extra: list[str], command: list[str] | None = None) -> dict:
    """One cold run in ``work`` (emptied first); returns the measurements. ``command`` replaces
    the ``sitekit`` executable (e.g. a wrapper script run by this Python)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    exe = shutil.which("sitekit", path=str(Path(sys.executable).parent)) or "sitekit"
    cmd = [*(command or [exe]), "demo", "--resolution", f"{resolution:g}", "--out", str(work / "out"),
           "--cache-dir", str(work / "cache"), *extra]  # fmt: skip
    log = work / "stderr.log"
    t0 = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    root = psutil.Process(proc.pid)
    peak = big = 0
    disk = [0]
    timeline: list[tuple[float, float]] = []
    stop = threading.Event()

    def _disk() -> None:
        while not stop.is_set():
            disk[0] = max(disk[0], _du(work))
            stop.wait(2.0)

    th = threading.Thread(target=_disk, daemon=True)
    th.start()
    last = -1e9
    workers: set[int] = set()  # worker processes seen (a restarted worker is a new process)
    while proc.poll() is None:
        try:
            kids = root.children(recursive=True)
            rss = [p.memory_info().rss for p in [root, *kids]]
            for k in kids:
                with contextlib.suppress(psutil.Error):
                    if "spawn_main" in " ".join(k.cmdline()):
                        workers.add(k.pid)
        except psutil.Error:
            rss = [0]
        s = sum(rss)
        peak, big = max(peak, s), max(big, max(rss))
        now = time.perf_counter() - t0
        if now - last >= 30:
            timeline.append((round(now), round(s / 2**30, 2)))
            last = now
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    text = log.read_text(errors="replace")
    asked = re.search(r"--workers[= ](\d+)", " ".join(extra))
    restarts = len(workers) - int(asked.group(1)) if asked and workers else None
    doc: dict = {
        "command": " ".join(cmd if command else ["sitekit", *cmd[1:]]),
        "exit": proc.returncode,
        "wall_s": round(wall, 1),
        "tree_peak_gib": round(peak / 2**30, 2),
        "largest_gib": round(big / 2**30, 2),
        "work_peak_gb": round(disk[0] / 1e9, 2),
        "worker_processes_seen": len(workers),
        "restarts": restarts,
        "timeline": timeline,
        "log_tail": text.strip().splitlines()[-3:],
    }
    rj = work / "out" / "run.json"
    if rj.exists():
        d = json.loads(rj.read_text())
        doc["timings_s"] = d.get("timings_s")
        doc["task_seconds"] = d.get("task_seconds")
        doc["grid"] = d.get("grid")
    return doc


def _commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, text=True,
                             capture_output=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=HERE, text=True, capture_output=True).stdout.strip()  # fmt: skip
        return rev + (" (+ uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write(path: Path, label: str, doc: dict) -> None:
    mem = psutil.virtual_memory().total / 2**30
    cpu = platform.processor() or platform.machine()
    lines = [
        f"## {label}",
        "",
        f"- command: `{doc['command']}`",
        f"- date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}; commit {_commit()}",
        f"- machine: {psutil.cpu_count()} cores ({cpu}), {mem:.1f} GiB RAM; "
        f"load average at the end {os.getloadavg()[0]:.1f}",
        f"- exit {doc['exit']}; wall **{doc['wall_s']:.1f} s**; peak RSS over the process tree "
        f"**{doc['tree_peak_gib']} GiB**, largest process {doc['largest_gib']} GiB; work folder "
        f"(outputs, cache, layer store) at most {doc['work_peak_gb']} GB; worker processes "
        f"seen: {doc['worker_processes_seen']} (restarts: {doc['restarts']}; none with in-process "
        "workers)",
    ]
    if doc.get("timings_s"):
        lines.append(f"- `run.json` timings_s: `{json.dumps(doc['timings_s'])}`")
    if doc.get("task_seconds"):
        lines.append(f"- worker seconds per task name: `{json.dumps(doc['task_seconds'])}`")
    lines.append(
        "- memory timeline (s, GiB over the tree): "
        + ", ".join(f"{t}: {g}" for t, g in doc["timeline"])
    )
    lines.append("")
    header = (
        "# Scale runs: `sitekit demo` at finer resolutions\n\n"
        "Written by `benchmarks/scale.py` (one section per run, appended; do not edit by hand).\n\n"
    )
    old = path.read_text() if path.exists() else header
    path.write_text(old + "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=float, required=True)
    ap.add_argument("--label", default=None)
    ap.add_argument("--workdir", type=Path, default=HERE / "work" / "scale")
    ap.add_argument("--results", type=Path, default=HERE / "RESULTS_scale.md")
    ap.add_argument(
        "--command",
        default=None,
        help="run this instead of the sitekit executable (split on spaces)",
    )
    ap.add_argument("extra", nargs="*", help="options after -- go to `sitekit demo`")
    a = ap.parse_args(argv)
    doc = run(a.resolution, a.workdir, a.extra, a.command.split() if a.command else None)
    label = a.label or f"{a.resolution:g} m" + (f" ({' '.join(a.extra)})" if a.extra else "")
    write(a.results, label, doc)
    print(json.dumps({k: v for k, v in doc.items() if k != "timeline"}, indent=1))
    return 0 if doc["exit"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
