"""The kernel-table file format: gzip-compressed JSON whose number curves are written as text.

A SKU's file holds ~400k numbers. Parsed as JSON arrays they took ~0.1 s before the first step of every run (and
of every sweep worker's first point); written as one space-separated string per curve (one per row of a 2-D table)
the JSON parses in ~5 ms and a record's numbers are read only when a deployment uses it. The text is the numbers
as JSON writes them, so a record decodes to exactly the values derive.py computed, and it stays readable.

Format 2 (`simfactory-kernel-tables/2`) packs every curve; format 1 (arrays) is still read, for tables a user
derived before.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

FORMAT = "simfactory-kernel-tables/2"
FORMATS = ("simfactory-kernel-tables/1", FORMAT)
CURVES = ("linear_ms", "allreduce_ms", "logits_ms", "ctx_attn_ms", "linear_ms_triton_moe")  # one number per grid point
TABLES = ("decode_attn_ms",)  # one row of numbers per batch size
SECTIONS = ("linear", "attention")


def _text(xs: list[float]) -> str:
    return " ".join(json.dumps(x) for x in xs)


def pack_record(rec: dict[str, Any]) -> dict[str, Any]:
    """The record with its curves as text (already-packed ones unchanged)."""
    out = dict(rec)
    for key in CURVES:
        if isinstance(out.get(key), list):
            out[key] = _text(out[key])
    for key in TABLES:
        rows = out.get(key)
        if isinstance(rows, list):
            out[key] = [_text(r) if isinstance(r, list) else r for r in rows]
    return out


def unpack_curve(value: Any) -> Any:
    """A curve as a list of numbers (text split and read; anything else is returned as it is, for the reader's
    checks to refuse)."""
    if isinstance(value, str):
        try:
            return [float(x) for x in value.split()]
        except ValueError:
            return value
    return value


def unpack_record(rec: dict[str, Any]) -> dict[str, Any]:
    """The record with its curves as lists of numbers (format 1 records unchanged)."""
    out = dict(rec)
    for key in CURVES:
        if key in out:
            out[key] = unpack_curve(out[key])
    for key in TABLES:
        rows = out.get(key)
        if isinstance(rows, list):
            out[key] = [unpack_curve(r) for r in rows]
    return out


def pack(doc: dict[str, Any]) -> dict[str, Any]:
    """A whole file's document as format 2."""
    return {**doc, "format": FORMAT, **{s: [pack_record(r) for r in doc.get(s, [])] for s in SECTIONS}}


def unpack(doc: dict[str, Any]) -> dict[str, Any]:
    """A whole file's document with every curve as numbers (what derive_moe.py merges into, what tests read)."""
    return {**doc, **{s: [unpack_record(r) for r in doc.get(s, [])] for s in SECTIONS}}


def read_doc(path: Path) -> dict[str, Any]:
    """A shipped (trusted) file, unpacked: for the derive scripts and tests; runs read files with hardware/kernels.py,
    which checks what it reads."""
    return unpack(json.loads(gzip.decompress(path.read_bytes())))


def write_doc(doc: dict[str, Any], path: Path) -> None:
    """Write the document as format 2 (mtime 0: the same tables give the same bytes)."""
    raw = json.dumps(pack(doc), separators=(",", ":")).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
