"""Building blocks of neuroprobe's typed configs (pydantic v2) and the one formatter of their errors.

Every config model derives from :class:`StrictModel`: unknown keys are errors (``extra="forbid"``),
values are not coerced across types (``"no"`` is not a boolean, ``1.5`` is not an integer, ``true``
is not a number), floats must be finite. :func:`validation_message` turns a pydantic
``ValidationError`` into neuroprobe's one-line error::

    FILE: 'rule.noise_std' = -1: must be > 0
"""
from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from ..errors import ConfigError

__all__ = ["StrictModel", "Finite", "PosFloat", "NonNegFloat", "UnitFloat", "PosInt", "NonNegInt", "Size", "Seed",
           "StrictBool", "StrictInt", "validation_message", "validate_or_raise", "MAX_SIZE", "MAX_INT"]

MAX_INT = 2**62          # integers beyond this overflow int64 arithmetic downstream
MAX_SIZE = 1_000_000     # layer/population sizes, branches, batch: beyond this a run cannot fit in memory


def _finite(x: float) -> float:
    if not math.isfinite(x):
        raise ValueError("must be finite")
    if abs(x) > 3.0e38:
        raise ValueError("too large (must fit a float32, |x| <= 3e38)")
    return float(x)


# A float that also accepts integers (TOML users write ``lr = 1``) but never booleans or strings.
Finite = Annotated[float, Field(strict=True), AfterValidator(_finite)]
PosFloat = Annotated[Finite, Field(gt=0)]
NonNegFloat = Annotated[Finite, Field(ge=0)]
UnitFloat = Annotated[Finite, Field(gt=0, le=1)]
PosInt = Annotated[StrictInt, Field(ge=1, le=MAX_INT)]
NonNegInt = Annotated[StrictInt, Field(ge=0, le=MAX_INT)]
Size = Annotated[StrictInt, Field(ge=1, le=MAX_SIZE)]
Seed = Annotated[StrictInt, Field(ge=0, le=2**31 - 1)]


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values keep their TOML types."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=False, validate_default=True,
                              use_attribute_docstrings=True, populate_by_name=False)


_TEMPLATES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "int_parsing": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be finite",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "missing": "missing (required)",
    "too_short": "must have at least {min_length} entries",
    "too_long": "must have at most {max_length} entries",
    "string_too_short": "must have at least {min_length} characters",
    "string_too_long": "must have at most {max_length} characters",
    "string_pattern_mismatch": "must match {pattern}",
}


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _path(loc: tuple, tags: set[str]) -> str:
    """('rule', 'nrl', 'noise_std') -> 'rule.noise_std' (drops union tags), list indices as [i]."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in tags or (i > 0 and isinstance(part, str) and (
                part.startswith(("function-", "json-or-python", "literal[", "constrained-")) or "[" in part
                or part in _TYPE_TAGS or part[:1].isupper())):
            continue  # union members and validator wrappers pydantic puts in the location
        else:
            out += ("." if out else "") + str(part)
    return out


def _describe(err: dict) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "literal_error":
        return f"allowed: {ctx.get('expected', '')}".replace("'", "'")
    if kind == "union_tag_invalid":
        return f"unknown; allowed: {ctx.get('expected_tags', '')}"
    if kind == "union_tag_not_found":
        return f"missing key '{ctx.get('discriminator', 'name').strip(chr(39))}'"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in ("value_error", "assertion_error"):
        msg = str(ctx.get("error", err["msg"]))
        return msg
    if kind in _TEMPLATES:
        try:
            return _TEMPLATES[kind].format(**ctx)
        except (KeyError, IndexError):
            return _TEMPLATES[kind]
    return err["msg"][:1].lower() + err["msg"][1:]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validation_message(src: str, exc: ValidationError, tags: set[str] | None = None) -> str:
    """One line naming the source, the key, the value and what is allowed (the first error)."""
    err = exc.errors(include_url=False)[0]
    path = _path(tuple(err["loc"]), tags or set())
    what = _describe(err)
    if err["type"] == "extra_forbidden":
        allowed = err.get("ctx", {}).get("allowed")
        return f"{src}: unknown key '{path}'" + (f"; allowed: {allowed}" if allowed else "")
    if err["type"] == "union_tag_invalid":
        ctx = err.get("ctx") or {}
        key = str(ctx.get("discriminator", "name")).strip("'")
        return f"{src}: '{path}.{key}' = {_show(ctx.get('tag'))}: unknown; allowed: {ctx.get('expected_tags', '')}"
    if err["type"] in ("value_error", "assertion_error") and isinstance(err.get("input"), dict):
        return f"{src}: {what}"  # a check across keys: its message names them
    if err["type"] in ("missing", "union_tag_not_found") or not path:
        return f"{src}: '{path}' {what}" if path else f"{src}: {what}"
    return f"{src}: '{path}' = {_show(err.get('input'))}: {what}"


def validate_or_raise(model: type[BaseModel], data: Any, src: str, tags: set[str] | None = None) -> BaseModel:
    """``model.model_validate(data)`` with neuroprobe's one-line :class:`ConfigError` on failure."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(validation_message(src, e, tags)) from None
