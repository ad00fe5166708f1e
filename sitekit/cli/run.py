"""``sitekit demo`` and ``sitekit run RECIPE``."""

from __future__ import annotations
