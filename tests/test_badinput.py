"""The bad-input corpus (tests/badinput/cases.yaml) through the real command line.

Each case is built from the tiny synthetic catalogue by ``tests/badinput/make_corpus.py`` and run
as a ``sitekit`` command line in its own process. The checks are what a GIS analyst relies on:
the right exit status (2 = fix your input), exactly one line on stderr that names the file and the
problem, no traceback unless ``--debug``, the documented exception class, and nothing written or
changed anywhere (no half-made ``--out`` folder, no staging litter, no file a ``!!python`` tag
tried to create).

Processes: importing sitekit costs 3–5 s per interpreter, so the command lines run in forked
children of one pre-imported interpreter (``tests/badinput/cli_server.py``): real processes with
real exit statuses and stderr. :func:`test_forked_cli_matches_a_fresh_interpreter` checks that a
fresh ``python -c "from sitekit.cli import main; main()"`` gives the same status and stderr.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
BADINPUT = HERE / "badinput"
REPO = HERE.parent


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


make_corpus = _load("badinput_make_corpus", BADINPUT / "make_corpus.py")
MANIFEST = make_corpus.load_manifest()
CASES = MANIFEST["cases"]
_WARNING = re.compile(r"^(?:.+:\d+: SitekitWarning: |sitekit: warning: )(?P<msg>.*)$")


class CliServer:
    """Client of ``cli_server.py``: one pre-imported interpreter forking a child per command."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(BADINPUT / "cli_server.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        ready = self.proc.stdout.readline()
        if json.loads(ready or "{}").get("ready") is not True:
            raise RuntimeError(f"cli_server did not start: {ready!r}")

    def run(self, args: list[str], cwd: Path, io_dir: Path, timeout: float = 240.0) -> dict:
        io_dir.mkdir(parents=True, exist_ok=True)
        req = {
            "args": args,
            "cwd": str(cwd),
            "stdout": str(io_dir / "stdout"),
            "stderr": str(io_dir / "stderr"),
            "exc_log": str(io_dir / "exceptions"),
            "timeout": timeout,
        }
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"cli_server exited (status {self.proc.poll()})")
        reply = json.loads(line)
        exc = io_dir / "exceptions"
        log = exc.read_text().split() if exc.exists() else []
        return {
            "rc": reply["rc"],
            "stdout": (io_dir / "stdout").read_text(encoding="utf-8", errors="replace"),
            "stderr": (io_dir / "stderr").read_text(encoding="utf-8", errors="replace"),
            "exceptions": [x for x in log if x != "<cluster>"],
            "cluster": "<cluster>" in log,
        }

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def cli_server():
    server = CliServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def corpus_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus.write_base(tmp_path_factory.mktemp("badinput") / "base")


def _args(case: dict, case_dir: Path, scratch: Path) -> list[str]:
    args = list(MANIFEST["presets"][case["cmd"]]) if "cmd" in case else list(case["args"])
    args += case.get("extra", [])
    return [a.format(case=case_dir, tmp=scratch) for a in args]


def _snapshot(*roots: Path) -> dict[str, tuple]:
    """Every file and folder below ``roots`` (hidden ones included) with size and mtime."""
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = p.lstat()
                out[str(p)] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    return out


def _split_warnings(lines: list[str]) -> tuple[list[str], list[str]]:
    """(SitekitWarning messages, other lines) of stderr; a warning's source line is dropped."""
    warnings_, other, skip_source = [], [], False
    for line in lines:
        m = _WARNING.match(line)
        if m:
            warnings_.append(m["msg"])
            skip_source = True
        elif skip_source and line.startswith((" ", "\t")):
            skip_source = False
        else:
            other.append(line)
            skip_source = False
    return warnings_, other


def _params() -> list:
    out = []
    for case in CASES:
        marks = []
        if case.get("xfail"):
            marks.append(pytest.mark.xfail(reason=case["xfail"], strict=True))
        out.append(pytest.param(case, id=case["id"], marks=marks))
    return out


@pytest.mark.parametrize("case", _params())
def test_bad_input(case: dict[str, Any], corpus_base: Path, cli_server: CliServer,
                   tmp_path: Path) -> None:  # fmt: skip
    case_dir = make_corpus.build_case(case, tmp_path / "case", corpus_base)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    before = _snapshot(case_dir, scratch)
    res = cli_server.run(_args(case, case_dir, scratch), cwd=scratch, io_dir=tmp_path / "io")
    shown = (
        f"exit {res['rc']}\n--- stderr\n{res['stderr']}--- stdout (tail)\n{res['stdout'][-800:]}"
    )

    assert res["rc"] == case.get("exit", 2), shown
    lines = [ln for ln in res["stderr"].splitlines() if ln.strip()]
    if case.get("debug"):
        assert "Traceback (most recent call last)" in res["stderr"], shown
        assert f"sitekit.errors.{case['error']}:" in res["stderr"], shown
        lines = [ln for ln in lines if ln.startswith("sitekit: ")]
    else:
        assert "Traceback" not in res["stderr"], shown
    warned, lines = _split_warnings(lines)
    if case.get("warning"):
        assert warned and all(case["warning"] in w for w in warned), shown
    else:
        assert not warned, shown
    if case.get("exit", 2) == 0:
        assert lines == [], shown
    elif case.get("click_usage"):  # click's own option check: "Usage: …", "Try …", "Error: …"
        assert lines[0].startswith("Usage: sitekit ") and lines[-1].startswith("Error: "), shown
        for fragment in case["match"]:
            assert fragment in lines[-1], f"{fragment!r} missing\n{shown}"
        # (click exits after its except block, so the class is not observable here)
    else:
        assert len(lines) == 1, f"want exactly one stderr line\n{shown}"
        line = lines[0]
        assert line.startswith("sitekit: error: "), shown
        for fragment in case["match"]:
            assert fragment in line, f"{fragment!r} missing\n{shown}"
        assert res["exceptions"][:1] == [case["error"]], f"{res['exceptions']}\n{shown}"
    # input errors surface before any compute (a Dask cluster takes 10–20 s to start)
    assert res["cluster"] == bool(case.get("cluster")), shown
    # nothing created, removed or touched: inputs, --out, staging folders, PWNED files …
    assert _snapshot(case_dir, scratch) == before, shown


def test_corpus_is_complete() -> None:
    """≥ 30 cases, each documented, with one command line and an expected error."""
    assert len(CASES) >= 30
    for case in CASES:
        assert case.get("about"), case["id"]
        assert ("cmd" in case) != ("args" in case), case["id"]
        if case.get("exit", 2) != 0:
            assert case.get("error") and case.get("match"), case["id"]


def test_forked_cli_matches_a_fresh_interpreter(corpus_base: Path, cli_server: CliServer,
                                                tmp_path: Path) -> None:  # fmt: skip
    case = next(c for c in CASES if c["id"] == "catalog_unknown_key")
    case_dir = make_corpus.build_case(case, tmp_path / "case", corpus_base)
    args = _args(case, case_dir, tmp_path)
    forked = cli_server.run(args, cwd=tmp_path, io_dir=tmp_path / "io")
    fresh = subprocess.run(
        [sys.executable, "-c", "from sitekit.cli import main; main()", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert (fresh.returncode, fresh.stderr) == (forked["rc"], forked["stderr"])
    assert fresh.returncode == 2 and "unknown key 'unit'" in fresh.stderr
