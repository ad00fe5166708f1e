"""One exception hierarchy for sitekit.

Every error a user can fix is a :class:`SitekitError` whose message says *what* is wrong, *where*
(file, layer, line/key) and *what to do*. Subclasses also inherit the matching built-in
(as rioxarray's exceptions do) so generic ``except ValueError`` code keeps working.
The CLI prints the message on one line and exits 2; unexpected errors exit 1.
"""

from __future__ import annotations


class SitekitError(Exception):
    """Root of all user-fixable sitekit errors."""


class LayerError(SitekitError, ValueError):
    """A data layer is missing, unreadable, empty, implausible or outside the study area."""


class CRSError(LayerError):
    """A layer has no CRS, an unsupported CRS, or a CRS that contradicts its coordinates."""


class RecipeError(SitekitError, ValueError):
    """A YAML recipe, catalogue or map style is invalid (the message names file, line and key)."""


class InputError(SitekitError, ValueError):
    """A user-supplied input (route, point, option) is invalid."""


class OutputError(SitekitError, OSError):
    """An output cannot be written (existing folder without --force, disk, permissions)."""


class SitekitWarning(UserWarning):
    """A warning raised by sitekit itself (repaired polygons, modelled data in use …)."""
