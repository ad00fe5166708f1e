"""sitekit — screen land for solar PV, wind and pumped-storage hydro with Dask-parallel rasters.

The Python API (the command line is a thin layer over it)::

    from sitekit import RunOptions, bundled, load_run, run_job

    opts = RunOptions(catalog=bundled("layers", "sichuan-west", "catalog.yaml"), out="out")
    result = run_job([bundled("pipelines", "pv.yaml")], opts)
    print(result.summary)          # per prefecture; load_run("out") reads a finished run

Heavy modules are imported on first use of a name, so ``import sitekit`` stays light.
"""

from __future__ import annotations

__version__ = "0.1.0"

from sitekit import _compat  # noqa: E402
from sitekit.errors import (  # noqa: E402
    CRSError,
    InputError,
    LayerError,
    OutputError,
    RecipeError,
    SitekitError,
    SitekitWarning,
)

_compat.install()

#: public name → module that defines it (imported lazily, PEP 562)
_LAZY = {
    "run_job": "sitekit.engine.run",
    "RunOptions": "sitekit.engine.run",
    "RunResult": "sitekit.engine.run",
    "load_run": "sitekit.io.results",
    "Catalog": "sitekit.io.catalog",
    "Grid": "sitekit.grid",
    "load_recipe": "sitekit.specs.recipe",
    "bundled": "sitekit.engine.resources",
    "data_root": "sitekit.engine.resources",
}


def __getattr__(name: str):  # noqa: ANN202
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sitekit' has no attribute {name!r}")


__all__ = [
    "CRSError",
    "Catalog",
    "Grid",
    "InputError",
    "LayerError",
    "OutputError",
    "RecipeError",
    "RunOptions",
    "RunResult",
    "SitekitError",
    "SitekitWarning",
    "__version__",
    "bundled",
    "data_root",
    "load_recipe",
    "load_run",
    "run_job",
]
