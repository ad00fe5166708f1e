"""Load YAML specs (catalogues, recipes, map styles) into pydantic models with precise errors.

YAML is loaded with a safe loader only (libyaml's ``CSafeLoader`` when available, else
``yaml.SafeLoader``; no object construction: a ``!!python`` tag is an error). Validation errors
name the file, the line and the key, and suggest the nearest valid key for a typo, e.g.
``pipelines/pv.yaml:12: key 'wieght' in criteria[1] is not allowed (did you mean 'weight'?)``.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from sitekit.errors import RecipeError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[Any, ...]


def _node_lines(node: yaml.Node, path: Loc, out: dict[Loc, int]) -> None:
    """Record the 1-based line of every mapping key / sequence item under ``node``."""
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[(*path, key)] = key_node.start_mark.line + 1
            _node_lines(value_node, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*path, i)] = item.start_mark.line + 1
            _node_lines(item, (*path, i), out)


#: most values a spec may hold once its aliases are expanded (a recipe has a few hundred)
MAX_NODES = 200_000
#: largest spec file read [bytes]
MAX_SPEC_BYTES = 8 << 20


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Number of nodes of ``root`` with every alias expanded, computed without expanding
    (shared nodes are counted once per use, each node's size memoised): stops above ``limit``."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:  # a recursive alias: infinite when expanded
            return limit + 1
        active.add(key)
        n = 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                n += size(k) + size(v)
                if n > limit:
                    break
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                n += size(item)
                if n > limit:
                    break
        active.discard(key)
        sizes[key] = n
        return n

    return size(root)


#: libyaml's safe loader when PyYAML was built with it (same data and line marks, ~6× faster)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: str | Path) -> tuple[Any, dict[Loc, int]]:
    """Safe-load a YAML file; return (data, {key path: line})."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: file not found")
    if path.stat().st_size > MAX_SPEC_BYTES:
        raise RecipeError(f"{path}: larger than {MAX_SPEC_BYTES >> 20} MiB; not a sitekit spec")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        node = yaml.compose(text, Loader=_LOADER)
        if node is not None and _expanded_size(node, MAX_NODES) > MAX_NODES:
            raise RecipeError(
                f"{path}:{node.start_mark.line + 1}: its YAML aliases (*name) expand to more than "
                f"{MAX_NODES:,} values (an alias bomb?); write the values out or use fewer aliases"
            )
        data = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a SafeLoader
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else "?"
        raise RecipeError(
            f"{path}:{line}: {exc.problem} — sitekit specs are plain data; remove the tag"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else "?"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{path}:{line}: invalid YAML: {problem}") from None
    lines: dict[Loc, int] = {}
    if node is not None:
        _node_lines(node, (), lines)
    return data, lines


def _unwrap(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple, dict, typing.Annotated):
        out = []
        for arg in typing.get_args(annotation):
            out.extend(_unwrap(arg))
        return out
    return [annotation]


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """Follow ``loc`` through the model's field annotations; return the model found there."""
    current: type[BaseModel] | None = model
    for key in loc:
        if current is None:
            return None
        if isinstance(key, int):
            continue
        field = current.model_fields.get(str(key))
        if field is None:
            return None
        models = [
            a for a in _unwrap(field.annotation) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        current = models[0] if models else None
    return current


def _fmt_loc(loc: Loc) -> str:
    out = ""
    for k in loc:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out or "(top level)"


def format_validation_error(
    path: Path, exc: ValidationError, lines: dict[Loc, int], model: type[BaseModel]
) -> str:
    """One line per problem: ``file:line: key: message``."""
    msgs = []
    for err in exc.errors():
        loc = tuple(k for k in err["loc"] if not (isinstance(k, str) and k.startswith("function-")))
        probe = loc
        while probe and probe not in lines:
            probe = probe[:-1]
        line = lines.get(probe, "?")
        if err["type"] == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            valid = sorted(parent.model_fields) if parent else []
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.6)
            hint = (
                f" (did you mean '{close[0]}'?)"
                if close
                else (f" (valid keys: {', '.join(valid)})" if valid else "")
            )
            where = _fmt_loc(loc[:-1])
            msgs.append(f"{path}:{line}: unknown key '{loc[-1]}' in {where}{hint}")
        else:
            msg = err["msg"]
            if err["type"] == "missing":
                msg = "required key is missing"
            msgs.append(f"{path}:{line}: {_fmt_loc(loc)}: {msg}")
    return "; ".join(msgs)


def load_yaml_model(path: str | Path, model: type[M], data: Any = None, lines=None) -> M:
    """Read ``path`` (or validate pre-read ``data``) into ``model``; errors name file/line/key."""
    path = Path(path)
    if data is None:
        data, lines = read_yaml(path)
    lines = lines or {}
    if data is None:
        raise RecipeError(f"{path}:1: the file is empty")
    if not isinstance(data, dict):
        raise RecipeError(f"{path}:1: expected a mapping of keys at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(format_validation_error(path, exc, lines, model)) from None


def set_dotted(data: dict, key: str, raw_value: str, where: str = "--set") -> None:
    """Apply a ``--set a.b.0.c=value`` override to nested dicts/lists (value parsed as YAML)."""
    try:
        value = yaml.safe_load(raw_value)
    except yaml.YAMLError:
        value = raw_value
    parts = key.split(".")
    cur: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(cur, list):
            if not part.lstrip("-").isdigit() or not -len(cur) <= int(part) < len(cur):
                raise RecipeError(
                    f"{where} {key}: '{part}' is not an index of a list of {len(cur)}"
                )
            if last:
                cur[int(part)] = value
            else:
                cur = cur[int(part)]
        elif isinstance(cur, dict):
            if part not in cur and not last:
                # allow selecting list items by their `id`/`name`
                raise RecipeError(
                    f"{where} {key}: no key '{part}' (have: {', '.join(map(str, cur)) or 'none'})"
                )
            if last:
                cur[part] = value
            else:
                cur = cur[part]
                if isinstance(cur, list) and i + 1 < len(parts) and not parts[i + 1].isdigit():
                    named = [
                        x
                        for x in cur
                        if isinstance(x, dict) and parts[i + 1] in (x.get("id"), x.get("name"))
                    ]
                    if named:
                        parts[i + 1] = str(cur.index(named[0]))
        else:
            raise RecipeError(f"{where} {key}: '{part}' goes below a plain value")
