"""Read YAML files into validated models, turning every problem into InputError(file, field, reason)."""

from __future__ import annotations

import re

import hashlib
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from simfactory.errors import InputError, InputErrors
from simfactory.inputs import MAX_YAML_BYTES, read_input_bytes

M = TypeVar("M", bound=BaseModel)

_reads: ContextVar[dict[str, str] | None] = ContextVar("simfactory_reads", default=None)
# libyaml's safe loader when PyYAML was built with it (about 10x faster; the same documents and errors)
_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class UniqueKeyLoader(_BASE_LOADER):  # type: ignore[misc, valid-type]
    """The safe loader, refusing a mapping that names a key twice: YAML itself keeps the last one silently, so
    a second `horizon_s:` (or an injected `seed:`) would quietly win over the first. Each mapping's own keys are
    checked once, before merge keys (`<<: *anchor`) are flattened into it (flattening rewrites the node)."""

    def flatten_mapping(self, node: Any) -> None:
        checked = self.__dict__.setdefault("_own_keys_checked", set())
        if id(node) not in checked:
            checked.add(id(node))
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=False)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: the base constructor reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        super().flatten_mapping(node)


SAFE_LOADER: Any = UniqueKeyLoader


@contextmanager
def recording_reads() -> Iterator[dict[str, str]]:
    """Collect {path: sha256} of every YAML file read inside the block (provenance of a run)."""
    reads: dict[str, str] = {}
    token = _reads.set(reads)
    try:
        yield reads
    finally:
        _reads.reset(token)


def _read_bytes(path: Path) -> bytes:
    """A regular YAML file of bounded size: a FIFO, device, folder, symlink loop or bad name is one InputError
    (simfactory.inputs), never a blocked read or a traceback."""
    return read_input_bytes(path, "", MAX_YAML_BYTES, "YAML file")


def record_read(path: Path, sha: str) -> None:
    """Add a file read outside this module (kernel tables) to the run's provenance."""
    _record(path, sha)


def _record(path: Path, sha: str) -> None:
    reads = _reads.get()
    if reads is not None:
        reads[str(path)] = sha


# libyaml's composer recurses in C once per nesting level: ~100,000 nested brackets overflow the C stack (a
# segfault, no exception to catch). A scenario nests ~6 levels, an agent workload's step tree ~3 per sub-step.
MAX_YAML_DEPTH = 100
# Aliases are shared, not copied, when loaded, but validation walks every use: 9 levels of 10 aliases each
# ("billion laughs") expand to 10^9 values and never finish. The largest shipped file has ~1,000 values.
MAX_YAML_VALUES = 1_000_000


def _check_shape(text: str, name: str) -> None:
    """Refuse a document nested deeper than MAX_YAML_DEPTH or whose aliases expand to more than MAX_YAML_VALUES
    values, from libyaml's event stream (flat, no recursion) before anything is composed. Syntax errors are left
    to the loader, which reports them with their position."""
    stack: list[list[Any]] = [[None, 0]]  # per open collection: [its anchor, values inside it so far]
    sizes: dict[str, int] = {}  # values an anchored node expands to
    total = 0
    try:
        for event in yaml.parse(text, Loader=_BASE_LOADER):
            if isinstance(event, yaml.AliasEvent):
                grow = sizes.get(event.anchor, 1)
            elif isinstance(event, yaml.ScalarEvent):
                grow = 1
                if event.anchor:
                    sizes[event.anchor] = 1
            elif isinstance(event, yaml.CollectionStartEvent):
                if len(stack) > MAX_YAML_DEPTH:
                    raise InputError(name, f"line {event.start_mark.line + 1}",
                                     f"nested more than {MAX_YAML_DEPTH} levels deep")
                stack.append([event.anchor, 1])  # the collection itself; its values are added as they come
                total += 1
                continue
            elif isinstance(event, yaml.CollectionEndEvent) and len(stack) > 1:
                anchor, inside = stack.pop()
                if anchor:
                    sizes[anchor] = inside
                stack[-1][1] += inside
                continue
            else:
                continue
            stack[-1][1] += grow
            total += grow
            if total > MAX_YAML_VALUES:
                raise InputError(name, f"line {event.start_mark.line + 1}",
                                 f"aliases expand the document to more than {MAX_YAML_VALUES:,} values")
    except yaml.YAMLError as exc:
        # libyaml 0.2.6 (PyYAML 6.0.4's wheels) stops at 1,000 levels itself, scanning a flow collection's brackets
        # before this loop sees the 101st: deeper than MAX_YAML_DEPTH all the same, and said the same way
        if "nesting depth" in str(getattr(exc, "problem", "")):
            mark = getattr(exc, "problem_mark", None)
            raise InputError(name, f"line {mark.line + 1}" if mark else "",
                             f"nested more than {MAX_YAML_DEPTH} levels deep") from None
        return


