"""sitekit deletes only what it made (issue 20, data loss).

* ``sitekit cache prune DIR`` on a project folder removes nothing and exits 2; in a tagged cache it
  removes cache entries only, never a file a user put there;
* a run refuses a non-empty cache folder of other files;
* ``--out X --force`` replaces X only when X is empty or sitekit's own (marker or legacy run
  folder), never the working folder or an ancestor (``--out .``, ``--out ~``), never a folder
  that holds the run's catalogue;
* the demo's later steps (route, hosting) run on the staging folder: a failure or a kill in them
  leaves the previous results whole;
* SIGTERM ends a run like Ctrl-C: the staging folder is removed and the previous results stay.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from sitekit.cli import cli, register
from sitekit.engine.cache import LayerCache
from sitekit.engine.cachedir import entries, prune
from sitekit.engine.run import staged_output
from sitekit.errors import OutputError
from sitekit.io.ownership import (
    CACHE_TAG,
    OUTPUT_MARKER,
    check_replaceable,
    claim_cache,
    made_by_sitekit,
    mark_output,
)
from sitekit.testing import small_grid

register()


def _project(folder: Path) -> dict[str, bytes]:
    """A user's project folder: a git repo, sources and data (what must never be deleted)."""
    files = {
        ".git/HEAD": b"ref: refs/heads/main\n",
        "src/model.py": b"print('mine')\n",
        "data/survey.csv": b"a,b\n1,2\n",
        "notes.md": b"# notes\n",
        "cache-like-abcdef0123456789abcd": b"not a cache entry\n",
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    old = time.time() - 90 * 86400  # old enough for any --older-than
    for p in folder.rglob("*"):
        os.utime(p, (old, old))
    return files


def _still_there(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (folder / name).read_bytes() == data, name


# ------------------------------------------------------------------------------ cache prune
def test_prune_refuses_a_folder_that_is_not_a_sitekit_cache(tmp_path: Path) -> None:
    files = _project(tmp_path)
    res = CliRunner().invoke(
        cli, ["cache", "prune", str(tmp_path), "--older-than", "0", "--max-size", "0"]
    )
    assert res.exit_code == 2, res.output
    assert "not a sitekit cache folder" in res.output and "nothing was removed" in res.output
    _still_there(tmp_path, files)
    with pytest.raises(OutputError):
        prune(tmp_path, older_than_days=0, keep_recent_s=0)
    _still_there(tmp_path, files)


def test_prune_in_a_tagged_cache_removes_only_cache_entries(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    claim_cache(cache)
    assert (cache / CACHE_TAG).is_file()
    layer = cache / "slope-0123456789abcdef0123"
    layer.mkdir()
    (layer / "r0_c0.npy.blosc").write_bytes(b"x" * 100)
    (cache / "rasters").mkdir()
    (cache / "rasters" / "0123456789abcdef0123.tif").write_bytes(b"y" * 10)
    (cache / "my-notes.txt").write_text("mine")  # a user's file inside the cache
    (cache / "keep").mkdir()
    (cache / "keep" / "mine.txt").write_text("mine")
    old = time.time() - 90 * 86400
    for p in cache.rglob("*"):
        os.utime(p, (old, old))
    gone = prune(cache, older_than_days=1, keep_recent_s=0)
    assert {e.paths[0].name for e in gone} == {layer.name, "0123456789abcdef0123.tif"}
    assert (cache / "my-notes.txt").read_text() == "mine"
    assert (cache / "keep" / "mine.txt").read_text() == "mine"
    assert (cache / CACHE_TAG).is_file()
    assert entries(cache) == []


def test_a_run_will_not_use_a_folder_of_other_files_as_its_cache(tmp_path: Path) -> None:
    files = _project(tmp_path)
    with pytest.raises(OutputError, match="did not write"):
        LayerCache(tmp_path, small_grid((4, 4), 100.0), "k")
    _still_there(tmp_path, files)
    assert not (tmp_path / CACHE_TAG).exists()


def test_an_untagged_cache_of_an_earlier_release_is_adopted(tmp_path: Path) -> None:
    cache = tmp_path / "old-cache"
    (cache / "slope-0123456789abcdef0123").mkdir(parents=True)
    (cache / "mcp").mkdir()
    (cache / "ps_pairs-0123456789abcdef0123.gpkg").write_bytes(b"")
    LayerCache(cache, small_grid((4, 4), 100.0), "k")
    assert (cache / CACHE_TAG).is_file()


def test_a_run_that_fails_before_caching_leaves_no_cache_folder(tmp_path: Path) -> None:
    layer_cache = LayerCache(tmp_path / "cache", small_grid((4, 4), 100.0), "k")
    assert not (tmp_path / "cache").exists()
    (tmp_path / "cache" / "slope-0123456789abcdef0123").mkdir(parents=True)  # a run wrote
    layer_cache.commit()
    assert (tmp_path / "cache" / CACHE_TAG).is_file()  # tagged when the run commits


# ------------------------------------------------------------------------------ --out --force
def _results(folder: Path, marked: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.csv").write_text("a\n1\n")
    if marked:
        mark_output(folder)


def test_force_refuses_a_folder_sitekit_did_not_write(tmp_path: Path) -> None:
    files = _project(tmp_path / "proj")
    with (
        pytest.raises(OutputError, match="did not write"),
        staged_output(tmp_path / "proj", force=True),
    ):
        pass
    _still_there(tmp_path / "proj", files)
    assert [p.name for p in tmp_path.iterdir()] == ["proj"]  # no staging folder left


@pytest.mark.parametrize("where", ["cwd", "ancestor"])
def test_force_never_replaces_the_working_folder_or_its_ancestors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    work = tmp_path / "home" / "me" / "project"
    work.mkdir(parents=True)
    mark_output(tmp_path / "home")  # even a folder with the marker (--out ~ was one)
    mark_output(work)
    monkeypatch.chdir(work)
    target = Path(".") if where == "cwd" else tmp_path / "home"
    with pytest.raises(OutputError, match="working in"):
        check_replaceable(target, True)
    assert work.is_dir() and (tmp_path / "home" / OUTPUT_MARKER).is_file()


def test_force_never_replaces_a_folder_holding_the_catalogue(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _results(data)  # marked, yet it holds the catalogue
    (data / "catalog.yaml").write_text("name: x\n")
    with pytest.raises(OutputError, match="holds an input"):
        check_replaceable(data, True, (data / "catalog.yaml",))
    assert (data / "catalog.yaml").is_file()


def test_force_replaces_sitekit_folders_empty_ones_and_legacy_runs(tmp_path: Path) -> None:
    ours = tmp_path / "ours"
    _results(ours)
    empty = tmp_path / "empty"
    empty.mkdir()
    legacy = tmp_path / "legacy"
    _results(legacy, marked=False)
    (legacy / "rasters").mkdir()
    (legacy / "run.json").write_text(json.dumps({"versions": {"sitekit": "0.9.0"}}))
    assert made_by_sitekit(legacy) and not made_by_sitekit(tmp_path)
    for out in (ours, empty, legacy):
        with staged_output(out, force=True) as stage:
            (stage / "new.csv").write_text("b\n")
        assert (out / "new.csv").is_file() and (out / OUTPUT_MARKER).is_file()
        assert not (out / "summary.csv").exists()
    (legacy / OUTPUT_MARKER).unlink()  # an earlier release's folder again, plus a user's file
    (legacy / "run.json").write_text(json.dumps({"versions": {"sitekit": "0.9.0"}}))
    assert made_by_sitekit(legacy)
    (legacy / "thesis.docx").write_text("mine")  # not something a run writes
    assert not made_by_sitekit(legacy)


def test_cli_force_on_the_catalogue_folder_deletes_nothing(tiny_catalog: Path) -> None:
    before = sorted(p.name for p in tiny_catalog.parent.iterdir())
    res = CliRunner().invoke(
        cli,
        ["run", str(Path(__file__).parent / "badinput" / "recipes" / "tiny_wind.yaml"),
         "--catalog", str(tiny_catalog), "--out", str(tiny_catalog.parent), "--force",
         "--no-cache"],
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "holds an input" in res.output
    assert sorted(p.name for p in tiny_catalog.parent.iterdir()) == before


# ------------------------------------------------------------------------------ later steps
def test_a_failing_later_step_leaves_the_previous_results_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _results(out)
    (out / "hosting").mkdir()
    (out / "hosting" / "hosting.csv").write_text("old\n")

    def hosting_fails(stage: Path) -> None:
        (stage / "hosting").mkdir()
        (stage / "hosting" / "hosting.csv").write_text("half")
        raise RuntimeError("killed during hosting")

    with (
        pytest.raises(RuntimeError),
        staged_output(out, force=True, post=hosting_fails) as stage,
    ):
        (stage / "summary.csv").write_text("new\n")
    assert (out / "summary.csv").read_text() == "a\n1\n"
    assert (out / "hosting" / "hosting.csv").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

    def hosting_ok(stage: Path) -> None:
        (stage / "hosting").mkdir()
        (stage / "hosting" / "hosting.csv").write_text("new\n")

    with staged_output(out, force=True, post=hosting_ok) as stage:
        (stage / "summary.csv").write_text("new\n")
    assert (out / "hosting" / "hosting.csv").read_text() == "new\n"


SLEEPER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from sitekit.cli import _handle_sigterm
    from sitekit.engine.run import staged_output

    _handle_sigterm()
    with staged_output(Path(sys.argv[1]), force=True) as stage:
        (stage / "summary.csv").write_text("half")
        print("staged", flush=True)
        time.sleep(60)
    """
)


def test_sigterm_ends_a_run_like_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _results(out)
    proc = subprocess.Popen(
        [sys.executable, "-c", SLEEPER, str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "staged"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the stage was removed
    assert (out / "summary.csv").read_text() == "a\n1\n"
