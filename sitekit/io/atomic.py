"""Atomic output: write to a temporary sibling, then ``os.replace`` it over the target.

A reader never sees a half-written GeoPackage or GeoTIFF: either the previous file or the new one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success move it over ``target``.

    On any exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.",
        suffix=(suffix if suffix is not None else target.suffix) + ".part",
        dir=target.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.unlink()  # writers (GDAL) want to create the file themselves
    try:
        yield tmp_path
        if tmp_path.is_dir() and target.exists():
            shutil.rmtree(target)
        os.replace(tmp_path, target)
    except BaseException:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()
        for extra in tmp_path.parent.glob(
            tmp_path.name + "*"
        ):  # GDAL sidecars (-wal, -shm, .aux.xml)
            with contextlib.suppress(OSError):
                extra.unlink()
        raise


def write_text(target: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Atomically write a text file."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(target)


def write_bytes(target: str | Path, data: bytes) -> Path:
    """Atomically write a binary file."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)
