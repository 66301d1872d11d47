"""Problems found while validating, before they are tied to a file and line."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
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
    """Turn pydantic's errors into problems with readable messages and hints."""
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
            msg = str(err["msg"]).removeprefix("Value error, ")
            out.append(Problem(loc=prefix + loc, message=msg, hint=_hint_for(kind, err)))
    return out


def _hint_for(kind: str, err: Any) -> str | None:
    ctx = err.get("ctx") or {}
    if kind == "string_pattern_mismatch":
        return "use letters, digits and - _ . : / (no spaces), starting with a letter or digit"
    if kind == "string_type" and isinstance(err.get("input"), int | float):
        return "quote it, e.g. id: '01'; unquoted, YAML reads it as a number"
    if kind in ("enum", "literal_error") and "expected" in ctx:
        return f"valid values: {ctx['expected']}"
    if kind == "union_tag_invalid" and "expected_tags" in ctx:
        return f"valid types: {ctx['expected_tags']}"
    return None


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
