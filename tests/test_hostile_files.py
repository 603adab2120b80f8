"""Hostile input files: never lose data, never hang, never crash. Every case is one `error: FILE: FIELD: reason`
line and exit code 2 (or, for a bad row in an otherwise usable trace, a warning naming its line), quickly.

Special files (a FIFO blocks whoever opens it for reading; /dev/zero never ends; a symlink loop or an over-long
name makes the OS raise), huge numbers, deep nesting, NaN/Infinity and wide timestamps, given on the command
line or found at a path a scenario names or simfactory looks up."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import scenario_doc, write_case
from typer.testing import CliRunner

from simfactory.cli import app
from simfactory.inputs import MAX_TRACE_BYTES, MAX_YAML_BYTES
from simfactory.paths import DEFAULT_SCENARIO
from simfactory.traces.parse import MAX_TRACE_SPAN_S, MAX_TRACE_TOKENS, Trace
from simfactory.traces.stats import MAX_RATE_BUCKETS, trace_stats

HUNG_AFTER_S = 30  # every case below answers in well under a second; a blocked open would never answer
BURSTGPT_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
DEEP = 100_000  # nesting levels: past Python's recursion limit, and past the C stack for libyaml's composer


def invoke(*args: object):
    """Run the CLI in a daemon thread, failing (not hanging) if it has not answered in HUNG_AFTER_S."""
    box: dict[str, object] = {}

    def target() -> None:
        box["result"] = CliRunner().invoke(app, [str(a) for a in args])

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(HUNG_AFTER_S)
    assert not worker.is_alive(), f"simfactory {' '.join(map(str, args))} hung"
    return box["result"]


def one_error(res, *needles: str) -> str:
    """Exit 2, no traceback, exactly one `error: ` line, holding every needle; returns that line."""
    assert "Traceback" not in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2, (res.exit_code, res.output)
    errors = [line for line in res.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, res.output
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    assert len(errors[0]) < 1000, errors[0]
    return errors[0]


def warnings_of(res) -> list[str]:
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    return [line for line in res.output.splitlines() if line.startswith("warning: ")]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------------------
# 5. token counts: whole numbers from 1 to MAX_TRACE_TOKENS in every reader, else a bad row naming its line


TOKEN_CASES = [  # (format, file name, text with rows 0 tokens / 10M + 1 / one good row, the bad rows' labels)
    ("azure", "a.csv", AZURE_HEADER + "2023-11-16 18:15:46.68,0,44\n2023-11-16 18:15:47.0,10000001,5\n"
                                      "2023-11-16 18:15:48.0,300,20\n", ["line 2", "line 3"]),
    ("burstgpt", "b.csv", BURSTGPT_HEADER + "5,ChatGPT,472,0,490,x\n6,ChatGPT,10000001,3,4,x\n7,GPT-4,417,3,4,x\n",
     ["line 2", "line 3"]),
    ("mooncake", "m.jsonl", "\n".join(json.dumps(r) for r in [
        {"timestamp": 0, "input_length": 0, "output_length": 5},
        {"timestamp": 10, "input_length": 10_000_001, "output_length": 5},
        {"timestamp": 20, "input_length": 100, "output_length": 5, "hash_ids": [0, 2**62]}]), ["line 1", "line 2"]),
    ("vllm-bench", "v.json", json.dumps({"input_lens": [0, 10_000_001, 100], "output_lens": [1, 1, 1]}),
     ["request 0", "request 1"]),
]


@pytest.mark.parametrize("fmt, name, text, bad", TOKEN_CASES, ids=[c[0] for c in TOKEN_CASES])
def test_5_token_counts_are_positive_and_bounded_in_every_reader(tmp_path, fmt, name, text, bad):
    res = invoke("trace", "stats", write(tmp_path / name, text), "--format", fmt, "--json", tmp_path / "st.json")
    warned = warnings_of(res)
    assert len(warned) == 2 and all(label in w for label, w in zip(bad, warned)), res.output
    assert all(f"from 1 to {MAX_TRACE_TOKENS:,}" in w for w in warned)
    assert json.loads((tmp_path / "st.json").read_text())["requests"] == 1


def test_5_sharegpt_estimated_tokens_are_bounded_too(tmp_path, monkeypatch):
    monkeypatch.setattr("simfactory.traces.parse.MAX_TRACE_TOKENS", 100)  # 400+ characters: over the bound
    convs = [{"conversations": [{"from": "human", "value": "x" * 1000}, {"from": "gpt", "value": "y"}]},
             {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}]
    res = invoke("trace", "stats", write(tmp_path / "s.json", json.dumps(convs)), "--format", "sharegpt")
    warned = warnings_of(res)
    assert len(warned) == 1 and "conversation 0" in warned[0] and "from 1 to 100" in warned[0]


def test_5_a_trace_with_no_usable_row_is_refused(tmp_path):
    f = write(tmp_path / "b.csv", BURSTGPT_HEADER + "5,ChatGPT,0,18,490,x\n6,ChatGPT,-3,18,490,x\n")
    one_error(invoke("trace", "stats", f, "--format", "burstgpt"), str(f), "no usable rows", "line 2")


# ------------------------------------------------------------------------------------------------------------
# 6. token counts past 2^63: bad rows, never an OverflowError (trace stats and run --trace-file)


def test_6_burstgpt_counts_past_int64_are_bad_rows(tmp_path):
    f = write(tmp_path / "b.csv", BURSTGPT_HEADER + "5,ChatGPT,9300000000000000000,18,490,x\n"
                                                    "6,ChatGPT,1e300,18,490,x\n7,ChatGPT,10,18,28,x\n")
    warned = warnings_of(invoke("trace", "stats", f, "--format", "burstgpt"))
    assert [w.split(": ")[2] for w in warned] == ["line 2", "line 3"]
    res = invoke("run", "--trace-file", f, "--trace-format", "burstgpt", "--out", tmp_path / "run", "--no-plots",
                 "--quiet")
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    assert "line 2" in res.output and "row skipped" in res.output


def test_6_vllm_bench_counts_past_int64_are_bad_rows_and_alone_refused(tmp_path):
    f = write(tmp_path / "v.json", json.dumps({"input_lens": [10**30, 100], "output_lens": [5, 5]}))
    warned = warnings_of(invoke("trace", "stats", f, "--format", "vllm-bench"))
    assert len(warned) == 1 and "request 0" in warned[0]
    only = write(tmp_path / "only.json", json.dumps({"input_lens": [10**30], "output_lens": [5]}))
    one_error(invoke("trace", "stats", only, "--format", "vllm-bench"), "no usable rows", "request 0")
    one_error(invoke("run", "--trace-file", only, "--trace-format", "vllm-bench", "--out", tmp_path / "run"),
              "no usable rows")
    assert not (tmp_path / "run").exists()
    digits = write(tmp_path / "digits.json", '{"input_lens": [' + "9" * 5000 + '], "output_lens": [5]}')
    one_error(invoke("trace", "stats", digits, "--format", "vllm-bench"), "invalid JSON")


def test_6_importers_bound_token_counts_too(tmp_path):
    f = write(tmp_path / "r.json", json.dumps({"input_lens": [10**30], "output_lens": [3], "ttfts": [0.1],
                                               "itls": [[0.1, 0.1]]}))
    one_error(invoke("calibrate", "import", f, "--format", "vllm-bench", "--out", tmp_path / "r.csv"),
              "input_lens[0]", "whole number of tokens")
    huge = write(tmp_path / "h.json", '{"input_lens": [' + "9" * 400 + '], "output_lens": [3], "ttfts": [0.1], '
                                      '"itls": [[0.1]]}')
    one_error(invoke("calibrate", "import", huge, "--format", "vllm-bench", "--out", tmp_path / "r.csv"),
              "input_lens[0]")
    assert not (tmp_path / "r.csv").exists()


# ------------------------------------------------------------------------------------------------------------
# 7. timestamps: azure's year 9999 is a bad row; rows far from the bulk never make a gigabyte rate array


def test_7_azure_year_9999_is_a_bad_row_not_31_gib(tmp_path):
    f = write(tmp_path / "a.csv", AZURE_HEADER + "2023-11-16 18:15:46.6805900,374,44\n"
                                                 "9999-11-16 18:15:50.9951690,396,109\n"
                                                 "2023-11-16 18:15:50.0000000,300,10\n")
    res = invoke("trace", "stats", f, "--format", "azure", "--json", tmp_path / "st.json")
    warned = warnings_of(res)
    assert len(warned) == 1 and "line 3" in warned[0] and "9999-11-16" in warned[0]
    stats = json.loads((tmp_path / "st.json").read_text())
    assert len(stats["rate_per_s_by_bucket"]["rates"]) == 1
    only = write(tmp_path / "only.csv", AZURE_HEADER + "9999-11-16 18:15:50.9951690,396,109\n")
    one_error(invoke("trace", "stats", only, "--format", "azure"), "no usable rows", "line 2")


def test_7_rows_outside_the_densest_span_are_bad_rows(tmp_path):
    rows = "".join(f"{t},ChatGPT,10,5,15,x\n" for t in (0, 60, 120, 9e10))  # the last: ~2,850 years later
    f = write(tmp_path / "b.csv", BURSTGPT_HEADER + rows)
    res = invoke("trace", "stats", f, "--format", "burstgpt", "--json", tmp_path / "st.json")
    warned = warnings_of(res)
    assert len(warned) == 1 and "line 5" in warned[0] and "days after" in warned[0]
    assert json.loads((tmp_path / "st.json").read_text())["duration_s"] == 120
    mooncake = write(tmp_path / "m.jsonl", "\n".join(json.dumps({"timestamp": t, "input_length": 5,
                                                                 "output_length": 5}) for t in (0, 1000, 9e13)))
    warned = warnings_of(invoke("trace", "stats", mooncake, "--format", "mooncake"))
    assert len(warned) == 1 and "line 3" in warned[0]


def test_7_trace_stats_keeps_its_rate_array_small_for_any_trace():
    t = np.array([0.0, 10.0, 9e10])  # built directly, past the parser's checks
    trace = Trace("t", "burstgpt", t, np.array([5, 5, 5]), np.array([5, 5, 5]))
    rates = trace_stats(trace)["rate_per_s_by_bucket"]
    assert len(rates["rates"]) <= MAX_RATE_BUCKETS + 1 and rates["bucket_s"] >= 9e10 / MAX_RATE_BUCKETS
    assert MAX_TRACE_SPAN_S / 60 < MAX_RATE_BUCKETS  # the parser's span fits the default bucket


# ------------------------------------------------------------------------------------------------------------
# 8. deep nesting: one line, never a RecursionError traceback (or libyaml's segfault)


def test_8_sharegpt_nested_100000_levels(tmp_path):
    f = write(tmp_path / "s.json", "[" * DEEP + "]" * DEEP)
    one_error(invoke("trace", "stats", f, "--format", "sharegpt"), str(f), "nested too deeply")


def test_8_deep_json_and_jsonl_anywhere(tmp_path):
    deep = "[" * DEEP + "]" * DEEP
    vb = write(tmp_path / "v.json", '{"input_lens": ' + deep + "}")
    one_error(invoke("trace", "stats", vb, "--format", "vllm-bench"), "nested too deeply")
    one_error(invoke("calibrate", "import", vb, "--format", "vllm-bench", "--out", tmp_path / "r.csv"),
              "nested too deeply")
    aiperf = write(tmp_path / "a.jsonl", deep + "\n")
    one_error(invoke("calibrate", "import", aiperf, "--format", "aiperf", "--out", tmp_path / "r.csv"),
              "line 1", "nested too deeply")
    good = json.dumps({"timestamp": 0, "input_length": 5, "output_length": 5})
    mooncake = write(tmp_path / "m.jsonl", good + "\n" + deep + "\n")  # one deep row: a bad row
    warned = warnings_of(invoke("trace", "stats", mooncake, "--format", "mooncake"))
    assert len(warned) == 1 and "line 2" in warned[0] and "nested too deeply" in warned[0]
    run = tmp_path / "run"
    run.mkdir()
    write(run / "summary.json", '{"scenario": "x", "a": ' + deep + "}")
    one_error(invoke("regress", run, "--baseline-dir", tmp_path / "bl"), "summary.json", "nested too deeply")


def test_8_deep_yaml_and_alias_bombs(tmp_path):
    flow = write(tmp_path / "flow.yaml", "name: " + "[" * DEEP + "]" * DEEP + "\n")
    one_error(invoke("validate", flow), str(flow), "line 1", "nested more than")
    block = write(tmp_path / "block.yaml", "a:\n" + "".join("  " * i + "k:\n" for i in range(1, 300)))
    one_error(invoke("validate", block), "nested more than")
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    lol = write(tmp_path / "lol.yaml", "\n".join(bomb + ["name: *a9"]) + "\n")
    one_error(invoke("validate", lol), "aliases expand")
    grid = write(tmp_path / "grid.yaml", "parameters: " + "[" * DEEP + "]" * DEEP + "\n")
    one_error(invoke("sweep", DEFAULT_SCENARIO, "--grid", grid, "--out", tmp_path / "sw"), "nested more than")


# ------------------------------------------------------------------------------------------------------------
# special files given as any input: refused up front, never opened for reading, never blocking


def _special(tmp_path: Path, kind: str, name: str) -> Path:
    p = tmp_path / name
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "folder":
        p.mkdir()
    elif kind == "loop":
        os.symlink(p.name, p)
    elif kind == "dev-zero":
        os.symlink("/dev/zero", p)
    return p


KIND_WORDS = {"fifo": "FIFO", "folder": "directory", "loop": "symlink loop", "dev-zero": "device"}
KINDS = list(KIND_WORDS)


def _commands(f: Path, tmp: Path) -> dict[str, list[object]]:
    step = ["--sku", "h100-sxm", "--model", "llama-3.1-8b"]
    return {
        "validate": ["validate", f],
        "trace-stats": ["trace", "stats", f, "--format", "azure"],
        "trace-fit": ["trace", "fit", f, "--format", "burstgpt", "-o", tmp / "w.yaml"],
        "run-trace-file": ["run", "--trace-file", f, "--trace-format", "azure", "--out", tmp / "run"],
        "sweep-grid": ["sweep", DEFAULT_SCENARIO, "--grid", f, "--out", tmp / "sw"],
        "plan-space": ["plan", DEFAULT_SCENARIO, "--target-rate", "1", "--slo", "ttft_p99<2s", "--space", f,
                       "--out", tmp / "plan"],
        "regress-tolerances": ["regress", DEFAULT_SCENARIO, "--baseline-dir", tmp / "bl", "--tolerances", f],
        "fidelity-suite": ["fidelity", f],
        "calibrate-import": ["calibrate", "import", f, "--format", "aiperf", "--out", tmp / "r.csv"],
        "calibrate-fit": ["calibrate", "fit", f, *step, "--profiles-dir", tmp / "hp"],
        "calibrate-validate": ["calibrate", "validate", f, *step, "--out", tmp / "val"],
    }


COMMANDS = list(_commands(Path("f"), Path("t")))


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", KINDS)
def test_special_files_are_refused_as_any_input(tmp_path, kind, command):
    f = _special(tmp_path, kind, "input.yaml")
    line = one_error(invoke(*_commands(f, tmp_path)[command]), KIND_WORDS[kind])
    assert "input.yaml" in line or "/dev/zero" in line
    assert not any((tmp_path / out).exists() for out in ("run", "sw", "plan", "val", "hp", "r.csv", "w.yaml"))


@pytest.mark.parametrize("kind", KINDS)
def test_a_special_summary_json_in_a_run_directory_is_refused(tmp_path, kind):
    run = tmp_path / "run"
    run.mkdir()
    _special(run, kind, "summary.json")
    one_error(invoke("regress", run, "--baseline-dir", tmp_path / "bl"), "summary.json", KIND_WORDS[kind])


def test_size_caps_refuse_before_reading(tmp_path):
    big_trace = tmp_path / "big.csv"
    with open(big_trace, "wb") as f:
        f.truncate(MAX_TRACE_BYTES + 1)  # sparse: nothing is written, nothing is read
    one_error(invoke("trace", "stats", big_trace, "--format", "azure"), "big.csv", "more than the 2.0 GiB")
    big_yaml = tmp_path / "big.yaml"
    with open(big_yaml, "wb") as f:
        f.truncate(MAX_YAML_BYTES + 1)
    one_error(invoke("validate", big_yaml), "big.yaml", "more than the 64.0 MiB")


# ------------------------------------------------------------------------------------------------------------
# files simfactory looks up (beside the scenario) and files a scenario names: refused, never skipped


def _case(tmp_path: Path, **changes) -> Path:
    doc = scenario_doc()
    doc["traffic"]["classes"][0].update(changes)
    for key in ("input_tokens", "output_tokens"):
        if "workload" in changes or "trace" in changes:
            doc["traffic"]["classes"][0].pop(key)
    return write_case(tmp_path, doc)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("where", ["hardware_profiles/models.yaml", "hardware_profiles/engines.yaml",
                                   "hardware_profiles/prices.yaml", "hardware_profiles/test-gpu.yaml",
                                   "workloads/chat.yaml", "hardware_profiles/test-gpu/measured.yaml"])
def test_a_broken_looked_up_file_is_refused_not_skipped_for_the_shipped_one(tmp_path, kind, where):
    scenario = _case(tmp_path, workload="chat") if where.startswith("workloads") else _case(tmp_path)
    target = tmp_path / where
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    _special(target.parent, kind, target.name)
    one_error(invoke("validate", scenario), target.name, KIND_WORDS[kind])


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "loop"])
def test_a_looked_up_folder_that_is_not_a_folder_is_refused(tmp_path, kind):
    scenario = _case(tmp_path, workload="chat")
    (tmp_path / "scenarios" / "workloads").unlink(missing_ok=True)
    _special(tmp_path / "scenarios", kind, "workloads")
    one_error(invoke("validate", scenario), "workloads")


LONG = "x" * 5000


@pytest.mark.parametrize("field, value, reason", [
    ("trace", {"file": "a\0b.csv", "format": "burstgpt"}, "NUL byte"),
    ("trace", {"file": LONG + ".csv", "format": "burstgpt"}, "longer than the filesystem allows"),
    ("trace", {"file": "loop.csv", "format": "burstgpt"}, "symlink loop"),
    ("trace", {"file": "fifo.csv", "format": "burstgpt"}, "FIFO"),
    ("workload", "a\0b", "NUL byte"),
    ("workload", LONG, "longer than the filesystem allows"),
    ("workload", "loop", "symlink loop"),
])
def test_paths_inside_a_scenario(tmp_path, field, value, reason):
    scenario = _case(tmp_path, **{field: value})
    os.symlink("loop.csv", tmp_path / "scenarios" / "loop.csv")
    os.mkfifo(tmp_path / "scenarios" / "fifo.csv")
    os.symlink("loop.yaml", tmp_path / "workloads" / "loop.yaml")
    line = one_error(invoke("validate", scenario), reason)
    assert "\0" not in line


@pytest.mark.parametrize("book, reason", [
    ("a\0b.yaml", "NUL byte"), (LONG + ".yaml", "longer than the filesystem allows"), ("loop.yaml", "symlink loop"),
    ("fifo.yaml", "FIFO"), ("zero.yaml", "device"), ("missing.yaml", "file not found"),
])
def test_a_price_book_path_inside_a_scenario(tmp_path, book, reason):
    scenario = _case(tmp_path)
    doc = yaml.safe_load(scenario.read_text())
    doc.setdefault("finance", {})["price_book"] = book
    scenario.write_text(yaml.safe_dump(doc))
    os.symlink("loop.yaml", scenario.parent / "loop.yaml")
    os.mkfifo(scenario.parent / "fifo.yaml")
    os.symlink("/dev/zero", scenario.parent / "zero.yaml")
    one_error(invoke("validate", scenario), str(scenario), "finance.price_book", reason)


# ------------------------------------------------------------------------------------------------------------
# parsers: huge quoted CSV fields, NaN/Infinity in a run's summary, inf in a step table


def test_a_huge_quoted_csv_field_is_a_bad_row(tmp_path):
    rows = '5,ChatGPT,10,5,15,x\n6,ChatGPT,"' + "x" * 300_000 + '",5,15,x\n7,ChatGPT,10,5,15,x\n'
    f = write(tmp_path / "b.csv", BURSTGPT_HEADER + rows)
    warned = warnings_of(invoke("trace", "stats", f, "--format", "burstgpt"))
    assert len(warned) == 1 and "line 3" in warned[0] and "malformed CSV" in warned[0]
    unclosed = write(tmp_path / "u.csv", AZURE_HEADER + '"2023-11-16 18:15:46,' + "1" * 300_000 + "\n")
    one_error(invoke("trace", "stats", unclosed, "--format", "azure"), "no usable rows", "malformed CSV")


@pytest.mark.parametrize("text, reason", [
    ("name: x\nseed: " + "1" * 5000 + "\n", "4300 digits"),  # past Python's int-from-text guard
    ("name: x\ndate: 2023-02-30\n", "day is out of range"),  # YAML's timestamp constructor
])
def test_values_yaml_cannot_construct_are_one_line(tmp_path, text, reason):
    f = write(tmp_path / "s.yaml", text)
    one_error(invoke("validate", f), str(f), "invalid YAML", reason)


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN", "1e999"])
def test_nan_or_infinity_in_a_run_summary_is_refused(tmp_path, value):
    run = tmp_path / "run"
    run.mkdir()
    write(run / "summary.json", '{"scenario": "x", "latency_s": {"ttft": {"p99": %s}}}' % value)
    for args in (["regress", run, "--baseline-dir", tmp_path / "bl"],
                 ["baseline", "update", run, "--baseline-dir", tmp_path / "bl"]):
        one_error(invoke(*args), "summary.json", "latency_s.ttft.p99", "NaN or Infinity")
    assert not (tmp_path / "bl").exists()


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "1e400", "nan"])
def test_inf_in_a_step_table_is_refused(tmp_path, value):
    rows = ["kind,prefill_tokens,decode_seqs,kv_tokens_read,prefill_attn_pairs,step_s"]
    rows += [f"decode,0,{n},{100 * n},0,{0.01 + 0.001 * n}" for n in range(1, 12)]
    rows[3] = f"decode,0,2,200,0,{value}"
    f = write(tmp_path / "steps.csv", "\n".join(rows) + "\n")
    one_error(invoke("calibrate", "fit", f, "--sku", "h100-sxm", "--model", "llama-3.1-8b", "--profiles-dir",
                     tmp_path / "hp"), "steps.csv", "row 3.step_s")
    assert not (tmp_path / "hp").exists()


@pytest.mark.parametrize("column, value, needle", [
    ("prefill_tokens", "1e300", "row 3.prefill_tokens"),  # scipy: "Residuals are not finite" traceback
    ("kv_tokens_read", "1e200", "row 3.kv_tokens_read"),  # scipy: "array must not contain infs or NaNs"
    ("step_s", "1e9", "row 3.step_s"),
    ("prefill_seqs", "abc", "row 3.prefill_seqs"),  # read by --heldout-by: a ValueError traceback
    ("power_w", "abc", "row 3.power_w"),  # the power fit: a ValueError traceback
    ("power_w", "-100", "row 3.power_w"),  # a negative max_w: a pydantic ValidationError traceback
    ("power_w", "1e302", "row 3.power_w"),
    ("sm_util", "x", "row 3.sm_util"),
    ("sm_util", "55", "row 3.sm_util"),  # percent, not a fraction: fitted into a nonsense power curve
])
def test_a_step_table_number_past_any_step_is_refused(tmp_path, column, value, needle):
    """A step table's numbers, the optional columns a fit reads included, are finite, >= 0 and of plausible size:
    past that they ended in scipy or pydantic tracebacks deep in the fit."""
    head = "kind,prefill_tokens,prefill_seqs,decode_seqs,kv_tokens_read,prefill_attn_pairs,step_s,power_w,sm_util"
    rows = [head] + [f"decode,0,0,{n},{100 * n},0,{0.01 + 0.001 * n},{100 + 40 * n},{0.05 + 0.08 * n}"
                     for n in range(1, 12)]
    cells = rows[3].split(",")
    cells[head.split(",").index(column)] = value
    rows[3] = ",".join(cells)
    f = write(tmp_path / "steps.csv", "\n".join(rows) + "\n")
    for heldout in ("random", "batch"):
        one_error(invoke("calibrate", "fit", f, "--sku", "h100-sxm", "--model", "llama-3.1-8b", "--profiles-dir",
                         tmp_path / "hp", "--heldout-by", heldout, "--force"), "steps.csv", needle)
    assert not (tmp_path / "hp").exists()


def test_a_step_table_with_empty_power_cells_still_fits(tmp_path):
    """Steps without power samples leave power_w and sm_util empty: they are not refused."""
    head = "kind,prefill_tokens,decode_seqs,kv_tokens_read,prefill_attn_pairs,step_s,power_w,sm_util"
    rows = [head] + [f"decode,0,{n},{100 * n},0,{0.01 + 0.001 * n},," for n in range(1, 12)]
    f = write(tmp_path / "steps.csv", "\n".join(rows) + "\n")
    res = invoke("calibrate", "fit", f, "--sku", "h100-sxm", "--model", "llama-3.1-8b", "--fit", "linear",
                 "--profiles-dir", tmp_path / "hp", "--force")
    assert res.exit_code == 0, res.output
