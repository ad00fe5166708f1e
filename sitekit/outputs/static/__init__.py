"""Vendored Leaflet assets and the inliner that makes a Folium page work with no network.

Folium points ``<script src>``/``<link href>`` at CDNs. :func:`offline_assets` gives the
``(name, url)`` lists to put on the Folium objects instead; the URLs use the ``sitekit-static:``
scheme, and :func:`inline_assets` replaces each such tag with the file's content (CSS images become
``data:`` URIs). :func:`external_references` lists what a page would still fetch from the network.
Versions and licences: ``README.md`` in this folder.
"""

from __future__ import annotations

import base64
import mimetypes
import re
from functools import cache
from importlib import resources

from sitekit.errors import OutputError

SCHEME = "sitekit-static:"

#: Folium object → (js, css) vendored files replacing its CDN links.
ASSETS = {
    "map": (["leaflet.js"], ["leaflet.css"]),
    "fullscreen": (["Control.FullScreen.js"], ["Control.FullScreen.css"]),
    "measure": (["leaflet-measure.min.js"], ["leaflet-measure.css"]),
}


def offline_assets(kind: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(default_js, default_css)`` for a Folium object (``map``, ``fullscreen``, ``measure``)."""
    js, css = ASSETS[kind]
    return [(n, SCHEME + n) for n in js], [(n, SCHEME + n) for n in css]


@cache
def read_asset(name: str) -> bytes:
    """Bytes of a vendored file (``sitekit/static/<name>``)."""
    try:
        return resources.files(__name__).joinpath(name).read_bytes()
    except (FileNotFoundError, OSError):
        raise OutputError(
            f"vendored asset sitekit/static/{name} is missing; reinstall sitekit"
        ) from None


def _css_with_data_uris(css: str) -> str:
    def repl(m: re.Match[str]) -> str:
        ref = m.group(2)
        if ref.startswith(("data:", "#", "http:", "https:")):
            return m.group(0)
        name = ref.rsplit("/", 1)[-1]
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        data = base64.b64encode(read_asset(name)).decode("ascii")
        return f"url(data:{mime};base64,{data})"

    return re.sub(r"url\((['\"]?)([^'\")]+)\1\)", repl, css)


_SCRIPT = re.compile(r'<script src="' + re.escape(SCHEME) + r'([^"]+)"></script>')
_LINK = re.compile(r'<link rel="stylesheet" href="' + re.escape(SCHEME) + r'([^"]+)"\s*/?>')


def inline_assets(html: str) -> str:
    """Replace every ``sitekit-static:`` script/stylesheet tag with the vendored file's content."""

    def js(m: re.Match[str]) -> str:
        code = read_asset(m.group(1)).decode("utf-8").replace("</script", "<\\/script")
        return f"<script>/* {m.group(1)} (vendored) */\n{code}\n</script>"

    def css(m: re.Match[str]) -> str:
        return f"<style>/* {m.group(1)} (vendored) */\n{_css_with_data_uris(read_asset(m.group(1)).decode('utf-8'))}\n</style>"

    out = _LINK.sub(css, _SCRIPT.sub(js, html))
    left = re.findall(re.escape(SCHEME) + r"[^\"' )<]+", out)
    if left:
        raise OutputError(f"could not inline vendored assets {sorted(set(left))}")
    return out


_EXTERNAL = [
    re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?((?:https?:)?//[^\"'\s>]+)", re.I),
    re.compile(r"<link[^>]*\bhref\s*=\s*[\"']?((?:https?:)?//[^\"'\s>]+)", re.I),
    re.compile(
        r"<(?:img|iframe|source|embed)[^>]*\bsrc\s*=\s*[\"']?((?:https?:)?//[^\"'\s>]+)", re.I
    ),
    re.compile(r"url\(\s*[\"']?((?:https?:)?//[^\"')]+)", re.I),
    re.compile(r"@import\s+[\"']((?:https?:)?//[^\"']+)", re.I),
    re.compile(r"[\"']((?:https?:)?//[^\"']*\{z\}[^\"']*)[\"']"),  # tile URL templates
]


def external_references(html: str) -> list[str]:
    """URLs the page would load from the network (scripts, styles, images, CSS, tile templates).

    Plain hyperlinks (``<a href>``, e.g. the Leaflet attribution) and XML namespace strings in
    the vendored JavaScript are not loads and are not reported.
    """
    found: list[str] = []
    for pat in _EXTERNAL:
        found.extend(m.group(1) for m in pat.finditer(html))
    return sorted(set(found))
