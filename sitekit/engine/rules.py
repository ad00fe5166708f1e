"""What a run does with the siting rules (:mod:`sitekit.specs.rules`), and the recipe's other
constraint objects.

At run time :func:`expand` looks for a catalogue layer that ``provides`` a rule's role: found, the
rule becomes one more recipe constraint (its own reason bit, id = rule id); not found, it is
recorded as *not applied, layer missing*. :func:`measure` then adds the area each applied rule
removed, so a run can say that "eligible" means "eligible under the rules applied". Also here:
the constraint objects of ``kind: classes`` constraints, forced-inclusion zones and built plants
(:func:`class_layer`, :func:`zone_constraints`), plant lists in sitekit's columns
(:func:`standard_plants`) and the least-cost connection surface's multipliers
(:func:`cost_penalty`, :func:`forbidden_mask`, :func:`crossing_penalty`).

References
----------
The documents are cited rule by rule in ``pipelines/rules/*.yaml``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sitekit.specs.rules import Rule, load_rules


def _constraint(rule: Rule, layer_id: str) -> dict[str, Any]:
    """The recipe-constraint mapping a rule becomes once its layer is known."""
    base = {"id": rule.id, "name_zh": rule.name_zh, "name_en": rule.name_en}
    base["overridable"] = rule.overridable
    if rule.action == "exclude":
        return base | {"kind": "polygon", "layer": layer_id, "buffer_m": rule.buffer_m}
    if rule.action == "buffer":
        return base | {"kind": "setback", "layer": layer_id, "setback_m": rule.buffer_m}
    if rule.action == "threshold":
        return base | {"kind": "threshold", "layer": layer_id, "op": rule.op, "value": rule.value}
    return base | {"kind": "classes", "layer": layer_id, "exclude_classes": rule.exclude_classes}


def expand(recipe: Any, catalog: Any, derived: tuple[str, ...] = ()) -> tuple[Any, list[dict]]:
    """Turn a recipe's ``rules`` into constraints where the catalogue has their layer.

    Parameters
    ----------
    recipe : Recipe
        A loaded recipe (its ``rules`` are ids in the rule catalogue).
    catalog : Catalog
        The layer catalogue; a layer is used when its ``provides`` names the rule's role.
    derived : tuple of str
        Derived layer names a threshold rule may use directly (slope, elevation …).

    Returns
    -------
    (Recipe, list of dict)
        A copy of the recipe with one constraint per applied rule appended, and one status
        record per rule: id, names, action, citation, ``status`` (``applied``, ``layer_missing``
        or ``advisory``), the layer used, and ``unverified``.
    """
    from pydantic import TypeAdapter

    from sitekit.specs.recipe import Constraint

    adapter = TypeAdapter(Constraint)
    rules = load_rules()
    added, status = [], []
    for rid in getattr(recipe, "rules", []):
        rule = rules[rid]
        rec = {
            "id": rid,
            "name_zh": rule.name_zh,
            "name_en": rule.name_en,
            "action": rule.action,
            "layer_role": rule.layer_role,
            "overridable": rule.overridable,
            "citation": rule.cite(),
            "unverified": rule.unverified,
            "layer": None,
        }
        if rule.action == "threshold" and rule.layer_role in derived:
            layer = rule.layer_role
        else:
            found = catalog.providing(rule.layer_role)
            layer = found[0].id if found else None
        rec["layer"] = layer
        if rule.action == "advisory":
            rec["status"] = "advisory"
        elif layer is None:
            rec["status"] = "layer_missing"
        else:
            rec["status"] = "applied"
            added.append(adapter.validate_python(_constraint(rule, layer)))
        status.append(rec)
    if not added:
        return recipe, status
    return recipe.model_copy(update={"constraints": [*recipe.constraints, *added]}), status


def measure(
    status: list[dict],
    legend: list[Any],
    reasons: Any,
    study_fraction: Any,
    pixel_area_km2: float,
    forced_bits: int = 0,
    hard_bits: int = 0,
) -> dict[str, Any]:
    """Area each applied rule removed, and the eligible share with and without the rules.

    Counts pixels by their reason bits, weighted by the study-area fraction (pixel majority: a
    ``fraction``-rule constraint counts where it covers ≥ half a pixel). ``removed_km2`` is the
    area the rule excludes; ``removed_only_km2`` the part no other constraint excludes too.

    Parameters
    ----------
    status : list of dict
        From :func:`expand`; ``applied`` entries get ``removed_km2`` / ``removed_only_km2``.
    legend : list of ReasonBit
        (bit, code, …) of the technology's constraints.
    reasons, study_fraction : array (numpy or dask)
        The ``exclusion_reasons`` raster [uint32] and the study-area fraction [0–1].
    pixel_area_km2 : float
        Area of one pixel [km²].

    Returns
    -------
    dict
        ``rules`` (the status list, with areas), ``study_area_km2``, ``eligible_share`` (all
        constraints), ``eligible_share_without_rules`` (recipe constraints only) and
        ``constraints_km2`` (area each reason bit covers, rules or not).
    """
    import dask

    from sitekit.science.constraints import excluded_from_reasons

    bits = {rb[1]: int(rb[0]) for rb in legend}
    rule_ids = {s["id"] for s in status if s.get("status") == "applied"}
    rule_mask = sum(1 << bits[r] for r in rule_ids if r in bits)
    r = reasons.astype(np.uint32) if hasattr(reasons, "astype") else reasons
    sf = study_fraction
    lazy: dict[str, Any] = {"area": sf.sum()}
    for rid in rule_ids:
        if rid not in bits:
            continue
        b = np.uint32(1 << bits[rid])
        hit = (r & b) != 0
        lazy[rid] = (sf * hit).sum()
        lazy[rid + "|only"] = (sf * (hit & ((r & ~b & ~np.uint32(forced_bits)) == 0))).sum()
    for code, bit in bits.items():  # every constraint, rules or not (gross area)
        lazy["c|" + code] = (sf * ((r & np.uint32(1 << bit)) != 0)).sum()
    excl = excluded_from_reasons(r, forced_bits, hard_bits)
    without = excluded_from_reasons(r & np.uint32(0xFFFFFFFF & ~rule_mask), forced_bits, hard_bits)
    lazy["excluded"] = (sf * excl).sum()
    lazy["excluded_without_rules"] = (sf * without).sum()
    keys = list(lazy)
    values = dask.compute(*[lazy[k] for k in keys])  # one pass over the persisted rasters
    got = {k: float(v) for k, v in zip(keys, values, strict=True)}
    area = got["area"]
    out_status = []
    for s in status:
        s = dict(s)
        if s["id"] in got:
            s["removed_km2"] = round(got[s["id"]] * pixel_area_km2, 3)
            s["removed_only_km2"] = round(got[s["id"] + "|only"] * pixel_area_km2, 3)
        out_status.append(s)
    share = 1 - got["excluded"] / area if area else float("nan")
    share0 = 1 - got["excluded_without_rules"] / area if area else float("nan")
    return {
        "rules": out_status,
        "study_area_km2": round(area * pixel_area_km2, 3),
        "eligible_share": round(share, 5),
        "eligible_share_without_rules": round(share0, 5),
        "constraints_km2": {c: round(got["c|" + c] * pixel_area_km2, 3) for c in bits},
    }


# -- recipe → constraint objects (called by sitekit.engine.pipeline) --------------------------------
def class_layer(c: Any, catalog: Any, grid: Any) -> Any:
    """The raster of a recipe ``kind: classes`` constraint on ``grid``.

    The raster must be declared ``categorical: true`` in its catalogue (so it is read with
    nearest/mode resampling); a continuous raster is refused.
    """
    from sitekit.errors import LayerError

    spec = catalog.layer(c.layer)
    if not spec.categorical:
        raise LayerError(
            f"{catalog.where(spec)}: constraint '{c.id}' lists class codes, but the layer is not "
            "`categorical: true`; mark it categorical (class codes, nearest/mode resampling)"
        )
    return catalog.raster(c.layer, grid)


def zone_params(recipe: Any) -> Any:
    """What forced inclusion and plant occupancy depend on (for cache keys)."""
    zones = [z.model_dump(mode="json") for z in getattr(recipe, "forced_inclusion", [])]
    plants = getattr(recipe, "existing_plants", None)
    sites = getattr(recipe, "sites", None)
    density = sites.power_density_mw_per_km2 if sites is not None else None
    return {
        "forced": zones,
        "plants": plants.model_dump(mode="json") if plants is not None else None,
        "density": density,
    }


#: reason-bit code of the land built plants occupy
OCCUPIED = "existing_plants"


def zone_constraints(recipe: Any, catalog: Any, grid: Any) -> list:
    """Forced-inclusion zones and the footprints of built plants, as constraint objects.

    Built plants are a hard exclusion (``overridable=False``): a forced-inclusion zone does not
    put a new site on a built farm. Only plants whose status is in ``statuses`` occupy land.
    """
    from sitekit.errors import LayerError
    from sitekit.science import constraints as cons_lib

    out: list = []
    plants = getattr(recipe, "existing_plants", None)
    if plants is not None:
        gdf = catalog.vector(plants.layer, grid)
        spec = catalog.layer(plants.layer)
        gdf = standard_plants(gdf)
        if plants.status_field:
            col = "status" if plants.status_field in ("status", "Status") else plants.status_field
            if col not in gdf.columns:
                raise LayerError(f"{catalog.where(spec)}: no status column '{plants.status_field}'")
            keep = gdf[col].astype(str).str.lower().isin([s.lower() for s in plants.statuses])
            gdf = gdf[keep]
        cap = "capacity_mw" if plants.capacity_field in CAPACITY_ALIASES else plants.capacity_field
        if len(gdf):
            foot = cons_lib.plant_footprints(
                gdf.to_crs(grid.crs), recipe.sites.power_density_mw_per_km2, cap
            )
            out.append(
                cons_lib.PolygonConstraint(
                    OCCUPIED,
                    "Land occupied by built plants",
                    "已建电站占地",
                    foot,
                    rule="centre",
                    overridable=False,
                )
            )
    for z in getattr(recipe, "forced_inclusion", []):
        out.append(
            cons_lib.ForcedInclusion(
                z.id,
                z.name_en or z.id,
                z.name_zh or z.id,
                catalog.vector(z.layer, grid),
            )
        )
    return out


# -- plant lists -------------------------------------------------------------------------------
#: column names of the Global Energy Monitor trackers → sitekit's plant-list columns
PLANT_COLUMNS = {
    "Project Name": "name",
    "Phase Name": "phase",
    "Capacity (MW)": "capacity_mw",
    "Status": "status",
    "Start year": "start_year",
    "Start Year": "start_year",
    "Latitude": "lat",
    "Longitude": "lon",
    "Location accuracy": "location_accuracy",
    "Location Accuracy": "location_accuracy",
    "Major area (prefecture, district)": "prefecture",
    "Local area (taluk, county)": "county",
    "GEM phase ID": "gem_id",
    "GEM unit ID": "gem_id",
}
CAPACITY_ALIASES = ("capacity_mw", "Capacity (MW)")


def standard_plants(gdf: Any) -> Any:
    """Rename a plant list's columns to sitekit's (name, phase, capacity_mw, status, start_year,
    location_accuracy, prefecture, county, gem_id); a plain list already using them is unchanged.
    Status is lower-cased; prefecture spellings are reduced to the bare name (``Liangshan``)."""
    import pandas as pd

    out = gdf.rename(columns={k: v for k, v in PLANT_COLUMNS.items() if k in gdf.columns})
    if "status" in out.columns:
        out["status"] = out["status"].astype(str).str.strip().str.lower()
    if "capacity_mw" in out.columns:
        out["capacity_mw"] = pd.to_numeric(out["capacity_mw"], errors="coerce")
    if "start_year" in out.columns:
        out["start_year"] = pd.to_numeric(out["start_year"], errors="coerce").astype("Int64")
    if "prefecture" in out.columns:
        out["prefecture"] = out["prefecture"].map(prefecture_name)
    return out


_PREFECTURES = {
    "liangshan": "Liangshan",
    "panzhihua": "Panzhihua",
    "pazhihua": "Panzhihua",  # misspelling in the GEM wind tracker (MANIFEST)
    "aba": "Aba",
    "ngawa": "Aba",
    "ganzi": "Ganzi",
    "garze": "Ganzi",
    "garzê": "Ganzi",
}


def prefecture_name(value: Any) -> Any:
    """'Liangshan Yi Autonomous Prefecture', 'Pazhihua Municipality' … → 'Liangshan', 'Panzhihua'."""
    if not isinstance(value, str):
        return value
    first = value.strip().split()[0].lower() if value.strip() else ""
    return _PREFECTURES.get(first, value.strip())


# -- least-cost connection surface (called by sitekit.engine.pipeline / sitekit.engine.run) -----------------
def cost_penalty(terms: list[Any], pipe: Any, recipe: Any) -> Any:
    """Product of a recipe's ``grid.cost_terms`` multipliers (None without terms).

    A ``classes`` term maps class codes of a categorical raster to multipliers (others 1); an
    ``above``/``multiplier`` term multiplies where a layer exceeds a value. NaN never penalises.
    Categorical layers must be declared ``categorical: true`` (nearest/mode resampling).
    """
    from sitekit.errors import LayerError

    out = None
    for t in terms:
        x = pipe.derived(t.layer, recipe)
        if t.classes is not None:
            if t.layer in pipe.catalog and not pipe.catalog.layer(t.layer).categorical:
                spec = pipe.catalog.layer(t.layer)
                raise LayerError(
                    f"{pipe.catalog.where(spec)}: grid.cost_terms uses class codes on a layer "
                    "that is not `categorical: true`"
                )
            m = x * 0 + 1.0
            for code, mult in t.classes.items():
                m = m.where(x != code, float(mult))
        else:
            m = (x * 0 + 1.0).where(~(x > t.above), float(t.multiplier))
        m = m.fillna(1.0).astype(np.float32)
        out = m if out is None else out * m
    return out


def forbidden_mask(graph: Any) -> Any:
    """Union of the masks of the recipe's ``grid.forbidden`` constraints (None if none apply).

    The union keeps the name of a single constraint (so cached results keyed by it stay valid).
    """
    ids = getattr(graph.recipe.grid, "forbidden", ["nobuild"])
    masks = [graph.constraints.masks[i] for i in ids if i in graph.constraints.masks]
    if not masks:
        return None
    out = masks[0]
    for m in masks[1:]:
        out = out | m
    return out.rename(masks[0].name if len(masks) == 1 else "+".join(ids))


def crossing_penalty(graph: Any) -> Any:
    """Cost multiplier of the recipe's ``grid.crossing_costs`` (constraint or rule id → factor
    where a connection line crosses that constraint's mask), None when there are none.

    Overlapping crossings multiply (a redline lake costs both factors), as the per-crossing
    penalties of reVX least-cost transmission add up along a path.
    """
    costs = getattr(graph.recipe.grid, "crossing_costs", {}) or {}
    out = None
    for cid, factor in costs.items():
        mask = graph.constraints.masks.get(cid)
        if mask is None:
            continue
        m = (mask.astype(np.float32) * np.float32(factor - 1.0) + np.float32(1.0)).astype(
            np.float32
        )
        out = m if out is None else out * m
    return None if out is None else out.rename("crossing_penalty")
