"""Read YAML files into validated models, turning every problem into InputError(file, field, reason)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from simfactory.errors import InputError, InputErrors

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML file that must hold a mapping; unreadable or malformed files raise InputError."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(name, "", "file not found") from None
    except IsADirectoryError:
        raise InputError(name, "", "is a directory, expected a YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(name, "", f"cannot read file ({exc.__class__.__name__}: {exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(name, where, f"invalid YAML: {problem}") from None
    if data is None:
        raise InputError(name, "", "file is empty")
    if not isinstance(data, dict):
        raise InputError(name, "", f"expected a mapping at the top level, got {type(data).__name__}")
    return data


def format_loc(loc: tuple[Any, ...]) -> str:
    """('pools', 0, 'count') -> 'pools[0].count'; drops pydantic's union-tag segments."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _errors_from(exc: ValidationError, file: str, prefix: str = "") -> InputErrors:
    errors = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        # Discriminated unions add the tag value ('poisson', 'lognormal'...) to the path; drop it
        # when it is the union member name so paths read like the YAML the user wrote.
        ctx_tag = err.get("ctx", {}).get("discriminator") if err.get("ctx") else None
        field = format_loc(loc)
        if prefix:
            field = f"{prefix}.{field}" if field else prefix
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif ctx_tag is not None:
            msg = f"{msg}"
        if err["type"] not in ("missing", "extra_forbidden") and "input" in err and not isinstance(
            err["input"], (dict, list)
        ):
            msg = f"{msg} (got {err['input']!r})"
        errors.append(InputError(file, field, msg))
    return InputErrors(errors)


def validate(model: type[M], data: dict[str, Any], file: str, prefix: str = "") -> M:
    """Validate a mapping into `model`; raise InputErrors listing every problem with its field path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _errors_from(exc, file, prefix) from None


def load_model_file(model: type[M], path: Path) -> M:
    return validate(model, read_yaml(path), str(path))
