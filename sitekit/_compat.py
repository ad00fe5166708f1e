"""The flat module paths of sitekit 0.1 (``sitekit.terrain``, ``sitekit.run`` …), kept for one
release: importing one gives the very module object of its new home (so ``monkeypatch`` and
``isinstance`` see one module), with a :class:`DeprecationWarning`. ``sitekit.io`` and
``sitekit.specs`` are packages now and re-export the old modules' names themselves.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: old module path → new module path
MOVED: dict[str, str] = {
    "sitekit.atomic": "sitekit.io.atomic",
    "sitekit.bases": "sitekit.science.bases",
    "sitekit.bases_outputs": "sitekit.outputs.bases",
    "sitekit.bases_run": "sitekit.engine.bases",
    "sitekit.blockops": "sitekit.science.blockops",
    "sitekit.cache": "sitekit.engine.cache",
    "sitekit.cachedir": "sitekit.engine.cachedir",
    "sitekit.catalog": "sitekit.io.catalog",
    "sitekit.check": "sitekit.io.check",
    "sitekit.competition": "sitekit.science.competition",
    "sitekit.constraints": "sitekit.science.constraints",
    "sitekit.export": "sitekit.outputs.export",
    "sitekit.gctools": "sitekit.engine.gctools",
    "sitekit.hosting": "sitekit.science.hosting",
    "sitekit.hydrology": "sitekit.science.hydrology",
    "sitekit.labels": "sitekit.outputs.labels",
    "sitekit.logs": "sitekit.engine.logs",
    "sitekit.ownership": "sitekit.io.ownership",
    "sitekit.pipeline": "sitekit.engine.pipeline",
    "sitekit.potential": "sitekit.science.potential",
    "sitekit.profiles": "sitekit.science.profiles",
    "sitekit.provenance": "sitekit.io.provenance",
    "sitekit.proximity": "sitekit.science.proximity",
    "sitekit.ps_geometry": "sitekit.science.ps_geometry",
    "sitekit.ps_select": "sitekit.science.ps_select",
    "sitekit.ps_sizing": "sitekit.science.ps_sizing",
    "sitekit.pumped_storage": "sitekit.science.pumped_storage",
    "sitekit.pumped_storage_cost": "sitekit.science.pumped_storage_cost",
    "sitekit.rasterstyle": "sitekit.outputs.rasterstyle",
    "sitekit.recipe": "sitekit.specs.recipe",
    "sitekit.render": "sitekit.outputs.render",
    "sitekit.report": "sitekit.outputs.report",
    "sitekit.reservoirs": "sitekit.science.reservoirs",
    "sitekit.resources": "sitekit.engine.resources",
    "sitekit.results": "sitekit.io.results",
    "sitekit.routes": "sitekit.science.routes",
    "sitekit.rules": "sitekit.specs.rules",
    "sitekit.run": "sitekit.engine.run",
    "sitekit.scoring": "sitekit.science.scoring",
    "sitekit.sites": "sitekit.science.sites",
    "sitekit.solar": "sitekit.science.solar",
    "sitekit.sources": "sitekit.io.sources",
    "sitekit.static": "sitekit.outputs.static",
    "sitekit.style": "sitekit.outputs.style",
    "sitekit.supply": "sitekit.science.supply",
    "sitekit.tags": "sitekit.outputs.tags",
    "sitekit.terrain": "sitekit.science.terrain",
    "sitekit.tiledfill": "sitekit.science.tiledfill",
    "sitekit.validation": "sitekit.engine.validation",
    "sitekit.wind": "sitekit.science.wind",
}


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolve an old path to the module at its new path."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):  # noqa: ANN001, ANN201
        warnings.warn(
            f"{spec.name} moved to {MOVED[spec.name]}; the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module) -> None:  # noqa: ANN001 - already executed at its new path
        return None


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
