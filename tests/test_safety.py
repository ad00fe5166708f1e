"""Safety: data files never run code, never reach outside their folder, never inject markup, and a
run never touches the network.

* YAML (catalogues, recipes, map styles) is loaded with ``SafeLoader``: every ``!!python`` tag is
  refused with the file and line, and its side effect never happens.
* A catalogue path may not leave the catalogue's folder (``..``, absolute, or a symlink pointing
  out) unless that folder is given explicitly (``--data-root``).
* Hostile names (``<img src=x onerror=alert(1)>``, ``</script>…``) in sites, zones, connection
  points, recipes and provenance reach ``map.html`` and ``report.html`` only escaped: the pages hold
  exactly as many ``<script``/``<img``/``onerror=`` … as the same pages with harmless names,
  including inside the JSON that the map's JavaScript turns into popups. A KML route named
  ``<script>`` is escaped in every file ``sitekit route`` writes.
* A whole ``sitekit run`` (PV + wind, map and report) succeeds with sockets blocked: a
  ``sitecustomize`` on ``PYTHONPATH`` (so the spawned Dask workers load it too) makes every
  non-loopback connect / DNS lookup / UDP send raise and logs it; the test asserts the hook ran in
  the main process and a worker, and that nothing non-loopback was attempted. (C libraries that
  open their own sockets, e.g. GDAL's curl or PROJ's network grids, are outside a Python hook;
  sitekit opens no ``/vsicurl`` paths and leaves ``PROJ_NETWORK`` off.)
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TINY_PV, add_ghi_layer, write_tiny_catalog

from sitekit.errors import LayerError, RecipeError
from sitekit.io.catalog import Catalog
from sitekit.outputs.render import render_map
from sitekit.outputs.report import render_report
from sitekit.outputs.style import MapStyle, load_style
from sitekit.specs.recipe import load_ps_recipe, load_recipe
from sitekit.testing import synthetic_results

REPO = Path(__file__).resolve().parents[1]
BADINPUT = REPO / "tests" / "badinput"
TINY_WIND = BADINPUT / "recipes" / "tiny_wind.yaml"
TINY_PS = BADINPUT / "recipes" / "tiny_ps.yaml"


# ------------------------------------------------------------------------------ YAML tags
TAGS = [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/new:subprocess.Popen [['touch', '{marker}']]",
    "!!python/name:os.system",
    "!!python/object:os._wrap_close {{}}",
]


def _with_tag(text: str, key: str, tag: str) -> str:
    lines = text.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith(f"{key}:"))
    lines[i] = f"{key}: {tag}"
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("tag", TAGS, ids=["apply", "new", "name", "object"])
@pytest.mark.parametrize("kind", ["catalog", "recipe", "ps_recipe", "map_style"])
def test_python_tags_are_refused_and_never_run(tmp_path: Path, kind: str, tag: str) -> None:
    marker = tmp_path / "PWNED"
    tag = tag.format(marker=marker)
    if kind == "catalog":
        path = write_tiny_catalog(tmp_path / "tiny")
        path.write_text(_with_tag(path.read_text(encoding="utf-8"), "name", tag), encoding="utf-8")
        load = Catalog
    elif kind == "map_style":
        path = tmp_path / "style.yaml"
        path.write_text((REPO / "maps" / "default.yaml").read_text(encoding="utf-8")
                        + f"\nbogus: {tag}\n", encoding="utf-8")  # fmt: skip
        load = load_style
    else:
        src = TINY_WIND if kind == "recipe" else TINY_PS
        path = tmp_path / src.name
        path.write_text(_with_tag(src.read_text(encoding="utf-8"), "name_en", tag), "utf-8")
        load = load_recipe if kind == "recipe" else load_ps_recipe
    with pytest.raises(RecipeError, match=rf"{re.escape(path.name)}:\d+: .*remove the tag"):
        load(path)
    assert not marker.exists()


# ------------------------------------------------------------------------------ paths
def _point_dem_at(catalog: Path, new_path: str) -> None:
    text = catalog.read_text(encoding="utf-8").replace("path: dem.tif", f"path: {new_path}")
    catalog.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_catalogue_paths_stay_in_their_folder(tmp_path: Path, how: str) -> None:
    catalog = write_tiny_catalog(tmp_path / "tiny")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (catalog.parent / "dem.tif").rename(elsewhere / "dem.tif")
    if how == "dotdot":
        _point_dem_at(catalog, "../elsewhere/dem.tif")
    elif how == "absolute":
        _point_dem_at(catalog, str(elsewhere / "dem.tif"))
    else:  # a link inside the folder whose target is outside it
        (catalog.parent / "dem.tif").symlink_to(elsewhere / "dem.tif")
    cat = Catalog(catalog)
    with pytest.raises(LayerError, match="leaves the catalogue folder.*--data-root"):
        cat.raster("dem", cat.grid(5000))
    # given explicitly (sitekit … --data-root elsewhere), the same path is fine
    cat = Catalog(catalog, extra_roots=(elsewhere,))
    assert cat.raster("dem", cat.grid(5000)).attrs["units"] == "m"


# ------------------------------------------------------------------------------ escaping
HOSTILE = {
    "img": "<img src=x onerror=alert(1)>",
    "script": "</script><script>alert(3)</script>",
    "svg": '"><svg onload=alert(4)>',
}
#: real elements and event-handler attributes (escaped text holds no "<")
DANGER = re.compile(r"<(?:script|img|svg|iframe)\b|<[^<>]*\bon(?:error|load)\s*=", re.IGNORECASE)


def _unjson(text: str) -> str:
    """Undo the \\uXXXX escaping JSON embedded in the page uses, as the browser's JS would."""
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)


