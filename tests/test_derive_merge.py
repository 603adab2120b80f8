"""calibrate/kernels/derive.py --merge: a new model's kernel records go into a shipped file without touching any
other record, the MoE section or the header, and into anomalies.csv without rewriting other rows. The merge is plain
document surgery (no SDK), so it is tested on small documents."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

from simfactory.hardware.kernel_file import read_doc, write_doc

ROOT = Path(__file__).resolve().parents[1]


def derive_module():
    sys.path.insert(0, str(ROOT / "calibrate" / "kernels"))
    spec = importlib.util.spec_from_file_location("derive_under_test", ROOT / "calibrate" / "kernels" / "derive.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


HEADER = {"format": "simfactory-kernel-tables/2", "sdk": {"version": "0.12.0"}, "grids": {"tokens": [1.0, 2.0]},
          "frameworks": {"vllm": "0.24.0", "sglang": "0.5.14"}, "generated": "2026-12-01", "source": "s"}


def lin(model: str, fw: str, x: float) -> dict:
    return {"model": model, "framework": fw, "tp": 1, "dtype": "bf16", "linear_ms": [x, x + 1],
            "allreduce_ms": [0.0, 0.0], "logits_ms": [0.1, 0.2]}


def att(model: str, fw: str, x: float) -> dict:
    return {"model": model, "framework": fw, "tp": 1, "kv_dtype": "bf16", "decode_attn_ms": [[x, x]],
            "ctx_attn_ms": [x, x]}


def existing_doc() -> dict:
    return {**HEADER, "models": {"a": {"layers": 1}, "b": {"layers": 2}},
            "linear": [lin("a", "vllm", 1.0), lin("b", "vllm", 2.0), lin("b", "sglang", 3.0)],
            "attention": [att("a", "vllm", 1.0), att("b", "vllm", 2.0), att("b", "sglang", 3.0)],
            "refused": ["b vllm TP8: does not fit", "b sglang TP8: does not fit", "b vllm: no queryable version",
                        "no config.json for c: add it", "a vllm bf16 TP2: Err"],
            "moe": {"refused": ["x"]}}


def fresh_doc() -> dict:
    return {**HEADER, "generated": "2026-12-06", "frameworks": {"vllm": "0.24.0"},
            "models": {"b": {"layers": 2, "new": True}, "c": {"layers": 3}},
            "linear": [lin("b", "vllm", 9.0), lin("c", "vllm", 7.0)],
            "attention": [att("b", "vllm", 9.0), att("c", "vllm", 7.0)], "refused": ["c vllm TP4: does not fit"]}


def test_a_merge_replaces_only_the_named_models_records_under_the_named_frameworks(tmp_path):
    derive = derive_module()
    path = tmp_path / "x.json.gz"
    write_doc(existing_doc(), path)
    before = read_doc(path)
    out = derive.merge_into(path, fresh_doc(), {"b", "c"}, {"vllm"})
    keys = [(r["model"], r["framework"], r["linear_ms"][0]) for r in out["linear"]]
    assert keys == [("a", "vllm", 1.0), ("b", "sglang", 3.0), ("b", "vllm", 9.0), ("c", "vllm", 7.0)]
    assert [(r["model"], r["framework"], r["ctx_attn_ms"][0]) for r in out["attention"]] == [
        ("a", "vllm", 1.0), ("b", "sglang", 3.0), ("b", "vllm", 9.0), ("c", "vllm", 7.0)]
    kept = [r for r in out["linear"] if (r["model"], r["framework"]) in {("a", "vllm"), ("b", "sglang")}]
    assert kept == [before["linear"][0], before["linear"][2]]  # other records exactly as they were
    assert out["models"] == {"a": {"layers": 1}, "b": {"layers": 2, "new": True}, "c": {"layers": 3}}
    # refusals of the re-derived (model, framework) pairs and of c's missing config go; the others stay
    assert out["refused"] == ["b sglang TP8: does not fit", "a vllm bf16 TP2: Err", "c vllm TP4: does not fit"]
    assert out["moe"] == {"refused": ["x"]} and out["generated"] == "2026-12-01" and out["source"] == "s"
    assert out["merged"] == [{"models": ["b", "c"], "frameworks": ["vllm"], "generated": "2026-12-06"}]
    write_doc(out, path)
    again = derive.merge_into(path, fresh_doc(), {"b", "c"}, {"vllm"})  # merging twice changes nothing but the log
    assert again["linear"] == read_doc(path)["linear"] and len(again["merged"]) == 2


@pytest.mark.parametrize("key,value", [("sdk", {"version": "0.13.0"}), ("grids", {"tokens": [1.0]}),
                                       ("frameworks", {"vllm": "0.25.0"})])
def test_a_merge_from_another_sdk_or_grid_is_refused(tmp_path, key, value):
    derive = derive_module()
    path = tmp_path / "x.json.gz"
    write_doc(existing_doc(), path)
    with pytest.raises(SystemExit, match=key):
        derive.merge_into(path, {**fresh_doc(), key: value}, {"b"}, {"vllm"})


def test_merged_anomalies_keep_every_other_row(tmp_path):
    derive = derive_module()
    path = tmp_path / "anomalies.csv"
    fields = ["sku", "model", "framework", "version", "tp", "dtype", "table", "points", "at", "sdk_ms", "forced_ms",
              "rel_change"]
    rows = [dict.fromkeys(fields, "") | {"sku": s, "model": m, "sdk_ms": "1", "forced_ms": "2", "rel_change": "+1.0"}
            for s, m in [("h100-sxm", "a"), ("h100-sxm", "b"), ("b200", "b")]]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        w.writerows(rows)
    fresh = [{"sku": "h100-sxm", "model": "b", "sdk_ms": 5.0, "forced_ms": 6.0, "rel_change": 0.2}]
    out = derive.merge_anomalies(path, fresh, {"h100-sxm"}, {"b"})
    assert [(r["sku"], r["model"]) for r in out] == [("h100-sxm", "a"), ("b200", "b"), ("h100-sxm", "b")]
    assert out[0]["sdk_ms"] == 1.0 and out[-1]["sdk_ms"] == 5.0
    assert derive.merge_anomalies(tmp_path / "none.csv", fresh, {"h100-sxm"}, {"b"}) == fresh
