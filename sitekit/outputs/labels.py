"""Bilingual names people see: field aliases (中文 (unit)), layer titles, technology titles.

One vocabulary for the QGIS styles (field aliases), the XLSX header and notes, the map and the
report, so a column is called the same thing everywhere. Machine names (``capacity_mw``) stay the
column names in every file; these are the labels shown next to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: field → (中文, English, unit or ""); units in the field name are repeated here for people
FIELDS: dict[str, tuple[str, str, str]] = {
    "site_id": ("场址编号", "Site ID", ""),
    "rank": ("排名", "Rank", ""),
    "rank_in_prefecture": ("市州内排名", "Rank in prefecture", ""),
    "prefecture": ("市州（英文名）", "Prefecture", ""),
    "prefecture_zh": ("市州", "Prefecture (Chinese)", ""),
    "prefecture_en": ("市州（英文名）", "Prefecture (English)", ""),
    "county": ("县区（英文名）", "County", ""),
    "county_zh": ("县区", "County (Chinese)", ""),
    "county_en": ("县区（英文名）", "County (English)", ""),
    "adcode": ("行政区划代码", "Administrative code", ""),
    "prefecture_adcode": ("市州行政区划代码", "Prefecture administrative code", ""),
    "name": ("名称", "Name", ""),
    "name_zh": ("中文名", "Name (Chinese)", ""),
    "name_en": ("英文名", "Name (English)", ""),
    "area_km2": ("面积", "Area", "km²"),
    "capacity_mw": ("装机容量", "Capacity", "MW"),
    "energy_gwh": ("年发电量", "Annual energy", "GWh/yr"),
    "capacity_factor": ("容量系数", "Capacity factor", "0–1"),
    "mean_score": ("平均适宜性得分", "Mean suitability score", "0–1"),
    "lcoe_cny_per_kwh": ("平准化度电成本", "LCOE", "元/kWh"),
    "grid_distance_km": ("距电网直线距离", "Distance to grid", "km"),
    "connection_distance_km": ("并网线路距离", "Connection distance", "km"),
    "grid_point_name": ("并网点", "Grid connection point", ""),
    "reservoir_id": ("水库编号", "Reservoir ID", ""),
    "role": ("上库/下库", "Role (upper/lower)", ""),
    "water_level_m": ("正常蓄水位", "Water level", "m"),
    "dam_height_m": ("坝高", "Dam height", "m"),
    "volume_gl": ("库容", "Volume", "GL"),
    "dam_volume_m3": ("坝体方量", "Dam volume", "m³"),
    "water_rock_ratio": ("水岩比", "Water/rock ratio", "1"),
    "existing": ("现有水库", "Existing reservoir", ""),
    "pair_id": ("站点对编号", "Pair ID", ""),
    "head_m": ("水头", "Head", "m"),
    "separation_km": ("上下库距离", "Separation", "km"),
    "slope": ("坡降", "Head/separation slope", "1"),
    "power_mw": ("功率", "Power", "MW"),
    "storage_hours": ("储能时长", "Storage duration", "h"),
    "cost_class": ("成本等级", "Cost class", ""),
    "cost_usd_per_kw": ("单位千瓦造价", "Cost per kW", "USD/kW"),
    "cost_usd_per_kwh": ("单位千瓦时造价", "Cost per kWh", "USD/kWh"),
    "cost_cny_per_kw": ("单位千瓦造价", "Cost per kW", "元/kW"),
    "power_cost_usd_per_kw": ("功率部分造价", "Power cost", "USD/kW"),
    "storage_cost_usd_per_kwh": ("储能部分造价", "Storage cost", "USD/kWh"),
    "uses_existing_reservoir": ("利用现有水库", "Uses existing reservoir", ""),
    "upper_id": ("上库编号", "Upper reservoir ID", ""),
    "lower_id": ("下库编号", "Lower reservoir ID", ""),
    "lower_name": ("下库名称", "Lower reservoir name", ""),
    "point_id": ("并网点编号", "Point ID", ""),
    "kind": ("类型", "Kind", ""),
    "voltage_kv": ("电压", "Voltage", "kV"),
    "fuel": ("燃料/类型", "Fuel", ""),
    "note": ("备注", "Note", ""),
    "zone_id": ("区域编号", "Zone ID", ""),
    "class": ("类别", "Class", ""),
    "illustrative": ("示意数据", "Illustrative", ""),
    "modelled": ("模拟数据", "Modelled", ""),
    "source": ("来源", "Source", ""),
    "technology": ("技术类型", "Technology", ""),
    "eligible_km2": ("可用面积", "Eligible area", "km²"),
    # summary.csv: the listed sites' MW, not a technical potential (that is potential.csv)
    "potential_mw": ("前N名场址装机", "Capacity of the top-N sites", "MW"),
    "n_sites": ("场址数", "Sites", ""),
    "lon_deg": ("经度", "Longitude", "°"),
    "lat_deg": ("纬度", "Latitude", "°"),
    "data_status": (
        "数据状态（模拟/示意输入）",
        "Data status (modelled / illustrative inputs)",
        "",
    ),
    "storage_gwh": ("储能电量（每循环）", "Storage per cycle", "GWh"),
    "mean_depth_m": ("平均水深", "Mean depth", "m"),
    "lower_dam_height_m": ("下库坝高", "Lower dam height", "m"),
    "lower_mean_depth_m": ("下库平均水深", "Lower mean depth", "m"),
    "usable_volume_gl": ("有效库容", "Usable volume", "GL"),
    "outline_method": ("库区轮廓方法", "Reservoir outline method", ""),
    "upper_name": ("上库名称", "Upper reservoir name", ""),
    "existing_reach_km": ("利用现有河段长度", "Existing reach used", "km"),
    "volume_m3": ("库容", "Volume", "m³"),
    "level_m": ("水位", "Water level", "m"),
    "score": ("适宜性得分", "Suitability score", "0–1"),
    "score_percentile": ("得分百分位", "Score percentile", "%"),
    "eligible": ("适宜", "Eligible", ""),
    "excluded_by": ("排除原因", "Excluded by", ""),
    "cf_modelled": ("模拟容量系数", "Modelled capacity factor", "0–1"),
    "connection_cost_cny": ("并网费用", "Connection cost", "元"),
    "connection_kv": ("并网电压", "Connection voltage", "kV"),
    "gem_id": ("GEM 编号", "GEM ID", ""),
    "location_accuracy": ("位置精度", "Location accuracy", ""),
    "phase": ("期次", "Phase", ""),
    "status": ("状态", "Status", ""),
    "start_year": ("投运年份", "Start year", ""),
    "excluded_km2": ("排除面积", "Excluded area", "km²"),
    "study_km2": ("研究区面积", "Study area", "km²"),
}
#: fields of the grid planners' layers (hosting points, hydro bases, hydro–wind–solar bases)
FIELDS.update(
    {
        "base_id": ("基地编号", "Base ID", ""),
        "hydro_plant": ("水电站", "Hydro plant", ""),
        "hydro_plant_zh": ("水电站（中文名）", "Hydro plant (Chinese)", ""),
        "river": ("河流", "River", ""),
        "regulation": ("调节性能", "Regulation class", ""),
        "regulation_source": ("调节性能来源", "Regulation class source", ""),
        "hydro_mw": ("水电装机", "Hydro capacity", "MW"),
        "hydro_gwh": ("水电年发电量", "Hydro energy", "GWh/yr"),
        "hydro_spilled_gwh": ("水电弃水电量", "Hydro energy spilled", "GWh/yr"),
        "line_mw": ("外送线路容量", "Line capacity", "MW"),
        "line_source": ("线路容量来源", "Line capacity source", ""),
        "line_share": ("可用线路比例", "Line share usable", "0–1"),
        "spare_mw": ("线路富余容量", "Spare line capacity", "MW"),
        "pv_mw": ("光伏装机", "PV capacity", "MW"),
        "wind_mw": ("风电装机", "Wind capacity", "MW"),
        "pv_gwh": ("光伏年发电量", "PV energy", "GWh/yr"),
        "wind_gwh": ("风电年发电量", "Wind energy", "GWh/yr"),
        "pv_mw_lp": ("光伏装机（线性规划解）", "PV capacity (LP solution)", "MW"),
        "wind_mw_lp": ("风电装机（线性规划解）", "Wind capacity (LP solution)", "MW"),
        "pv_candidates_mw": ("范围内光伏候选装机", "PV candidates in the catchment", "MW"),
        "wind_candidates_mw": ("范围内风电候选装机", "Wind candidates in the catchment", "MW"),
        "site_ids": ("场址编号列表", "Site IDs", ""),
        "generated_gwh": ("合计年发电量", "Energy generated", "GWh/yr"),
        "added_mw": ("新增装机", "Capacity added", "MW"),
        "added_gwh": ("新增年发电量", "Energy added", "GWh/yr"),
        "curtailed_gwh": ("弃电量", "Energy curtailed", "GWh/yr"),
        "curtailment": ("弃电率", "Curtailment", "0–1"),
        "utilisation_before": ("线路利用率（新增前）", "Line utilisation before", "0–1"),
        "utilisation_after": ("线路利用率（新增后）", "Line utilisation after", "0–1"),
        "firm_share": ("保证出力占比", "Firm share", "0–1"),
        "corr_hydro_pv_monthly": ("水电-光伏月度相关系数", "Hydro–PV monthly correlation", "−1–1"),
        "corr_hydro_wind_monthly": (
            "水电-风电月度相关系数",
            "Hydro–wind monthly correlation",
            "−1–1",
        ),
        "corr_pv_wind_hourly": ("光伏-风电小时相关系数", "PV–wind hourly correlation", "−1–1"),
        "hydro_shares_status": ("水电月分布数据状态", "Hydro monthly shares status", ""),
        "wind_shape_status": ("风电出力曲线数据状态", "Wind shape status", ""),
        "total_mw": ("总装机", "Total capacity", "MW"),
        "total_gwh": ("总年发电量", "Total energy", "GWh/yr"),
        "min_lcoe_cny_per_kwh": ("最低平准化度电成本", "Lowest LCOE", "元/kWh"),
        "mean_connection_km": ("平均并网距离", "Mean connection distance", "km"),
        "capacity_source": ("容量来源", "Capacity source", ""),
        "allocated_pv_mw": ("已分配光伏装机", "PV allocated", "MW"),
        "allocated_wind_mw": ("已分配风电装机", "Wind allocated", "MW"),
        "allocated_mw": ("已分配装机", "Capacity allocated", "MW"),
        "allocated_gwh": ("已分配年发电量", "Energy allocated", "GWh/yr"),
        "not_allocated_mw": ("未分配装机", "Capacity not allocated", "MW"),
        "remaining_mw": ("剩余接入容量", "Remaining capacity", "MW"),
        "bundled_base": ("打捆基地", "Bundled into base", ""),
        "bundled_into_bases_mw": ("打捆入基地装机", "Allocated sites bundled into bases", "MW"),
        "allocated_after_bases_mw": ("基地打捆后已分配装机", "Allocated after bases", "MW"),
        "remaining_after_bases_mw": ("基地打捆后剩余接入容量", "Remaining after bases", "MW"),
        "n_sites_allocated": ("已分配场址数", "Sites allocated", ""),
        "merged_plants": ("合并的电站", "Merged plants", ""),
        "published_pv_mw": ("已公布光伏规模", "Announced PV capacity", "MW"),
        "published_wind_mw": ("已公布风电规模", "Announced wind capacity", "MW"),
        "published_gwh": ("已公布年发电量", "Announced annual energy", "GWh/yr"),
        "published_what": ("已公布内容", "What was announced", ""),
        "published_source": ("公布来源", "Announcement source", ""),
        "in_top_n": ("列入前N名", "In the top-N list", ""),
    }
)
#: (layer, field) where a field means something else in that layer
LAYER_FIELDS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("ps_pairs", "energy_gwh"): ("储能电量", "Stored energy", "GWh"),
    ("ps_pairs", "prefecture"): ("市州（英文名）", "Prefecture", ""),
}

TECH_TITLES = {"pv": "PV 光伏", "wind": "Wind 风电", "pumped_storage": "Pumped storage 抽水蓄能"}
TECH_ZH = {"pv": "光伏", "wind": "风电", "pumped_storage": "抽水蓄能"}
TECH_EN = {"pv": "PV", "wind": "Wind", "pumped_storage": "Pumped storage"}


#: per-technology columns ``<tech>_<stem>[_after_competition]`` → (中文, English, unit)
_TECH_STEMS: dict[str, tuple[str, str, str]] = {
    "eligible_km2": ("可用面积", "eligible area", "km²"),
    "excluded_km2": ("排除面积（合计）", "excluded area, all rules", "km²"),
    "study_km2": ("研究区面积", "study area", "km²"),
    "shared_km2": ("与其他技术共用面积", "area shared with other technologies", "km²"),
    "mean_cf": ("平均容量系数", "mean capacity factor", "0–1"),
    "technical_potential_mw": ("技术可开发量", "technical potential", "MW"),
    "technical_potential_gwh": ("技术可开发电量", "technical potential", "GWh/yr"),
}


def _pattern_info(field: str) -> tuple[str, str, str] | None:
    """Names of the per-technology columns (``pv_eligible_km2``, ``wind_excluded_steep_km2``,
    ``pv_mean_cf_after_competition`` …)."""
    tech = next((t for t in ("pv", "wind") if field.startswith(f"{t}_")), None)
    if tech is None:
        return None
    rest = field.removeprefix(f"{tech}_")
    after = rest.endswith("_after_competition")
    rest = rest.removesuffix("_after_competition")
    zh_after, en_after = ("（用地竞争后）", " after competition") if after else ("", "")
    if rest in _TECH_STEMS:
        zh, en, unit = _TECH_STEMS[rest]
    elif rest.startswith("excluded_") and rest.endswith("_km2"):
        code = rest.removeprefix("excluded_").removesuffix("_km2")
        zh, en, unit = f"排除面积：{code}", f"excluded by {code}", "km²"
    else:
        return None
    return f"{TECH_ZH[tech]}{zh}{zh_after}", f"{TECH_EN[tech]} {en}{en_after}", unit


def field_info(field: str, layer: str | None = None) -> tuple[str, str, str] | None:
    """(中文, English, unit) of a field, or None when sitekit has no name for it."""
    return LAYER_FIELDS.get((layer or "", field)) or FIELDS.get(field) or _pattern_info(field)


def alias_zh(field: str, layer: str | None = None) -> str:
    """The QGIS field alias: ``中文 (unit)``, e.g. ``装机容量 (MW)``; the field name if unknown."""
    info = field_info(field, layer)
    if info is None:
        return field
    zh, _, unit = info
    return f"{zh} ({unit})" if unit else zh


def label_bilingual(field: str, layer: str | None = None) -> str:
    """``中文 / English (unit)``, e.g. ``装机容量 / Capacity (MW)``; the field name if unknown."""
    info = field_info(field, layer)
    if info is None:
        return field
    zh, en, unit = info
    return f"{zh} / {en}" + (f" ({unit})" if unit else "")


def short_header(field: str) -> str:
    """A compact terminal column header: ``装机容量 MW``."""
    info = field_info(field)
    if info is None:
        return field
    zh, _, unit = info
    return f"{zh} {unit}".strip()


def constraint_title(
    key: str, provenance: Mapping[str, Any] | None
) -> tuple[str, str, bool] | None:
    """(English, 中文, illustrative) display names of a ``constraint_<id>`` layer from the run's
    provenance inputs; None when ``key`` is not a constraint layer. An illustrative layer says so
    in both names."""
    if not key.startswith("constraint_"):
        return None
    cid = key.removeprefix("constraint_")
    info = dict(((provenance or {}).get("inputs") or {}).get(cid) or {})
    en = str(info.get("name_en") or f"Constraint: {cid.replace('_', ' ')}")
    zh = str(info.get("name_zh") or "约束区")
    illustrative = bool(info.get("illustrative"))
    if illustrative:
        if "illustrative" not in en.lower():
            en = f"{en} (illustrative)"
        if "示意" not in zh:
            zh = f"{zh}（示意）"
    return en, zh, illustrative


def with_admin_names(gdf: Any, prefectures: Any = None, counties: Any = None) -> Any:
    """``gdf`` with Chinese names and codes for its English ``prefecture``/``county`` columns:
    ``prefecture_zh``, ``prefecture_adcode``, ``county_zh`` and ``adcode`` (the county's code,
    else the prefecture's), joined on the boundary layers' ``name_en`` (counties on prefecture
    and county together, as two counties may share a pinyin name). Columns the boundary layers
    cannot give are left out; the input is not changed."""
    import pandas as pd

    if gdf is None or "prefecture" not in getattr(gdf, "columns", ()):
        return gdf
    out = gdf.copy()
    pos = list(out.columns).index("prefecture") + 1
    new: dict[str, Any] = {}
    if prefectures is not None and {"name_en", "name_zh"} <= set(prefectures.columns):
        p = prefectures.drop_duplicates("name_en").set_index("name_en")
        new["prefecture_zh"] = out["prefecture"].map(p["name_zh"])
        if "adcode" in p.columns:
            new["prefecture_adcode"] = out["prefecture"].map(p["adcode"])
    if (
        "county" in out.columns
        and counties is not None
        and {"name_en", "name_zh", "prefecture_en"} <= set(counties.columns)
    ):
        c = counties.drop_duplicates(["prefecture_en", "name_en"]).set_index(
            ["prefecture_en", "name_en"]
        )
        idx = pd.MultiIndex.from_arrays([out["prefecture"], out["county"]])
        new["county_zh"] = pd.Series(c["name_zh"].reindex(idx).to_numpy(), index=out.index)
        if "adcode" in c.columns:
            code = pd.Series(c["adcode"].reindex(idx).to_numpy(), index=out.index)
            if "prefecture_adcode" in new:
                code = code.where(code.notna(), new["prefecture_adcode"])
            new["adcode"] = code
    elif "prefecture_adcode" in new:
        new["adcode"] = new["prefecture_adcode"]
    for name in ("prefecture_zh", "prefecture_adcode"):
        if name in new and name not in out.columns:
            out.insert(pos, name, new.pop(name))
            pos += 1
    if "county" in out.columns:
        pos = list(out.columns).index("county") + 1
    for name in ("county_zh", "adcode"):
        if name in new and name not in out.columns:
            out.insert(pos, name, new.pop(name))
            pos += 1
    return out


#: titles of layers the map style may not name: layer → (中文, English)
LAYER_TITLES: dict[str, tuple[str, str]] = {
    "technical_potential": ("技术可开发量（按县）", "Technical potential by county"),
    "grid_lines": ("输电线路", "Grid lines"),
    "routes": ("线路方案", "Routes"),
    "hosting_points": ("并网点承载能力", "Grid point hosting capacity"),
    "hydro_bases": ("水风光一体化基地", "Hydro-wind-solar bases"),
    "hydro_wind_solar_bases": ("水风光一体化基地（容量配置）", "Hydro-wind-solar bases (sized)"),
    "bases_sites": ("基地汇集场址", "Sites bundled into a base"),
}


def extra_title(name: str) -> tuple[str, str] | None:
    """(中文, English) of a layer from :data:`LAYER_TITLES` or an ``existing_<tech>_plants``
    name; None if unknown."""
    if name in LAYER_TITLES:
        return LAYER_TITLES[name]
    if name.startswith("existing_") and name.endswith("_plants"):
        tech = name.removeprefix("existing_").removesuffix("_plants")
        zh = {"pv": "光伏", "wind": "风电", "hydro": "水电"}.get(tech, tech)
        en = TECH_EN.get(tech, tech.replace("_", " "))
        return f"现有{zh}电站", f"Existing {en.lower() if tech != 'pv' else en} plants"
    return None


def layer_title(name: str, style: Any = None, provenance: Mapping[str, Any] | None = None) -> str:
    """``中文 / English`` display title of a GeoPackage/map layer: from the map style, the
    constraint's catalogue names (illustrative ones say so), or the layer name itself."""
    con = constraint_title(name, provenance)
    if con is not None:
        en, zh, _ = con
        return f"{zh} / {en}"
    if style is None:
        from sitekit.outputs.style import MapStyle

        style = MapStyle()
    vs = style.vectors.get(name) if hasattr(style, "vectors") else None
    if vs is not None:
        return f"{vs.name_zh} / {vs.name_en}" if vs.name_zh else vs.name_en
    rs = style.rasters.get(name) if hasattr(style, "rasters") else None
    if rs is not None:
        return f"{rs.name_zh} / {rs.name_en}" if rs.name_zh else rs.name_en
    extra = extra_title(name)
    return f"{extra[0]} / {extra[1]}" if extra else name
