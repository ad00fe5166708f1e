"""``sitekit route`` and ``sitekit hosting``: thin wrappers over :mod:`sitekit.science.routes` and
:mod:`sitekit.science.hosting`, reading a previous run's output folder once
(:func:`sitekit.io.routes.load_route_run`, i.e. :func:`sitekit.io.results.load_run`)."""

from __future__ import annotations

from pathlib import Path

import click

from sitekit.cli import cli
from sitekit.cli.options import catalog_opt, data_root_opt, force_opt
from sitekit.engine.logs import LOGGER

run_opt = click.option(
    "--run",
    "run_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder of a previous `sitekit demo`/`sitekit run` (rasters/, sitekit.gpkg).",
)


def _out_dir(out: Path | None, run_dir: Path, default: str, force: bool) -> Path:
    from sitekit.errors import OutputError

    out = out or run_dir / default
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise OutputError(f"output folder {out} exists; pass --force to overwrite its files")
    return out


def _catalog(path: Path | None, roots: tuple[Path, ...], opened=None):
    """The catalogue at ``path`` (default: the bundled one), or None if it does not exist;
    ``opened``, a catalogue already opened, is reused when it is that file."""
    from sitekit.cli.options import DEFAULT_CATALOG
    from sitekit.engine.run import REPO_ROOT
    from sitekit.io.catalog import Catalog

    path = path or REPO_ROOT / DEFAULT_CATALOG
    if opened is not None and Path(opened.path).resolve() == Path(path).resolve():
        return opened
    return Catalog(path, extra_roots=roots) if path.exists() else None


def _lonlat(value: str, opt: str) -> tuple[float, float]:
    from sitekit.errors import InputError

    try:
        lon, lat = (float(v) for v in value.split(","))
    except ValueError:
        raise InputError(
            f"{opt} {value!r}: give LON,LAT in degrees, e.g. {opt} 101.5,28.9"
        ) from None
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InputError(f"{opt} {value!r}: not a longitude,latitude pair in degrees")
    return lon, lat


@cli.command("route")
@click.argument("route_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@run_opt
@catalog_opt
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder  [default: RUN/route]",
)
@force_opt
@click.option(
    "--corridor-km",
    type=float,
    default=20.0,
    show_default=True,
    help="Half-width of the corridor whose sites the line could collect [km].",
)
@click.option("--sample-m", type=float, default=None, help="Profile spacing [m] (default: grid).")
@click.option("--from", "from_", metavar="LON,LAT", help="Suggest a least-cost route from here…")
@click.option("--to", "to", metavar="LON,LAT", help="…to here (instead of ROUTE_FILE).")
@click.option("--layer", default=None, help="Layer of a multi-layer route file.")
@click.option("--route-crs", default=None, help="CRS of a route file that declares none.")
@click.option("--no-map", is_flag=True, help="Skip route_map.html.")
@click.option(
    "--technology",
    type=click.Choice(["pv", "wind"]),
    default=None,
    help="Whose recipe's connection cost surface a suggestion follows [default: the run's first].",
)
@data_root_opt
@click.pass_context
def route(ctx: click.Context, route_file: Path | None, run_dir: Path, catalog: Path,
          out: Path | None, force: bool, corridor_km: float, sample_m: float | None,
          from_: str | None, to: str | None, layer: str | None, route_crs: str | None,
          no_map: bool, technology: str | None, data_roots: tuple[Path, ...]) -> None:  # fmt: skip
    """Evaluate ROUTE_FILE (GeoJSON, KML, GPKG, Shapefile; any CRS) against a run's layers, or
    suggest a least-cost route with --from/--to on the cost surface the run's connections used
    (slope, recipe cost terms, crossing costs, forbidden zones); writes profile, crossings,
    sites, summary, map."""
    from sitekit.engine.routes import run_connection_cost, write_route_report
    from sitekit.errors import InputError
    from sitekit.grid import transformer
    from sitekit.io.routes import load_route_run, read_route, run_layers
    from sitekit.science import proximity, routes

    if (route_file is None) == (from_ is None or to is None):
        raise InputError("give either a ROUTE_FILE or both --from LON,LAT and --to LON,LAT")
    data = load_route_run(run_dir)  # the run folder and its run.json, read once
    cat = _catalog(catalog or _run_catalog(data.provenance), data_roots)
    run = run_layers(data, cat)
    out = _out_dir(out, run_dir, "route", force)
    suggestion = None
    if route_file is not None:
        line = read_route(route_file, grid=run.grid, layer=layer, crs=route_crs)
        name = None
    else:
        tr = transformer(4326, run.grid.crs)
        a, b = _lonlat(from_, "--from"), _lonlat(to, "--to")
        rc = run_connection_cost(run_dir, cat, run.grid, technology=technology,
                                 provenance=run.provenance)  # fmt: skip
        if rc is not None:  # the run's own connection surface (sitekit.engine.pipeline.line_cost)
            suggestion = routes.suggest_route(
                tr.transform(*a), tr.transform(*b), cost=rc.cost, grid=run.grid,
                forbidden_mask=rc.forbidden, avoid=False, surface=rc.description,
            )  # fmt: skip
        else:  # no recipe in the folder: slope only, constraint polygons avoided
            LOGGER.warning(f"{run_dir}: no run.json recipe (or no catalogue): the suggestion "
                           "uses slope only and avoids every constraint polygon")  # fmt: skip
            suggestion = routes.suggest_route(
                tr.transform(*a), tr.transform(*b), cost=proximity.cost_surface(run.slope),
                grid=run.grid, redlines=run.redlines,
            )  # fmt: skip
        line, name = suggestion.line, f"least-cost route {from_} → {to}"
    report = routes.evaluate_route(
        line, grid=run.grid, elevation=run.elevation, slope=run.slope,
        constraints=run.constraints, sites=run.sites, corridor_km=corridor_km, sample_m=sample_m,
        name=name,
    )  # fmt: skip
    write_route_report(
        report, out, suggestion=suggestion, make_map=not no_map,
        cache_dir=_run_cache(run.provenance), provenance=run.provenance or None,
    )  # fmt: skip
    if not ctx.obj.get("quiet"):
        crossed = (
            ", ".join(
                f"{r.code} {r.length_km:.1f} km ×{r.n_crossings}"
                for r in report.constraints.itertuples()
                if r.n_crossings
            )
            or "none"
        )
        cap = report.capacity
        mw = cap.loc[cap["rank_class"] == "all", "capacity_mw"].sum()
        LOGGER.info(f"route {report.length_km:.1f} km; constraints crossed: {crossed}; "
                    f"{mw:,.0f} MW of sites within ±{corridor_km:g} km")  # fmt: skip
    LOGGER.info(f"route report written to {_shown(ctx, out)} (route_summary.md, route_map.html …)")


