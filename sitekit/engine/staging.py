"""The output folder of a run, staged: results are written into a staging folder next to
``out`` and swapped in at the end, so a killed run leaves the previous results intact and never a
half-written file. A live run holds a lock inside its staging folder; what killed runs left is
swept before the next run starts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: stale staging folders are not swept
    fcntl = None  # type: ignore[assignment]

from sitekit.io.ownership import check_replaceable

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
