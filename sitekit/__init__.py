"""sitekit — screen land for solar PV, wind and pumped-storage hydro with Dask-parallel rasters."""

from __future__ import annotations

__version__ = "0.1.0"

from sitekit.errors import (  # noqa: E402
    CRSError,
    InputError,
    LayerError,
    OutputError,
    RecipeError,
    SitekitError,
    SitekitWarning,
)

__all__ = [
    "CRSError",
    "InputError",
    "LayerError",
    "OutputError",
    "RecipeError",
    "SitekitError",
    "SitekitWarning",
    "__version__",
]
