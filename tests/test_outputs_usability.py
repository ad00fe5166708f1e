"""What GIS staff and analysts see (issue 26): logs that behave, bilingual attributes, styled
rasters, honest tags, standard files."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sitekit import logs
from sitekit.cli import cli, register

register()


# -- logs and progress -------------------------------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_progress_into_a_file_is_a_line_per_interval_not_a_redraw_per_poll() -> None:
    """60 s of 0.2 s polls (300 updates) into a non-terminal give ≤ 8 lines, none with \\r."""
    clock, out = _Clock(), io.StringIO()
    bar = logs.ProgressLines("computing layers", stream=out, tty=False, clock=clock)
    for i in range(300):
        clock.t = i * 0.2
        bar.update(i, 300)
    bar.finish(300, 300)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert 6 <= len(lines) <= 8, lines
    assert lines[-1].startswith("sitekit: computing layers: done (300/300 tasks")


def test_progress_on_a_terminal_redraws_one_bar_in_place() -> None:
    clock, out = _Clock(), io.StringIO()
    bar = logs.ProgressLines("computing layers", stream=out, tty=True, clock=clock)
    for i in range(50):
        clock.t = i * 0.2
        bar.update(i, 50)
    bar.finish(50, 50)
    text = out.getvalue()
    assert text.count("\r") >= 25 and text.count("\n") == 1
    assert "100%" in text.splitlines()[-1]


def test_progress_is_silent_when_quiet() -> None:
    logs.configure(quiet=True, stream=io.StringIO())
    try:
        assert logs.quiet()
        logs.progress(["not-a-future"], "x")  # returns at once: never touches the scheduler
    finally:
        logs.configure()


def test_log_messages_go_through_logging_to_stderr_with_levels() -> None:
    err = io.StringIO()
    logs.configure(verbose=0, stream=err)
    logs.LOGGER.info("hello")
    logs.LOGGER.debug("hidden")
    logs.LOGGER.warning("careful")
    assert err.getvalue().splitlines() == ["sitekit: hello", "sitekit: warning: careful"]
    err2 = io.StringIO()
    logs.configure(verbose=1, stream=err2)
    logging.getLogger("sitekit.run").debug("shown")
    assert "sitekit: debug: [sitekit.run] shown" in err2.getvalue()
    logs.configure()


@pytest.mark.parametrize(
    ("args", "quiet", "verbose"),
    [
        (["-q", "layers", "check"], True, 0),
        (["layers", "check", "-q"], True, 0),
        (["layers", "check", "--quiet"], True, 0),
        (["-v", "layers", "check"], False, 1),
        (["layers", "check", "-v"], False, 1),
        (["layers", "check"], False, 0),
    ],
)
def test_quiet_and_verbose_work_before_and_after_the_verb(
    args: list[str], quiet: bool, verbose: int, tiny_catalog: Path
) -> None:
    at = args.index("check") + 1
    argv = [*args[:at], str(tiny_catalog), "--format", "json", *args[at:]]
    res = CliRunner().invoke(cli, argv)
    assert res.exit_code == 0, res.output
    level = logs.LOGGER.level
    assert level == logs.verbosity_level(verbose, quiet)
    logs.configure()


def test_every_verb_accepts_quiet_and_verbose() -> None:
    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield path, cmd

    verbs = list(walk(cli, []))
    assert len(verbs) >= 6
    for path, cmd in verbs:
        opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
        assert {"-q", "--quiet", "-v", "--verbose"} <= opts, path


def test_layers_check_formats(tiny_catalog: Path) -> None:
    res = CliRunner().invoke(cli, ["layers", "check", str(tiny_catalog), "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["layer"] for r in rows] == ["area", "dem", "towns"]
    assert "3 layers ok" in res.stderr and "3 layers ok" not in res.stdout
    res = CliRunner().invoke(cli, ["layers", "check", str(tiny_catalog), "--format", "csv"])
    lines = res.stdout.splitlines()
    assert lines[0].startswith("layer,name,kind,crs") and len(lines) == 4


def _demo_to_files(out: Path, *extra: str) -> tuple[str, str]:
    so, se = out.parent / "stdout.txt", out.parent / "stderr.txt"
    with so.open("w") as fo, se.open("w") as fe:
        rc = subprocess.call(
            [sys.executable, "-c", "from sitekit.cli import main; main()", "demo",
             "--resolution", "5000", "--out", str(out), "--no-cache", "--workers", "1", *extra],
            stdout=fo, stderr=fe,
        )  # fmt: skip
    assert rc == 0, se.read_text()
    return so.read_text(encoding="utf-8"), se.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def demo_logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    out = tmp_path_factory.mktemp("ux") / "out"
    stdout, stderr = _demo_to_files(out)
    return out, stdout, stderr


def test_demo_log_into_files_is_short_and_progress_is_on_stderr(demo_logs) -> None:
    out, stdout, stderr = demo_logs
    text = stdout + stderr
    assert "\r" not in text  # no bar redraws in a file
    progress = [ln for ln in stderr.splitlines() if "computing layers" in ln]
    assert 1 <= len(progress) < 100
    assert "computing layers" not in stdout
    assert len(text.splitlines()) < 100
    assert f"results in {out.resolve()}" in stderr
