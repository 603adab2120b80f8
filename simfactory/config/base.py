"""The base of every input schema: unknown fields refused, values immutable, types strict, numbers bounded.

- Strict types: a string or a bool where a number is asked (`seed: "42"`, `count: true`) is a mistake pydantic's
  lax mode would coerce silently (to 42, to 1); strict mode refuses it. An int still fills a float field.
- One exception: YAML 1.1 (PyYAML) reads `1e-9` or `2.5e3` as text (its floats need a dot and a signed exponent);
  a float field takes such text as the number it spells, so scientific notation keeps working.
- Floats must be finite (`allow_inf_nan=False`), and every number a file gives lies within MAX_NUMBER (floats)
  or MAX_INT (ints): beyond them arithmetic overflows or int64 columns wrap (see simfactory.config.limits).
- A subnormal float (nonzero, below 2.2e-308) is refused: its reciprocal overflows, and no quantity is meant
  that close to 0 without being 0. -0.0 is read as 0.0 (numpy refuses a negative-signed zero as a scale).
"""

from __future__ import annotations

import math
import re
import sys
import types
import typing
from functools import lru_cache
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, model_validator

from simfactory.config.limits import MAX_INT, MAX_NUMBER

# what YAML 1.2 reads as a float but PyYAML leaves as text: an exponent without a dot or without a sign
_SCIENTIFIC = re.compile(r"[-+]?(?:\d[\d_]*\.?\d*|\.\d+)[eE][-+]?\d+")

_Kind = tuple[str, str]  # (number type "float" | "int", shape "scalar" | "list" | "dict")


def _number_kind(tp: Any) -> str | None:
    """'float' or 'int' when the annotation takes a number (and no text), else None."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _number_kind(typing.get_args(tp)[0])
    if origin in (Union, types.UnionType):
        kinds = set()
        for arg in typing.get_args(tp):
            if arg is type(None) or typing.get_origin(arg) is Literal:
                continue
            k = _number_kind(arg)
            if k is None:
                return None  # e.g. `str | float`: text is meant, leave it alone
            kinds.add(k)
        return "float" if "float" in kinds else (kinds.pop() if kinds else None)
    if tp is bool:
        return None
    if tp is float:
        return "float"
    if tp is int:
        return "int"
    return None


def _is_text(tp: Any) -> bool:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp is str


def _field_kind(tp: Any) -> _Kind | None:
    """The number type and shape of a field's values (a number, a list of them, a mapping to them), or None."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _field_kind(typing.get_args(tp)[0])
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if any(_is_text(a) for a in args):
            return None  # text is meant too: leave its values alone
        found = [k for a in args for k in [_field_kind(a)] if k is not None]
        return found[0] if found else None
    if origin in (list, typing.List):
        k = _number_kind(typing.get_args(tp)[0]) if typing.get_args(tp) else None
        return (k, "list") if k else None
    if origin in (dict, typing.Dict):
        args = typing.get_args(tp)
        k = _number_kind(args[1]) if len(args) == 2 else None
        return (k, "dict") if k else None
    k = _number_kind(tp)
    return (k, "scalar") if k else None


@lru_cache(maxsize=None)
def _numeric_fields(cls: type[BaseModel]) -> dict[str, _Kind]:
    """Input key (name and alias) -> kind, for the fields of `cls` that hold numbers."""
    out: dict[str, _Kind] = {}
    for name, info in cls.model_fields.items():
        kind = _field_kind(info.annotation)
        if kind is not None:
            out[name] = kind
            if info.alias:
                out[info.alias] = kind
    return out


def _check_number(v: Any, kind: str, where: str) -> Any:
    """The value with scientific-notation text read as a float; out-of-range numbers refused (ValueError)."""
    if kind == "float" and isinstance(v, str) and _SCIENTIFIC.fullmatch(v.strip()):
        v = float(v.strip().replace("_", ""))
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return v  # strict validation reports the wrong type
    if isinstance(v, float) and not math.isfinite(v):
        return v  # allow_inf_nan=False reports it
    if isinstance(v, float) and v == 0.0:
        return 0.0  # -0.0 too
    if isinstance(v, float) and abs(v) < sys.float_info.min:
        raise ValueError(f"{where}: {v:g} is a subnormal number, closer to 0 than any quantity here can be "
                         "(write 0, or a value at least 1e-300)")
    if kind == "int" and isinstance(v, int) and abs(v) > MAX_INT:
        raise ValueError(f"{where}: {v} is beyond {MAX_INT} (2^53), more than any count here can be")
    if abs(v) > MAX_NUMBER:
        raise ValueError(f"{where}: {v:g} is beyond {MAX_NUMBER:g}, more than any quantity here can be "
                         "(a unit slip, or a number meant as infinity?)")
    return v


class StrictModel(BaseModel):
    """Base of the schemas: extra="forbid", frozen, strict types, finite and bounded numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = _numeric_fields(cls)
        out = None
        for key, value in data.items():
            kind = fields.get(key) if isinstance(key, str) else None
            if kind is None:
                continue
            number, shape = kind
            if shape == "scalar":
                new: Any = _check_number(value, number, key)
            elif shape == "list" and isinstance(value, list):
                new = [_check_number(x, number, f"{key}[{i}]") for i, x in enumerate(value)]
            elif shape == "dict" and isinstance(value, dict):
                new = {k: _check_number(x, number, f"{key}.{k}") for k, x in value.items()}
            else:
                continue
            if new is not value:
                out = dict(data) if out is None else out
                out[key] = new
        return data if out is None else out
