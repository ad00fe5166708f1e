"""What sitekit may delete: only folders it made, recognised by a marker it wrote.

sitekit deletes or replaces files in two places only, and both carry a marker:

* an **output folder** (``--out``) holds :data:`OUTPUT_MARKER`, written into the staging folder
  before it is swapped in. ``--force`` replaces an existing folder only when it is empty or holds
  that marker (or is a run folder of an earlier sitekit release, recognised by its ``run.json``
  and nothing but the files a run writes);
* a **cache folder** (``--cache-dir``) holds a ``CACHEDIR.TAG`` that names sitekit (the Cache
  Directory Tagging Specification, Bryan Ford 2004, so backup tools skip it too). ``sitekit cache
  prune`` refuses an untagged folder, and a run refuses to use a non-empty folder that holds files
  a cache does not.

Whatever the markers say, a run never replaces the folder it is started from, an ancestor of it,
or a folder that holds one of the run's own inputs (catalogue, recipes, data roots).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable
from pathlib import Path

from sitekit.errors import OutputError

#: file in every output folder sitekit writes; ``--force`` replaces only folders that hold it
OUTPUT_MARKER = ".sitekit-output"
#: the Cache Directory Tagging Specification's file name and first line (bford.info/cachedir)
CACHE_TAG = "CACHEDIR.TAG"
CACHE_SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"
_CACHE_TAG_TEXT = (
    f"{CACHE_SIGNATURE}\n"
    "# This file is a cache directory tag created by sitekit (a layer cache).\n"
    "# sitekit cache prune removes entries only in folders that hold this file.\n"
)

#: what an output folder of an earlier release (no marker) may hold besides run.json
_LEGACY_SUFFIXES = {".csv", ".xlsx", ".gpkg", ".html", ".json", ".md", ".png", ".svg", ".qml", ""}
_LEGACY_DIRS = {"rasters", "route", "hosting"}
#: top-level names of a cache folder: layer entries, memo kinds, tables and temporaries
_CACHE_LAYER = re.compile(r"^.+-[0-9a-f]{20}(\.gpkg|\.json)?$")
#: folders of one-file-per-entry memos (:class:`sitekit.engine.cache.LayerCache`)
MEMO_KINDS = ("rasters", "overlays", "mcp")


# ------------------------------------------------------------------------------ outputs
def mark_output(folder: Path) -> None:
    """Write :data:`OUTPUT_MARKER` into ``folder`` (a staging folder about to become an output)."""
    from sitekit import __version__

    (Path(folder) / OUTPUT_MARKER).write_text(
        json.dumps({"tool": "sitekit", "version": __version__}) + "\n", encoding="utf-8"
    )


def _legacy_output(folder: Path) -> bool:
    """True for a run folder of a release before the marker: a ``run.json`` written by sitekit
    and nothing but the files and folders a run writes."""
    try:
        meta = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or "sitekit" not in json.dumps(meta.get("versions", {})):
        return False
    for child in folder.iterdir():
        if child.name.startswith("."):
            return False
        if child.is_dir():
            if child.name not in _LEGACY_DIRS:
                return False
        elif child.suffix.lower() not in _LEGACY_SUFFIXES:
            return False
    return True


def made_by_sitekit(folder: Path) -> bool:
    """True when ``folder`` is an output folder sitekit wrote (its marker, or a legacy run)."""
    folder = Path(folder)
    return (folder / OUTPUT_MARKER).is_file() or _legacy_output(folder)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_replaceable(out: Path, force: bool, inputs: Iterable[Path] = ()) -> None:
    """Raise :class:`OutputError` unless ``out`` may be created or replaced by a run.

    ``out`` may be replaced (with ``force``) only when it is an empty folder or one that sitekit
    wrote, and never when it is the working folder, an ancestor of it, or holds any of ``inputs``.
    """
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise OutputError(f"{out} exists and is not a folder; choose another --out")
    if not force:
        raise OutputError(f"output folder {out} exists; pass --force to replace it")
    real = out.resolve()
    here = Path.cwd().resolve()
    if _inside(here, real):
        raise OutputError(
            f"--out {out} is the folder you are working in (or holds it); sitekit will not "
            "replace it: choose a new folder, e.g. --out out"
        )
    for p in inputs:
        try:
            held = _inside(Path(p).resolve(), real)
        except OSError:  # an unresolvable path (a loop) is no input inside ``out``
            held = False
        if held:
            raise OutputError(
                f"--out {out} holds an input of this run ({p}); sitekit will not replace "
                "it: choose a new folder, e.g. --out out"
            )
    if not any(out.iterdir()):
        return
    if not made_by_sitekit(out):
        raise OutputError(
            f"output folder {out} holds files sitekit did not write (no {OUTPUT_MARKER} marker); "
            "--force replaces only sitekit's own output folders: choose a new --out folder or "
            "remove it yourself"
        )


# ------------------------------------------------------------------------------ caches
def is_cache(root: Path) -> bool:
    """True when ``root`` holds a ``CACHEDIR.TAG`` written by sitekit."""
    try:
        text = (Path(root) / CACHE_TAG).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return text.startswith(CACHE_SIGNATURE) and "sitekit" in text


def _looks_like_cache(root: Path) -> bool:
    """True when every entry of ``root`` is one a sitekit cache holds (an untagged cache of an
    earlier release)."""
    for child in root.iterdir():
        name = child.name
        if name.startswith(".") or _CACHE_LAYER.match(name):
            continue
        if child.is_dir() and name in MEMO_KINDS:
            continue
        return False
    return True


def claim_cache(root: Path, create: bool = True) -> None:
    """Make ``root`` a sitekit cache folder (create it, write the tag) or raise
    :class:`OutputError` when it already holds files that are not a cache's.

    With ``create=False`` a missing folder is left missing (a run that fails before it caches
    anything leaves nothing behind; the tag is written when the run commits). A folder that
    cannot be written is left as it is (the cache then only reads, or warns)."""
    root = Path(root)
    if not create and not root.exists():
        return
    if root.exists() and not root.is_dir():
        raise OutputError(
            f"cache folder {root} exists and is not a folder; choose another --cache-dir"
        )
    if is_cache(root):
        return
    if root.is_dir() and not _looks_like_cache(root):
        raise OutputError(
            f"cache folder {root} holds files that sitekit did not write (no {CACHE_TAG}); "
            "choose another --cache-dir (or an empty folder)"
        )
    with contextlib.suppress(OSError):
        root.mkdir(parents=True, exist_ok=True)
        (root / CACHE_TAG).write_text(_CACHE_TAG_TEXT, encoding="utf-8")


def require_cache(root: Path) -> None:
    """Raise :class:`OutputError` unless ``root`` is a tagged sitekit cache folder."""
    if not Path(root).is_dir():
        raise OutputError(f"cache folder {root} does not exist")
    if not is_cache(root):
        raise OutputError(
            f"{root} is not a sitekit cache folder (no {CACHE_TAG} written by sitekit); "
            "nothing was removed"
        )