def _parse(raw: bytes, name: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(name, "", f"cannot read file ({exc.__class__.__name__}: {exc})") from None
    _check_shape(text, name)
    try:
        data = yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(name, where, f"invalid YAML: {problem}") from None
    except (ValueError, OverflowError, RecursionError) as exc:  # an integer past Python's 4,300-digit guard
        raise InputError(name, "", f"invalid YAML: {' '.join(str(exc).split())[:160]}") from None
    if data is None:
        raise InputError(name, "", "file is empty")
    if not isinstance(data, dict):
        raise InputError(name, "", f"expected a mapping at the top level, got {type(data).__name__}")
    return data


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML file that must hold a mapping; unreadable or malformed files raise InputError."""
    raw = _read_bytes(path)
    _record(path, hashlib.sha256(raw).hexdigest())
    return _parse(raw, str(path))


def format_loc(loc: tuple[Any, ...], data: Any = None) -> str:
    """('pools', 0, 'count') -> 'pools[0].count'.

    Tagged unions add the tag value ('poisson', 'lognormal', ...) to pydantic's path; walking the input
    data finds those segments (they are not keys of the YAML) and drops them, so the path reads like the file.
    """
    out = ""
    node = data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part not in node and part in node.values():
            continue  # a union tag (the value of the node's `type` / `kind` field), not a key the user wrote
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return out


def _errors_from(exc: ValidationError, data: Any, file: str) -> InputErrors:
    errors = []
    for err in exc.errors(include_url=False):
        field = format_loc(tuple(err["loc"]), data)
        kind = err["type"]
        ctx = err.get("ctx") or {}
        if kind == "extra_forbidden":
            msg = "unknown field"
        elif kind == "missing":
            msg = "required field is missing"
        elif kind == "union_tag_invalid":
            tag_field = str(ctx.get("discriminator", "")).strip("'")
            field = f"{field}.{tag_field}" if field else tag_field
            msg = f"unknown value {ctx.get('tag')!r} (expected one of {ctx.get('expected_tags')})"
        elif kind == "union_tag_not_found":
            tag_field = str(ctx.get("discriminator", "")).strip("'")
            field = f"{field}.{tag_field}" if field else tag_field
            msg = "required field is missing (it selects the kind of entry)"
        elif kind == "value_error":
            # model validators raise "sub.path: reason": fold the sub-path into the field path
            msg = str(err["msg"]).removeprefix("Value error, ")
            head, sep, rest = msg.partition(": ")
            if sep and re.fullmatch(r"[A-Za-z_][\w.\[\]]*", head):
                field, msg = (f"{field}.{head}" if field else head), rest
        else:
            msg = err["msg"]
            if not isinstance(err.get("input"), (dict, list)) and "input" in err:
                msg = f"{msg} (got {err['input']!r})"
        errors.append(InputError(file, field, msg))
    return InputErrors(errors)


def validate(model: type[M], data: dict[str, Any], file: str) -> M:
    """Validate a mapping into `model`; raise InputErrors listing every problem with its field path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _errors_from(exc, data, file) from None


def validate_union(adapter: TypeAdapter[Any], data: dict[str, Any], file: str) -> Any:
    """Like validate, for a tagged union of models (e.g. the workload kinds)."""
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise _errors_from(exc, data, file) from None


_model_cache: dict[tuple[Any, ...], Any] = {}
MODEL_CACHE_SIZE = 256


def load_model_file(model: type[M], path: Path) -> M:
    """Read and validate. The validated (frozen) model is cached by file content, so a sweep resolving
    thousands of points parses the shared profiles and price book once per process."""
    raw = _read_bytes(path)
    sha = hashlib.sha256(raw).hexdigest()
    _record(path, sha)
    key = (model, str(path), sha)
    if key not in _model_cache:
        if len(_model_cache) >= MODEL_CACHE_SIZE:
            _model_cache.pop(next(iter(_model_cache)))
        _model_cache[key] = validate(model, _parse(raw, str(path)), str(path))
    return _model_cache[key]  # type: ignore[no-any-return]