def _named(names: dict[str, str]) -> dict:
    """synthetic_results with every user-visible string field set from ``names``."""
    r = synthetic_results(shape=(60, 80))
    v = r["vectors"]
    pv = v["pv_sites"]
    pv["site_id"] = [names["img"], "PV-2", "PV-3"]
    pv["county"] = names["script"]
    pv["prefecture"] = names["img"]
    pv["grid_point_name"] = names["svg"]
    v["counties"]["name_zh"] = [names["script"], "二县", "三县", names["svg"]]
    v["prefectures"]["name_en"] = [names["img"], "Yi"]
    v["grid_points"]["name"] = [names["svg"], "Station B"]
    v["ps_pairs"]["pair_id"] = names["script"]
    r["summary"]["prefecture"] = [names["img"], names["img"], "Yi", "Yi"]
    r["provenance"]["title"] = names["script"]
    r["provenance"]["attribution"] = names["svg"]
    r["recipes"] = {names["img"]: f"name_en: {names['script']}\n"}
    return r


def _pages(r: dict, folder: Path) -> dict[str, str]:
    folder.mkdir()
    render_map(folder / "map.html", grid=r["grid"], rasters=r["rasters"], vectors=r["vectors"],
               style=MapStyle(), provenance=r["provenance"])  # fmt: skip
    sites = {"pv": r["vectors"]["pv_sites"], "wind": r["vectors"]["wind_sites"]}
    render_report(folder / "report.html", summary=r["summary"], sites=sites,
                  ps_pairs=r["vectors"]["ps_pairs"], recipes=r["recipes"],
                  provenance=r["provenance"])  # fmt: skip
    return {p.name: _unjson(p.read_text(encoding="utf-8")) for p in folder.iterdir()}


def test_hostile_names_are_escaped_in_map_and_report(tmp_path: Path) -> None:
    benign = _pages(_named({k: f"harmless {k}" for k in HOSTILE}), tmp_path / "benign")
    hostile = _pages(_named(HOSTILE), tmp_path / "hostile")
    for name, page in hostile.items():
        # the names reached the page, escaped …
        assert "&lt;img src=x onerror=alert(1)&gt;" in page, name
        assert "&lt;/script&gt;&lt;script&gt;alert(3)" in page, name
        # … and added no element or handler: same markup as with harmless names
        assert DANGER.findall(page) == DANGER.findall(benign[name]), name


def _kml_route(path: Path) -> None:
    path.write_text(textwrap.dedent("""\
        <?xml version="1.0" encoding="UTF-8"?>
        <kml xmlns="http://www.opengis.net/kml/2.2"><Document>
        <name>&lt;img src=x onerror=alert(2)&gt;</name>
        <Placemark><name>&lt;script&gt;alert(1)&lt;/script&gt;</name>
        <description>&lt;img src=x onerror=alert(2)&gt;</description>
        <LineString><coordinates>101.1,30.1,0 101.25,30.3,0 101.4,30.4,0</coordinates></LineString>
        </Placemark></Document></kml>
        """), encoding="utf-8")  # fmt: skip


