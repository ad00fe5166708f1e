"""Honest tags: which outputs rest on modelled or illustrative inputs, said in every file.

A run's provenance (``run.json``) records which inputs are modelled (demo terrain, modelled solar
and wind) and which are illustrative (no-build zones). Everything computed from them inherits
that: a suitability score on demo terrain is a modelled score. These helpers turn the provenance
into the tags that go into GeoTIFF metadata, GeoPackage layer descriptions, table notes, the map
and the report, and prepare rasters for their files (exclusion reasons with a nodata outside the
study area and their flag meanings).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: UInt32 nodata of the exclusion-reasons files: outside the study area (all 32 bits set)
REASONS_NODATA = 0xFFFFFFFF
#: byte nodata of the eligibility files (0 = not eligible, 1 = eligible)
ELIGIBLE_NODATA = 255

_TERRAIN = ("elevation", "slope", "aspect", "hillshade")
#: how the bases' hydro generation is modelled (no measured plant output is used)
HYDRO_MODELLED = (
    "hydro generation (installed MW × modelled monthly shares of its regulation class, "
    "pipelines/bases.yaml)"
)


def modelled_sources(provenance: Mapping[str, Any] | None) -> dict[str, str]:
    """{'terrain'|'solar'|'wind': description} of the run's modelled inputs (measured ones left
    out)."""
    out: dict[str, str] = {}
    for k, v in ((provenance or {}).get("modelled") or {}).items():
        text = str(v)
        if text.startswith(("real", "measured")):
            continue
        if k == "terrain" and text.startswith("demo terrain"):
            out[k] = "demo terrain (modelled relief)"
        else:
            detail = text.removeprefix("modelled").strip()
            out[str(k)] = f"{k} resource: modelled {detail}".strip()
    return out


def illustrative_inputs(provenance: Mapping[str, Any] | None) -> dict[str, str]:
    """{input id: English name} of the catalogue inputs flagged ``illustrative``."""
    inputs = (provenance or {}).get("inputs") or {}
    return {
        k: str(v.get("name_en") or k)
        for k, v in inputs.items()
        if isinstance(v, Mapping) and v.get("illustrative")
    }


def _constraint_codes(provenance: Mapping[str, Any] | None) -> set[str]:
    return {str(row[1]) for row in (provenance or {}).get("exclusion_legend") or []}


def depends_on(key: str, provenance: Mapping[str, Any] | None) -> tuple[list[str], list[str]]:
    """(modelled sources, illustrative inputs) an output named ``key`` is computed from.

    Raster keys (``pv_score``, ``wind_cf``, ``exclusion_reasons`` …) and GeoPackage/table layer
    names (``pv_sites``, ``ps_pairs`` …) are both understood; an unknown key is taken to depend on
    everything modelled and on the illustrative constraints (a conservative tag is better than a
    missing one)."""
    mod = modelled_sources(provenance)
    ill = illustrative_inputs(provenance)
    constraint_ill = [ill[c] for c in sorted(_constraint_codes(provenance)) if c in ill]
    terrain = [mod["terrain"]] if "terrain" in mod else []
    tech = key.split("_", 1)[0]
    resource = {"pv": ["solar"], "wind": ["wind"], "ps": [], "pumped": []}.get(tech)
    if key in _TERRAIN:
        return terrain, []
    if key == "pv_yield":
        return [mod[k] for k in ("solar", "terrain") if k in mod], []
    if key in ("wind_speed", "wind_cf"):
        return [mod[k] for k in ("wind", "terrain") if k in mod], []
    if key.startswith("existing_") or key in (
        "grid_distance",
        "grid_points",
        "grid_lines",
        "prefectures",
        "counties",
    ):
        return [], []
    if key.startswith("constraint_"):
        cid = key.removeprefix("constraint_")
        return [], [ill[cid]] if cid in ill else []
    if key.endswith("connection_distance"):  # the run's, or a technology's own
        return terrain, constraint_ill
    if key == "route_profile":  # elevation and slope along the line (CSV and PNG)
        return terrain, []
    if key == "route_crossings":  # the line against the constraint polygons only
        return [], constraint_ill
    if key == "hydro_profiles":  # GEM plants × the recipe's monthly shares per regulation class
        return [HYDRO_MODELLED], []
    if key.startswith(("bases", "hydro_wind_solar_bases")):  # sites + modelled hydro shapes
        return [*mod.values(), HYDRO_MODELLED], constraint_ill
    if resource is not None:  # pv_*, wind_*, ps_*: resource + terrain + constraints
        return [mod[k] for k in (*resource, "terrain") if k in mod], constraint_ill
    return list(mod.values()), constraint_ill  # exclusion_reasons, summary and the rest


def status(key: str, provenance: Mapping[str, Any] | None) -> str:
    """One line for people: ``modelled — derived from …; illustrative inputs: …`` or
    ``derived from catalogue data (none flagged modelled or illustrative)``."""
    return _status(*depends_on(key, provenance))


def _status(mod: list[str], ill: list[str]) -> str:
    parts = []
    if mod:
        parts.append("MODELLED from " + "; ".join(mod))
    if ill:
        parts.append("ILLUSTRATIVE inputs: " + "; ".join(ill))
    if not parts:
        return "from catalogue data (none flagged modelled or illustrative)"
    return " | ".join(parts) + " — a screening result, not a measurement"


def file_tags(key: str, provenance: Mapping[str, Any] | None) -> dict[str, str]:
    """GeoTIFF / GeoPackage tags for an output: ``modelled`` and ``illustrative`` ("yes"/"no")
    and ``data_status`` (:func:`status`)."""
    mod, ill = depends_on(key, provenance)
    return {
        "modelled": "yes" if mod else "no",
        "illustrative": "yes" if ill else "no",
        "data_status": _status(mod, ill),
    }


def banner(key: str, provenance: Mapping[str, Any] | None) -> str:
    """The data-status line a Markdown page opens with (after its heading):
    ``> **数据状态 / Data status:** MODELLED from …`` (empty without a provenance)."""
    if provenance is None:
        return ""
    return f"> **数据状态 / Data status:** {status(key, provenance)}"


def png_text(key: str, provenance: Mapping[str, Any] | None) -> dict[str, str]:
    """PNG text chunks (matplotlib ``savefig(metadata=...)``) carrying :func:`file_tags`, the
    status also as the standard ``Description`` key; empty without a provenance."""
    if provenance is None:
        return {}
    t = file_tags(key, provenance)
    return {"Description": t["data_status"], **t}


def honest_method(key: str, method: str | None, recipes: list[Any]) -> str | None:
    """The ``method`` tag made to agree with the values: the wind capacity factor is net of the
    recipe's ``wind.losses_pct`` (the kernel's tag says "no wake/availability losses")."""
    if key != "wind_cf" or not method:
        return method
    losses = [
        float(getattr(r.wind, "losses_pct", 0.0))
        for r in recipes
        if getattr(r, "technology", None) == "wind" and getattr(r, "wind", None) is not None
    ]
    if not losses or not losses[0]:
        return method
    return method.replace(
        "no wake/availability losses",
        f"then net of {losses[0]:g} % losses (wake, availability, electrical: recipe "
        "wind.losses_pct)",
    )


def legend_for(key: str, provenance: Mapping[str, Any] | None) -> list[Any]:
    """The exclusion legend ``[(bit, code, name_en, name_zh)]`` of the technology an
    exclusion-reasons output belongs to (``wind_exclusion_reasons`` → wind's; the headline
    ``exclusion_reasons`` → the first recipe's)."""
    prov = provenance or {}
    per_tech = prov.get("exclusion_legends") or {}
    tech = key.removesuffix("exclusion_reasons").rstrip("_")
    return list(per_tech.get(tech) or prov.get("exclusion_legend") or [])


def for_file(
    key: str,
    layer: Any,
    provenance: Mapping[str, Any] | None,
    template: Mapping[str, Any] | None = None,
    inside: Any = None,
    recipes: list[Any] | None = None,
) -> Any:
    """The DataArray as it should be written to ``rasters/<key>.tif``.

    Adds :func:`file_tags`; makes ``method`` honest (:func:`honest_method`); for exclusion
    reasons sets :data:`REASONS_NODATA` outside the study area (``inside``: a boolean or
    fraction DataArray/dask array, > 0 inside) and records ``flag_masks``/``flag_meanings`` (from
    ``template`` or the provenance legend) as file metadata; eligibility gets
    :data:`ELIGIBLE_NODATA` outside. The map keeps the untouched array.
    """
    import dask.array as da
    import numpy as np

    out = layer.copy(deep=False)  # the map keeps the untouched array and attrs
    attrs = dict(layer.attrs)
    attrs.update(file_tags(key, provenance))
    if "method" in attrs:
        attrs["method"] = honest_method(key, attrs["method"], recipes or [])
    src = dict(template or {})
    reasons = key.endswith("exclusion_reasons")
    eligible = key.endswith("_eligible")
    if (reasons or eligible) and inside is not None:
        nodata = REASONS_NODATA if reasons else ELIGIBLE_NODATA
        mask = (inside.data if hasattr(inside, "dims") else inside) > 0
        data = layer.data
        dtype = np.uint32 if reasons else np.uint8
        out = layer.copy(data=da.where(mask, data.astype(dtype), dtype(nodata)))
        attrs["_FillValue"] = nodata
        attrs["nodata_meaning"] = "outside the study area"
    if reasons:
        legend = legend_for(key, provenance)
        masks = src.get("flag_masks") or [1 << int(b[0]) for b in legend]
        meanings = src.get("flag_meanings") or " ".join(str(b[1]) for b in legend)
        attrs["flag_masks"] = ",".join(str(int(m)) for m in masks)
        attrs["flag_meanings"] = meanings if isinstance(meanings, str) else " ".join(meanings)
        attrs["flag_names"] = "; ".join(f"{b[1]}={b[3]} / {b[2]}" for b in legend)
        attrs["value_0"] = "allowed (no constraint excludes the pixel)"
    if eligible:
        attrs["flag_values"] = "0,1"
        attrs["flag_meanings"] = "not_eligible eligible"
        attrs["_colormap"] = "0:#d9d9d9,1:#1a9850,255:#ffffff00"
    out.attrs = attrs
    return out
