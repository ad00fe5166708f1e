"""Siting rules as cited data (``pipelines/rules/*.yaml``): the models and the loader.

A *rule* is one clause of a law, regulation or ministerial notice turned into a screen: which
technologies it binds, what it does (``exclude`` polygons, a ``buffer`` [m] around features, a
value ``threshold``, excluded land-cover ``classes``, or ``advisory`` only), the *layer role* it
needs (``ecological_redline``, ``permanent_basic_farmland``, ``land_cover_worldcover`` …) and its
citation (document, number, issuing body, year, article). A rule whose primary text could not be
read is marked ``unverified: true``; nothing is invented.

Recipes name rules by id (``rules: [eco_redline, …]``, checked by :func:`check_rule_ids`). What a
run does with them — a rule becomes a constraint where the catalogue has its layer, and the area
it removed is measured — is :mod:`sitekit.engine.rules`.

References
----------
The documents are cited rule by rule in ``pipelines/rules/*.yaml``.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sitekit.errors import RecipeError, SitekitError
from sitekit.specs.loader import load_yaml_model

_DATA_NAMES = ("pipelines", "layers", "maps")


def _bundled_rules_dir() -> Path:
    """``pipelines/rules`` of the repository checkout, or of ``sitekit/_bundled`` inside an
    installed wheel: the folder :func:`sitekit.engine.resources.data_root` finds (found the same
    way here, since specs may not import engine; ``tests/test_rules.py`` checks they agree)."""
    checkout = Path(__file__).resolve().parents[2]
    if all((checkout / n).is_dir() for n in _DATA_NAMES):
        return checkout / "pipelines" / "rules"
    bundled = Path(str(files("sitekit") / "_bundled"))
    if all((bundled / n).is_dir() for n in _DATA_NAMES):
        return bundled / "pipelines" / "rules"
    raise SitekitError(
        "sitekit's bundled recipes and data are missing (neither a checkout nor a wheel with "
        "sitekit/_bundled); reinstall sitekit"
    )


#: the rule catalogue shipped with sitekit
RULES_DIR = _bundled_rules_dir()
Technology = Literal["pv", "wind", "pumped_storage"]


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # finite numbers only


class Citation(_M):
    """Where a rule comes from."""

    document: str = Field(description="title of the document in its own language")
    document_en: str | None = Field(None, description="English rendering of the title")
    number: str | None = Field(
        None, description="document number (文号), e.g. 自然资发〔2022〕142号"
    )
    issuer: str = Field(description="issuing body (or bodies)")
    year: int = Field(ge=1949, le=2100)
    article: str | None = Field(None, description="article / section; null if not confirmed")
    in_force: str | None = Field(None, description="validity, e.g. 'expired 2024-03'")
    read_from: str = Field(description="what text was actually read (URL, reprint, news)")
    note: str | None = None


class Rule(_M):
    """One siting rule."""

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    name_zh: str
    name_en: str
    technologies: list[Technology] = Field(min_length=1)
    action: Literal["exclude", "buffer", "threshold", "classes", "advisory"]
    layer_role: str = Field(
        pattern=r"^[a-z0-9_]+$",
        description="role a catalogue layer `provides`, or a derived layer name for thresholds",
    )
    buffer_m: float = Field(
        0.0, ge=0, description="exclude: buffer around polygons; buffer: setback"
    )
    op: Literal[">", ">=", "<", "<="] | None = None
    value: float | None = None
    exclude_classes: list[int] | None = Field(None, description="classes: codes excluded")
    class_scheme: str | None = Field(None, description="classes: code list, e.g. ESA WorldCover")
    overridable: bool = Field(
        True, description="false = hard legal ban: forced-inclusion zones cannot override it"
    )
    citation: Citation | None = None
    unverified: bool = Field(False, description="true = primary text not found; not invented")
    note: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.citation is None and not self.unverified:
            raise ValueError("a rule needs a citation, or `unverified: true`")
        if self.action == "buffer" and not self.buffer_m > 0:
            raise ValueError("a buffer rule needs buffer_m > 0")
        if self.action == "threshold" and (self.op is None or self.value is None):
            raise ValueError("a threshold rule needs op and value")
        if self.action == "classes" and not self.exclude_classes:
            raise ValueError("a classes rule needs exclude_classes")
        return self

    def cite(self) -> str:
        """One-line citation: 《document》 number, article (issuer, year)."""
        c = self.citation
        if c is None:
            return "unverified: primary text not found"
        parts = [f"《{c.document}》" if not c.document.isascii() else c.document]
        parts += [p for p in (c.number, c.article) if p]
        text = " ".join(parts) + f" ({c.issuer}, {c.year})"
        return text + (" [unverified]" if self.unverified else "")


class RuleFile(_M):
    """A rule catalogue file: ``rules: [...]``."""

    rules: list[Rule]


@lru_cache(maxsize=4)
def load_rules(folder: Path = RULES_DIR) -> dict[str, Rule]:
    """Every rule in ``folder/*.yaml`` by id (file:line:key errors; duplicate ids refused)."""
    out: dict[str, Rule] = {}
    where: dict[str, Path] = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        for rule in load_yaml_model(path, RuleFile).rules:
            if rule.id in out:
                raise RecipeError(
                    f"{path}: rule id '{rule.id}' is also defined in {where[rule.id]}; rename one"
                )
            out[rule.id] = rule
            where[rule.id] = path
    return out


def check_rule_ids(ids: list[str], technology: str, folder: Path = RULES_DIR) -> None:
    """Raise ``ValueError`` (→ a file:line recipe error) for unknown or misapplied rule ids."""
    rules = load_rules(folder)
    for rid in ids:
        if rid not in rules:
            raise ValueError(f"unknown rule '{rid}' (rules in {folder}: {', '.join(rules)})")
        if technology not in rules[rid].technologies:
            raise ValueError(
                f"rule '{rid}' applies to {rules[rid].technologies}, not to {technology}"
            )