def test_kml_route_with_a_script_name_is_escaped_in_every_output(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("badinput_corpus", BADINPUT / "make_corpus.py")
    corpus = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(corpus)
    folder = corpus.write_base(tmp_path / "case")
    corpus.apply(folder, {"op": "fake_run", "path": "run"})
    _kml_route(folder / "route.kml")

    from sitekit.cli import cli, register

    register()
    out = tmp_path / "route_out"
    res = CliRunner().invoke(cli, ["--quiet", "route", str(folder / "route.kml"), "--run",
                                   str(folder / "run"), "--catalog", str(folder / "catalog.yaml"),
                                   "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    texts = {p.name: _unjson(p.read_text(encoding="utf-8", errors="replace"))
             for p in out.iterdir() if p.suffix in (".html", ".md", ".csv", ".geojson")}  # fmt: skip
    assert "route_map.html" in texts and "route_summary.md" in texts
    assert any("&lt;script&gt;alert(1)" in t for t in texts.values())  # the name is shown …
    for name, text in texts.items():
        if name.endswith((".html", ".md")):  # … never as markup where markup is rendered
            assert "<script>alert(1)" not in text, name
            assert "<img src=x onerror" not in text, name


# ------------------------------------------------------------------------------ no network
SITECUSTOMIZE = '''\
"""Test hook (tests/test_safety.py): refuse and log every non-loopback network access."""
import ipaddress
import os
import socket

_LOG = os.environ["SITEKIT_NET_LOG"]


def _log(kind, what):
    with open(_LOG, "a", encoding="utf-8") as f:
        f.write(f"{kind} {os.getpid()} {what}\\n")


def _loopback(host):
    if isinstance(host, bytes):
        host = host.decode()
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _check(kind, sock_family, address):
    if sock_family == getattr(socket, "AF_UNIX", None) or not isinstance(address, tuple):
        return
    if not _loopback(address[0]):
        _log("BLOCKED", f"{kind} {address!r}")
        raise OSError(f"network access blocked by the sitekit test hook: {kind} {address!r}")


_connect, _connect_ex, _sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto
_bind, _getaddrinfo, _create = socket.socket.bind, socket.getaddrinfo, socket.create_connection


def connect(self, address):
    _check("connect", self.family, address)
    return _connect(self, address)


def connect_ex(self, address):
    _check("connect_ex", self.family, address)
    return _connect_ex(self, address)


def sendto(self, data, *args):
    _check("sendto", self.family, args[-1])
    return _sendto(self, data, *args)


def bind(self, address):
    if isinstance(address, tuple) and not _loopback(address[0]):
        _log("BLOCKED", f"bind {address!r} (listening beyond loopback)")
    return _bind(self, address)


def getaddrinfo(host, *args, **kwargs):
    if host is not None and not _loopback(host):
        _log("BLOCKED", f"getaddrinfo {host!r}")
        raise socket.gaierror(f"name lookup blocked by the sitekit test hook: {host!r}")
    return _getaddrinfo(host, *args, **kwargs)


def create_connection(address, *args, **kwargs):
    _check("create_connection", socket.AF_INET, address)
    return _create(address, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = connect, connect_ex, sendto
socket.socket.bind, socket.getaddrinfo, socket.create_connection = bind, getaddrinfo, create_connection
_log("LOADED", "")
'''


@pytest.mark.parametrize("mode", ["--no-processes", "--processes"])
def test_a_run_makes_no_network_access(tmp_path: Path, mode: str) -> None:
    catalog = add_ghi_layer(write_tiny_catalog(tmp_path / "tiny"))
    (tmp_path / "tiny_pv.yaml").write_text(TINY_PV, encoding="utf-8")
    hook = tmp_path / "nethook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    log = tmp_path / "net.log"
    env = dict(os.environ, SITEKIT_NET_LOG=str(log),
               PYTHONPATH=os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])]))  # fmt: skip
    # the hook works: a connection to a documentation address (TEST-NET-1) is refused and logged
    probe = subprocess.run(
        [sys.executable, "-c", "import socket; socket.create_connection(('192.0.2.1', 80), 1)"],
        env=dict(env, SITEKIT_NET_LOG=str(tmp_path / "probe.log")), capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert probe.returncode != 0 and "blocked by the sitekit test hook" in probe.stderr
    assert "BLOCKED" in (tmp_path / "probe.log").read_text(encoding="utf-8")

    out = tmp_path / "out"
    res = subprocess.run(
        [sys.executable, "-c", "from sitekit.cli import main; main()", "--quiet", "run",
         str(tmp_path / "tiny_pv.yaml"), str(TINY_WIND), "--catalog", str(catalog),
         "--resolution", "1000", "--workers", "1", "--threads-per-worker", "1", "--out", str(out),
         mode],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    entries = log.read_text(encoding="utf-8").splitlines()
    assert res.returncode == 0, res.stderr
    for name in ("map.html", "report.html", "sitekit.gpkg", "pv_sites.csv", "wind_sites.csv"):
        assert (out / name).is_file(), name
    loaded = {e.split()[1] for e in entries if e.startswith("LOADED")}
    # the CLI process was hooked, and with worker processes at least one Dask worker too
    assert len(loaded) >= (2 if mode == "--processes" else 1), entries
    assert [e for e in entries if e.startswith("BLOCKED")] == []