def _shown(ctx: click.Context, path: Path) -> Path:
    """``path`` as the user will find it: inside the demo's staging folder, under ``--out``."""
    stage, final = (ctx.obj or {}).get("staged_as", (None, None))
    if stage is not None and Path(path).is_relative_to(stage):
        return Path(final) / Path(path).relative_to(stage)
    return Path(path)


def _run_catalog(provenance: dict) -> Path | None:
    """The catalogue the run used (``run.json`` → ``catalog``), if that file still exists."""
    try:
        path = Path(provenance["catalog"])
    except (KeyError, TypeError):
        return None
    return path if path.is_file() else None


def _run_cache(provenance: dict) -> Path | None:
    """The layer cache folder the run used (``run.json`` → ``cache.dir``), if it still exists:
    the least-cost search from the connection points and the route map's overlays are kept
    there for re-runs."""
    try:
        folder = Path(provenance["cache"]["dir"])
    except (KeyError, TypeError):
        return None
    return folder if folder.is_dir() else None


@cli.command("hosting")
@run_opt
@catalog_opt
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder  [default: RUN/hosting]",
)
@force_opt
@click.option(
    "--straight-line",
    is_flag=True,
    help="Assign sites to the nearest point in a straight line (default: least cost).",
)
@click.option(
    "--plants-layer",
    default="power_plants",
    show_default=True,
    help="Catalogue layer of power plants for the hydro–wind–solar bases.",
)
@click.option(
    "--radius-km",
    type=float,
    default=50.0,
    show_default=True,
    help="Sites within this distance of a large hydro plant join its base [km].",
)
@click.option(
    "--min-hydro-mw",
    type=float,
    default=1000.0,
    show_default=True,
    help="Smallest hydro plant that anchors a base [MW].",
)
@click.option(
    "--hydro-cf",
    type=float,
    default=0.5,
    show_default=True,
    help="Hydro capacity factor for the spare-line estimate [0–1].",
)
@click.option(
    "--bases",
    "bases_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Hydro–wind–solar base settings [default: pipelines/bases.yaml]; needs the catalogue "
    "layer hydro_plants_gem.",
)
@click.option("--no-bases", is_flag=True, help="Skip the hydro–wind–solar base sizing.")
@data_root_opt
@click.pass_context
def hosting(ctx: click.Context, run_dir: Path, catalog: Path, out: Path | None, force: bool,
            straight_line: bool, plants_layer: str, radius_km: float, min_hydro_mw: float,
            hydro_cf: float, bases_file: Path | None, no_bases: bool,
            data_roots: tuple[Path, ...]) -> None:  # fmt: skip
    """Capacity per connection point with supply curves, and hydro–wind–solar bases."""
    from sitekit.engine.mcp_store import mcp_store
    from sitekit.engine.routes import run_connection_cost, run_recipes
    from sitekit.errors import InputError
    from sitekit.io.routes import load_route_run, run_layers
    from sitekit.outputs.hosting import write_hosting, write_hydro_bases
    from sitekit.science import hosting as hz
    from sitekit.science import proximity

    if not 0 <= hydro_cf < 1:
        raise InputError(f"--hydro-cf {hydro_cf}: must be between 0 and 1")
    data = load_route_run(run_dir)  # the run folder and its run.json, read once
    cat = _catalog(catalog, data_roots)
    run = run_layers(data, cat)
    prov = run.provenance or None  # tags every file written from the run (None: no run.json)
    out = _out_dir(out, run_dir, "hosting", force)
    if run.points is None or not len(run.points):
        raise InputError(f"run folder {run_dir}: sitekit.gpkg has no grid_points layer")
    cost, reach_km = None, None
    if not straight_line:  # the run's own connection surface (sitekit.engine.pipeline.line_cost)
        own = _catalog(catalog or _run_catalog(run.provenance), data_roots, opened=cat)
        rc = run_connection_cost(run_dir, own, run.grid, provenance=run.provenance)
        if rc is not None:
            cost, reach_km = rc.cost, rc.search_radius_km
            # a technology whose line settings differ routes over its own surface, as in the run
            costs = {rc.technology: rc.cost}
            for t in (t for t in run_recipes(run.provenance or {}) if t != rc.technology):
                other = run_connection_cost(run_dir, own, run.grid, technology=t,
                                            provenance=run.provenance).cost  # fmt: skip
                if other.data.name != rc.cost.data.name:
                    costs[t] = other
            cost = costs if len(costs) > 1 else cost
        else:  # no recipe in the folder: slope, every constraint polygon ×20 (the recipe default)
            red = run.redlines
            forbidden = run.grid.rasterize(red) if red is not None else None
            cost = proximity.cost_surface(run.slope, forbidden, forbidden_cost=20.0)
    sites, n_bases = run.sites, None
    if not no_bases and cat is not None and "hydro_plants_gem" in cat:
        from sitekit.engine.bases import run_bases

        # bundled sites leave the points; the run's report and map get the bases
        sites, n_bases = run_bases(run, cat, bases_file, out, prov, run_dir=run_dir)
    per, curves = hz.hosting_capacity(
        sites, run.points, cost=cost, grid=run.grid, store=mcp_store(_run_cache(run.provenance)),
        search_radius_km=reach_km,
    )  # fmt: skip
    write_hosting(per, curves, run.points, out, provenance=prov)
    msg = (  # allocated within each point's capacity; the rest needs new transmission
        f"{per['allocated_mw'].sum():,.0f} MW allocated at {int((per['allocated_mw'] > 0).sum())} "
        f"points (capacity {per['capacity_mw'].sum():,.0f} MW); "
        f"{per['total_mw'].sum() - per['allocated_mw'].sum():,.0f} MW of the top-N sites need "
        "new transmission"
    )
    if cat is not None and plants_layer in cat:
        from sitekit.io.layers import read_vector

        spec = cat.layer(plants_layer)  # not clipped: plants just outside anchor bases too
        plants = read_vector(cat.file(spec), spec, cat.where(spec))
        bases = hz.hydro_bases(run.sites, plants, radius_km=radius_km, min_hydro_mw=min_hydro_mw,
                              line_share_assumption=hz.LineShareAssumption(hydro_cf),
                              crs=run.grid.crs)  # fmt: skip
        write_hydro_bases(bases, out, provenance=prov)
        msg += f"; {len(bases)} hydro bases"
    else:
        LOGGER.info(f"no '{plants_layer}' layer in {catalog}: hydro bases skipped")
    if n_bases is not None:
        msg += f"; {n_bases} hydro–wind–solar bases sized (bases.csv)"
    LOGGER.info(msg)
    LOGGER.info(f"hosting results written to {_shown(ctx, out)} (hosting.csv, supply_curves.png …)")
