"""Open a user's input files safely: regular files only, of bounded size, never blocking, one line per problem.

A path, typed on the command line or written inside a scenario, can name anything. Opening a FIFO for reading
blocks until a writer appears (forever, in a CI job); /dev/zero or a symlink to it never ends; a folder, a
symlink loop, a name with a NUL byte or longer than the filesystem allows make the OS raise errors that are
not "file not found". Every reader calls `check_input_file` (or reads through `read_input_bytes`/`_text`)
first: anything but a regular file within its size cap is refused up front with
`InputError(file, field, reason)`, which the CLI prints as `error: FILE: FIELD: reason` and exit code 2.
The file is opened with O_NONBLOCK and checked again on the open descriptor (a file swapped for a FIFO between
the check and the open cannot block us), and read with a bound (a file that grows past its cap is refused).

Parsing helpers for the same class of problem live here too: JSON nested deeper than Python's recursion
allows (a RecursionError, never a traceback) and NaN/Infinity, which JSON does not have.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from simfactory.errors import InputError
from simfactory.paths import shipped_fallback

MiB = 1024**2
GiB = 1024**3
# Public traces: ShareGPT V3 (~0.7 GB), the Azure 2024 week-long traces and BurstGPT's full CSVs (each under
# ~1.5 GB) fit; a bigger file is a mistake (a disk image, a log) whose text would need several times its size
# in memory once split into rows.
MAX_TRACE_BYTES = 2 * GiB
# Scenario, workload, profile, price-book, grid, plan-space, tolerance and catalogue YAML: the largest shipped
# one is ~20 KB; 64 MiB leaves room for generated files while keeping a parse (which needs ~20x the text in
# Python objects) far from exhausting memory.
MAX_YAML_BYTES = 64 * MiB
# Measurement tables (request tables of a trace replay can have as many rows as the trace) and serving-benchmark
# results (aiperf's per-request JSONL for millions of requests): as large as the traces they come from.
MAX_TABLE_BYTES = 2 * GiB
MAX_RESULTS_BYTES = 2 * GiB
# summary.json of a run and baseline JSON: kilobytes in practice (one number per metric).
MAX_SUMMARY_BYTES = 64 * MiB
_SHOWN_NAME_CHARS = 160  # a file name longer than this is shortened in messages (one line stays one line)
_READ_CHUNK_BYTES = 16 * MiB

_KINDS = (
    (stat.S_ISDIR, "is a directory, not a file"),
    (stat.S_ISFIFO, "is a named pipe (FIFO), not a regular file: reading it would wait for a writer"),
    (stat.S_ISCHR, "is a character device, not a regular file"),
    (stat.S_ISBLK, "is a block device, not a regular file"),
    (stat.S_ISSOCK, "is a socket, not a regular file"),
)


def shown_name(path: str | os.PathLike[str]) -> str:
    """The file name as a message shows it: control characters (NUL, newline) escaped, very long names cut in
    the middle, so the error stays one readable line."""
    text = str(path)
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(text) > _SHOWN_NAME_CHARS:
        keep = _SHOWN_NAME_CHARS // 2
        text = f"{text[:keep]}...({len(text) - 2 * keep} characters)...{text[-keep:]}"
    return text


def _size(n: int) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / MiB:.1f} MiB" if n >= MiB else f"{n:,} bytes"


def path_problem(exc: BaseException) -> str:
    """Why the OS refused a path, in words (for InputError's reason)."""
    if isinstance(exc, ValueError):  # os.stat / open: "embedded null byte"
        return "the file name contains a NUL byte"
    code = getattr(exc, "errno", None)
    if code == errno.ENOENT:
        return "file not found"
    if code == errno.ELOOP:
        return "symlink loop (a link that points back to itself)"
    if code == errno.ENAMETOOLONG:
        return "the file name is longer than the filesystem allows"
    if code == errno.ENOTDIR:
        return "a part of the path is a file, not a directory"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if code == errno.EISDIR:
        return "is a directory, not a file"
    return f"cannot read ({getattr(exc, 'strerror', None) or exc.__class__.__name__})"


def _stat(path: str | os.PathLike[str], field: str) -> os.stat_result:
    try:
        return os.stat(path)
    except (OSError, ValueError) as exc:
        reason = path_problem(exc)
        if isinstance(exc, FileNotFoundError):
            try:
                if stat.S_ISLNK(os.lstat(path).st_mode):
                    reason = f"is a symlink to a missing file ({shown_name(os.readlink(path))})"
            except (OSError, ValueError):
                pass
        raise InputError(shown_name(path), field, reason) from None


def _check_stat(st: os.stat_result, path: str | os.PathLike[str], field: str, max_bytes: int, what: str) -> None:
    for test, reason in _KINDS:
        if test(st.st_mode):
            raise InputError(shown_name(path), field, reason)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(shown_name(path), field, "is not a regular file")
    if st.st_size > max_bytes:
        raise InputError(shown_name(path), field, f"is {_size(st.st_size)}, more than the {_size(max_bytes)} a {what} "
                                                  "may have")


def check_input_file(path: str | os.PathLike[str], field: str = "", max_bytes: int = MAX_YAML_BYTES,
                     what: str = "file") -> Path:
    """`path` if it names a regular file (symlinks followed) of at most `max_bytes`; else InputError naming it:
    missing, a directory, a FIFO, a device, a socket, a symlink loop or to a missing file, a NUL byte or an
    over-long name, permission denied, too large. Never opens the file, so it never blocks."""
    _check_stat(_stat(path, field), path, field, max_bytes, what)
    return Path(path)


def is_input_file(path: str | os.PathLike[str]) -> bool:
    """Whether a looked-up candidate exists at all (anything there, even a FIFO or a broken link): a lookup
    that finds one must then refuse it with `check_input_file`, never skip it in favour of a shipped file."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True  # a name the OS refuses: check_input_file says why
    return True


def is_lookup_dir(path: str | os.PathLike[str], name: str) -> bool:
    """Whether a looked-up folder (a user's workloads/ or hardware_profiles/ beside a scenario) is there to
    search. Nothing there: False. Something that is not a folder (a file, a FIFO, a symlink loop): InputError,
    so a broken folder never silently loses to the shipped one."""
    if not is_input_file(path):
        return False
    try:
        if stat.S_ISDIR(os.stat(path).st_mode):
            return True
        reason = "is not a directory"
    except (OSError, ValueError) as exc:
        reason = path_problem(exc)
    raise InputError(shown_name(path), "", f"{reason}; simfactory looks for its {name} directory here")


def read_input_bytes(path: str | os.PathLike[str], field: str = "", max_bytes: int = MAX_YAML_BYTES,
                     what: str = "file") -> bytes:
    """The content of a regular file of at most `max_bytes` (see check_input_file), read without blocking. A
    relative path into a shipped folder that is not here reads the shipped file (paths.shipped_fallback)."""
    path = shipped_fallback(path)
    check_input_file(path, field, max_bytes, what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as exc:
        raise InputError(shown_name(path), field, path_problem(exc)) from None
    try:
        _check_stat(os.fstat(fd), path, field, max_bytes, what)  # the file opened is the file checked
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(_READ_CHUNK_BYTES, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise InputError(shown_name(path), field, f"grew past the {_size(max_bytes)} a {what} may have "
                                                          "while being read")
        return b"".join(chunks)
    except OSError as exc:
        raise InputError(shown_name(path), field, path_problem(exc)) from None
    finally:
        os.close(fd)


def read_input_text(path: str | os.PathLike[str], field: str = "", max_bytes: int = MAX_YAML_BYTES,
                    what: str = "file", encoding: str = "utf-8-sig") -> str:
    """read_input_bytes decoded (UTF-8, a leading byte-order mark dropped); undecodable bytes are one line."""
    raw = read_input_bytes(path, field, max_bytes, what)
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputError(shown_name(path), field, f"not {encoding.removesuffix('-sig').upper()} text "
                                                  f"(byte {exc.start}: {exc.reason})") from None


class _NotJsonNumber(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotJsonNumber(f"{name} is not a JSON number")


def parse_json(text: str | bytes, file: str, field: str = "", allow_nan: bool = True) -> Any:
    """json.loads that cannot raise a traceback for nesting: a document nested deeper than Python's recursion
    limit allows is one InputError. allow_nan=False refuses NaN/Infinity/-Infinity (Python writes them, JSON
    has no such numbers). JSONDecodeError (and the ValueError of an integer over 4,300 digits) is left to the
    caller, which names the position its own way."""
    try:
        if allow_nan:
            return json.loads(text)
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise InputError(shown_name(file), field, "JSON nested too deeply to read") from None
    except _NotJsonNumber as exc:
        raise InputError(shown_name(file), field, f"{exc} (NaN and Infinity are not valid JSON)") from None


def load_json_document(text: str | bytes, file: str, field: str = "", allow_nan: bool = True) -> Any:
    """parse_json whose every failure is one InputError: a syntax error names its line (the field, when none is
    given) and column; an integer of more than 4,300 digits (Python's int-to-text guard) its reason."""
    try:
        return parse_json(text, file, field, allow_nan)
    except json.JSONDecodeError as exc:
        raise InputError(shown_name(file), field or f"line {exc.lineno}",
                         f"invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except ValueError as exc:
        raise InputError(shown_name(file), field, f"invalid JSON ({str(exc)[:120]})") from None


def first_non_finite(node: Any, prefix: str = "") -> str | None:
    """The dotted path of the first NaN or infinite number in a parsed JSON document, else None (iterative:
    a deep document cannot exhaust the stack)."""
    stack: list[tuple[Any, str]] = [(node, prefix)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return where or "(top level)"
        if isinstance(value, dict):
            stack.extend((v, f"{where}.{k}" if where else str(k)) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(value))))
    return None


__all__ = [
    "MAX_TRACE_BYTES", "MAX_YAML_BYTES", "MAX_TABLE_BYTES", "MAX_RESULTS_BYTES", "MAX_SUMMARY_BYTES",
    "check_input_file", "is_input_file", "is_lookup_dir", "read_input_bytes", "read_input_text", "parse_json", "first_non_finite",
    "path_problem", "shown_name",
]
