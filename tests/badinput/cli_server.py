"""Run ``sitekit`` command lines in forked children of one pre-imported interpreter.

A fresh ``python -c "from sitekit.cli import main; main()"`` spends 3–5 s importing geopandas,
dask and rasterio before it looks at its arguments; the bad-input corpus has dozens of cases. This
helper imports sitekit once (no threads are running then: it checks) and forks one child per
command line. The child is a real process running the real console entry point
(:func:`sitekit.cli.main`): its stdout/stderr are files, its exit status is what the parent's
``waitpid`` sees, an uncaught exception prints Python's traceback and exits 1 exactly as the
interpreter would. ``tests/test_badinput.py`` also runs one case through a genuine
``sys.executable -c`` subprocess and checks both agree.

Protocol (one JSON object per line): request ``{"args": [...], "cwd": ..., "stdout": path,
"stderr": path, "exc_log": path, "timeout": s}`` on stdin → reply ``{"rc": int | null}`` on
stdout (null = killed after ``timeout``). The class of the exception the CLI exits on is
appended to ``exc_log`` (see :func:`_observe_exit`), and ``<cluster>`` when a run starts its Dask
client (:func:`_observe_cluster`); both only observe.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback


def _observe_exit(log_path: str) -> None:
    """Record the exception being handled when ``sys.exit`` is called (the CLI's error path).

    ``sitekit.cli`` turns an exception into one stderr line and ``sys.exit(2)`` (or 1) inside its
    ``except`` block, so ``sys.exc_info()`` there is the original exception; nothing is added to
    any traceback and the exit itself is unchanged.
    """
    real_exit = sys.exit

    def exit_(code=None):  # noqa: ANN001, ANN202
        exc = sys.exc_info()[1]
        if exc is not None:
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(f"{type(exc).__name__}\n")
        real_exit(code)

    sys.exit = exit_


def _observe_cluster(log_path: str) -> None:
    """Log ``<cluster>`` when a run starts its Dask client (input errors should come before)."""
    import sitekit.engine.run

    real = sitekit.engine.run.dask_client

    def dask_client(opts):  # noqa: ANN001, ANN202
        with open(log_path, "a", encoding="utf-8") as f:
            f.write("<cluster>\n")
        return real(opts)

    sitekit.engine.run.dask_client = dask_client


def _child(req: dict) -> None:
    code = 1
    try:
        os.setpgid(0, 0)  # own process group: a timeout kills it with any Dask workers
        os.chdir(req["cwd"])
        _observe_exit(req["exc_log"])
        _observe_cluster(req["exc_log"])
        for fd, key, flags in ((1, "stdout", os.O_WRONLY), (2, "stderr", os.O_WRONLY)):
            f = os.open(req[key], flags | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(f, fd)
            os.close(f)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        sys.argv = ["sitekit", *req["args"]]
        from sitekit.cli import main

        try:
            main()
            code = 0
        except SystemExit as exc:  # as the interpreter turns SystemExit into an exit status
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:  # noqa: BLE001 - what the interpreter prints for an uncaught error
            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _wait(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)  # the child's own group (see _child)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.02)


def serve() -> None:
    import sitekit.cli

    sitekit.cli.register()
    # what the verbs import lazily, so each child starts warm
    import rich.console  # noqa: F401
    import rich.table  # noqa: F401

    import sitekit.engine.pipeline  # noqa: F401
    import sitekit.engine.routes  # noqa: F401
    import sitekit.engine.run  # noqa: F401
    import sitekit.io.catalog  # noqa: F401
    import sitekit.io.check  # noqa: F401
    import sitekit.io.routes  # noqa: F401
    import sitekit.science.routes  # noqa: F401
    import sitekit.specs.recipe  # noqa: F401

    if threading.active_count() != 1:
        raise RuntimeError(
            f"threads running after imports ({threading.enumerate()}): forking is unsafe"
        )
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(req)
        rc = _wait(pid, float(req.get("timeout", 300)))
        print(json.dumps({"rc": rc}), flush=True)


if __name__ == "__main__":
    serve()
