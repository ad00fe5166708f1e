"""Every file a layer's data comes from: VRT members and sidecars, confined to the allowed folders.

A catalogue entry names one file, but GDAL and OGR read more: a ``.vrt`` mosaic reads its member
files (which may be other VRTs), a Shapefile its ``.shp/.shx/.dbf/.prj/.cpg``, a GeoTIFF its
world file, ``.aux.xml`` and ``.ovr``. :func:`dependencies` lists them all, so that

* the cache key covers every byte a layer is read from (new tiles behind a VRT are a new key);
* no member reaches outside the catalogue folder (and ``--data-root`` folders) or the network
  (``/vsicurl/``, ``http://``): the same confinement as the catalogue's own paths.

GDAL's Python pixel functions in VRTs stay disabled (``GDAL_VRT_ENABLE_PYTHON=NO``).
"""

from __future__ import annotations

import os
import stat
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from sitekit.errors import LayerError

os.environ.setdefault("GDAL_VRT_ENABLE_PYTHON", "NO")

#: sidecars read next to ``name.ext`` as ``name.<sidecar>``
_STEM_SIDECARS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx",
                  ".tfw", ".tifw", ".wld", ".jgw", ".pgw", ".rpb", ".imd")  # fmt: skip
#: sidecars read next to ``name.ext`` as ``name.ext<sidecar>``
_FULL_SIDECARS = (".aux.xml", ".ovr", ".msk")
#: VRT elements that name a file GDAL opens
_SOURCE_TAGS = {"SourceFilename", "SourceDataset"}
_MAX_DEPTH = 8
#: a VRT larger than this is not a mosaic description (it would be parsed whole) [bytes]
_MAX_VRT_BYTES = 16 << 20
_REMOTE = ("/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift",
           "/vsihdfs", "/vsiwebhdfs", "/vsistdin", "/vsistdout", "/vsisubfile", "/vsimem")  # fmt: skip


def check_regular(path: Path, where: str) -> None:
    """Raise unless ``path`` is a regular file or a folder (a FIFO, device or socket would hang
    or never end when read)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return  # "file not found" is reported by the reader, with its own message
    except OSError as exc:
        raise LayerError(f"{where}: cannot stat {path} ({exc.strerror or exc})") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise LayerError(
            f"{where}: {path} is not a regular file (a device, pipe or socket); point the "
            "entry at a data file"
        )


def _confined(path: Path, roots: Iterable[Path]) -> bool:
    return any(path.is_relative_to(r) for r in roots)


def _members(vrt: Path, where: str) -> list[Path]:
    """The files a VRT names (resolved), refusing network and GDAL virtual paths."""
    if vrt.stat().st_size > _MAX_VRT_BYTES:
        raise LayerError(f"{where}: {vrt.name} is larger than {_MAX_VRT_BYTES >> 20} MiB")
    try:
        root = ET.parse(vrt).getroot()
    except (ET.ParseError, OSError) as exc:
        raise LayerError(f"{where}: {vrt.name} is not a readable VRT ({exc})") from None
    found: list[Path] = []
    for el in root.iter():
        if el.tag not in _SOURCE_TAGS or not (el.text or "").strip():
            continue
        name = el.text.strip()
        low = name.lower()
        if low.startswith(_REMOTE) or "://" in low or low.startswith("/vsi"):
            raise LayerError(
                f"{where}: {vrt.name} reads '{name}', a network or GDAL virtual path; sitekit "
                "reads local files only: copy the data below the catalogue folder"
            )
        relative = el.get("relativeToVRT", "0").strip() == "1" or not Path(name).is_absolute()
        p = (vrt.parent / name) if relative else Path(name)
        found.append(p.resolve())
    return found


def dependencies(path: Path, roots: Iterable[Path], where: str) -> list[Path]:
    """``path`` and every file reading it touches (VRT members, recursively; sidecars), each
    confined to ``roots``. Raises :class:`LayerError` naming the offending member."""
    roots = tuple(roots)
    out: list[Path] = []
    seen: set[Path] = set()

    def visit(p: Path, depth: int) -> None:
        if p in seen:
            return
        seen.add(p)
        if not _confined(p, roots):
            raise LayerError(
                f"{where}: reads {p}, outside the catalogue folder; move the data below it or "
                "allow the folder with --data-root"
            )
        check_regular(p, where)
        out.append(p)
        for side in _STEM_SIDECARS:
            q = p.with_suffix(side)
            if q != p and q.is_file() and _confined(q.resolve(), roots):
                seen.add(q)
                out.append(q)
        for side in _FULL_SIDECARS:
            q = p.with_name(p.name + side)
            if q.is_file() and _confined(q.resolve(), roots):
                seen.add(q)
                out.append(q)
        if p.suffix.lower() == ".vrt" and p.is_file():
            if depth >= _MAX_DEPTH:
                raise LayerError(f"{where}: VRTs nested deeper than {_MAX_DEPTH} levels")
            for m in _members(p, where):
                visit(m, depth + 1)

    visit(Path(path), 0)
    return out
