"""Climate tables read from files: the NASA MERRA-2 monthly GHI table that calibrates the PV
model's clear-sky index (:func:`sitekit.science.clearness.clearness_index_monthly`).

References
----------
Gelaro, R. et al. (2017): The Modern-Era Retrospective Analysis for Research and Applications,
Version 2 (MERRA-2). J. Climate 30, 5419–5454.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from sitekit.errors import LayerError
from sitekit.science.clearness import check_merra2_table

__all__ = ["read_merra2"]


def read_merra2(source: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """The MERRA-2 monthly GHI table: columns lat, lon [degree, 3° cell centres], month (1–12)
    and ghi_mean_w_m2 (monthly mean of daily-mean GHI [W/m²]).

    A path is read as CSV (its file name kept in ``DataFrame.attrs["source"]`` for the yield
    layer's ``method``); a DataFrame is only checked. :class:`LayerError` for a missing file or
    missing columns.
    """
    if isinstance(source, pd.DataFrame):
        return check_merra2_table(source)
    path = Path(source)
    if not path.is_file():
        raise LayerError(
            f"clearness file {path} not found; pass the MERRA-2 monthly GHI table "
            "(layers/sichuan-west/resource/merra2_ghi_monthly_mean_3deg_subset.csv)"
        )
    df = pd.read_csv(path)
    df.attrs["source"] = path.name
    return check_merra2_table(df)
