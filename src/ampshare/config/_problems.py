"""Problems found while validating, before they are tied to a file and line."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ampshare.config._yaml import Loc

__all__ = ["Problem", "did_you_mean", "from_validation_error"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One problem at key path ``loc`` (relative to the file's root mapping)."""

    loc: Loc
    message: str
    hint: str | None = None


def did_you_mean(word: str, choices: Iterable[str], *, what: str = "valid") -> str:
    """A hint naming the closest valid choice, or listing them all when none is close."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    shown = ", ".join(options[:12]) + (", ..." if len(options) > 12 else "")
    return f"{what}: {shown}" if options else "none defined yet"


def from_validation_error(
    exc: ValidationError, model: type[BaseModel], prefix: Loc = ()
) -> list[Problem]:
    """Turn pydantic's errors into problems that say what was found and what would be valid."""
    out: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            fields = _fields_at(model, loc[:-1])
            out.append(Problem(loc=prefix + loc, message=f"unknown key '{key}'",
                               hint=did_you_mean(key, fields, what="valid keys here")))
        elif kind == "missing":
            out.append(Problem(loc=prefix + loc, message="required key is missing",
                               hint=f"add '{loc[-1]}:'"))
        else:
            if kind == "value_error" and loc and loc[-1] in _tags_at(model, loc[:-1]):
                loc = loc[:-1]  # a whole-model check of a union member: ('driver', 'modbus')
            message, hint = _message_for(kind, err, loc)
            out.append(Problem(loc=prefix + loc, message=message, hint=hint))
    return out


_BOUNDS = {"greater_than": ("gt", "too small", ">"),
           "greater_than_equal": ("ge", "too small", ">="),
           "less_than": ("lt", "too large", "<"),
           "less_than_equal": ("le", "too large", "<=")}
_LIST = "a list (one '- ' item per line, or [a, b])"
_MAPPING = "a mapping of keys (key: value)"
_SHAPES = {"list_type": _LIST, "tuple_type": _LIST, "dict_type": _MAPPING,
           "model_type": _MAPPING, "model_attributes_type": _MAPPING,
           "float_type": "a number", "float_parsing": "a number",
           "int_type": "a whole number", "int_parsing": "a whole number",
           "int_from_float": "a whole number", "bool_type": "true or false",
           "bool_parsing": "true or false", "string_type": "text"}
_NUMBER_WITH_UNIT = re.compile(r"^\s*(-?[\d.]+)\s*[A-Za-z]+\s*$")


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value) if isinstance(value, str) else str(value)


def _message_for(kind: str, err: Any, loc: Loc) -> tuple[str, str | None]:
    """(message, hint) for one pydantic error: the value found and what would be valid."""
    ctx = err.get("ctx") or {}
    got = err.get("input")
    if kind in _BOUNDS and _BOUNDS[kind][0] in ctx:
        key, what, op = _BOUNDS[kind]
        limit = ctx[key]
        shown = f"{limit:g}" if isinstance(limit, int | float) else str(limit)
        return f"{_show(got)} is {what}", f"use a value {op} {shown}"
    if kind in ("enum", "literal_error") and "expected" in ctx:
        options = re.findall(r"'([^']*)'", str(ctx["expected"]))
        name = next((str(c) for c in reversed(loc) if isinstance(c, str)), "value")
        valid = "valid values: " + ", ".join(options)
        close = difflib.get_close_matches(str(got), options, n=1, cutoff=0.6)
        return (f"{_show(got)} is not a valid value for '{name}'",
                f"did you mean '{close[0]}'? {valid}" if close else valid)
    if kind == "union_tag_invalid" and "expected_tags" in ctx:
        tag = str(ctx.get("tag", got))
        tags = re.findall(r"'([^']*)'", str(ctx["expected_tags"]))
        return f"unknown type '{tag}'", did_you_mean(tag, tags, what="valid types")
    if kind in _SHAPES:
        hint: str | None = None
        if kind == "string_type" and isinstance(got, int | float):
            hint = "quote it, e.g. id: '01'; unquoted, YAML reads it as a number"
        elif isinstance(got, str) and (number := _NUMBER_WITH_UNIT.match(got)):
            hint = f"write {number[1]}: the unit is in the key's name"
        return f"expected {_SHAPES[kind]}, got {_show(got)}", hint
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        return msg, "use letters, digits and - _ . : / (no spaces), starting with a letter or digit"
    return msg, None


def _fields_at(model: type[BaseModel], loc: Loc) -> set[str]:
    """Names of the keys allowed at ``loc`` inside ``model`` (for 'did you mean')."""
    models: list[type[BaseModel]] = [model]
    for comp in loc:
        if isinstance(comp, int):
            continue
        nxt: list[type[BaseModel]] = []
        for m in models:
            field = m.model_fields.get(comp)
            if field is not None:
                nxt.extend(_models_in(field.annotation))
            else:  # a union tag such as 'modbus': pick the member whose tag matches
                nxt.extend(x for x in _models_in(m) if _tag(x) == comp)
        models = nxt or models
    return {name for m in models for name in m.model_fields}


def _tags_at(model: type[BaseModel], loc: Loc) -> set[str]:
    """The tags (``type`` values) of the union members a field at ``loc`` may hold."""
    models: list[type[BaseModel]] = [model]
    for comp in loc:
        if isinstance(comp, int):
            continue
        fields = [m.model_fields[comp] for m in models if comp in m.model_fields]
        models = [x for f in fields for x in _models_in(f.annotation)]
    return {t for m in models if (t := _tag(m)) is not None}


def _tag(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    return str(field.default) if field is not None else None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()) or ():
        out.extend(_models_in(arg))
    origin = getattr(annotation, "__origin__", None)
    if origin is not None and not out:
        out.extend(_models_in(origin))
    return out
