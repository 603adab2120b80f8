"""Trace formats, replay, statistics and fitted workloads."""

from __future__ import annotations

import json

import numpy as np
from scipy import stats as sps
import pytest
import yaml
from conftest import scenario_doc, write_case
from typer.testing import CliRunner

from simfactory.api import run
from simfactory.cli import app
from simfactory.errors import InputError, InputErrors
from simfactory.resolve import load_and_resolve
from simfactory.traces.parse import parse_trace
from simfactory.traces.fit import fit_workload
from simfactory.traces.stats import trace_stats

runner = CliRunner()
AZURE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:15:51.2000000,bad,10
2023-11-16 18:15:55.0000000,879,5
"""
BURSTGPT = """Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
5,ChatGPT,472,18,490,Conversation log
45,ChatGPT,1087,230,1317,Conversation log
47,GPT-4,417,-3,414,Conversation log
118,GPT-4,1360,461,1821,API log
"""
MOONCAKE = "\n".join([
    json.dumps({"timestamp": 0, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47, 48]}),
    json.dumps({"timestamp": 27482, "input_length": 6472, "output_length": 26, "hash_ids": [46, 47, 49]}),
    "{not json",
    json.dumps({"timestamp": 30000, "input_length": 100, "output_length": 5, "hash_ids": [50]}),
])
SHAREGPT = json.dumps([
    {"id": "a", "conversations": [{"from": "human", "value": "x" * 400}, {"from": "gpt", "value": "y" * 800}]},
    {"id": "b", "conversations": [{"from": "human", "value": "hello"}]},
])
VLLM_BENCH = json.dumps({"backend": "vllm", "request_rate": 4.0, "input_lens": [100, 200, "x"], "output_lens": [10, 20, 30]})


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "fmt, name, text, n, bad_line, times",
    [
        ("azure", "a.csv", AZURE, 3, "line 4", [0.0, 4.314579, 8.319420]),
        ("burstgpt", "b.csv", BURSTGPT, 3, "line 4", [0.0, 40.0, 113.0]),
        ("mooncake", "m.jsonl", MOONCAKE, 3, "line 3", [0.0, 27.482, 30.0]),
        ("sharegpt", "s.json", SHAREGPT, 1, "conversation 1", None),
        ("vllm-bench", "v.json", VLLM_BENCH, 2, "request 2", None),
    ],
)
def test_each_format_parses_and_reports_bad_rows(tmp_path, fmt, name, text, n, bad_line, times):
    tr = parse_trace(write(tmp_path, name, text), fmt)
    assert len(tr) == n
    assert any(b.startswith(bad_line) for b in tr.bad_rows), tr.bad_rows
    if times is None:
        assert tr.arrival_s is None
    else:
        assert np.allclose(tr.arrival_s, times, atol=1e-5)
    if fmt == "sharegpt":
        assert (tr.input_tokens[0], tr.output_tokens[0]) == (100, 200)  # characters / 4


def test_a_trace_with_no_usable_rows_is_an_error(tmp_path):
    p = write(tmp_path, "a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\nnope,1,2\n")
    with pytest.raises(InputError) as info:
        parse_trace(p, "azure")
    assert "no usable rows" in str(info.value) and "line 2" in str(info.value)
    with pytest.raises(InputError) as info:
        parse_trace(write(tmp_path, "b.csv", "time,in,out\n1,2,3\n"), "burstgpt")
    assert "missing column(s)" in str(info.value)


def trace_scenario(tmp_path, trace_file, fmt, **trace):
    doc = scenario_doc(rate=1.0, horizon_s=1000, max_num_seqs=64)
    c = doc["traffic"]["classes"][0]
    for k in ("input_tokens", "output_tokens"):
        c.pop(k)
    c["trace"] = {"file": str(trace_file), "format": fmt, **trace}
    del doc["traffic"]["arrival"]
    return load_and_resolve(write_case(tmp_path / "case", doc, {"overhead_s": 0.01}))


def test_replay_preserves_arrivals_and_lengths(tmp_path):
    p = write(tmp_path, "m.jsonl", MOONCAKE)
    m = run(trace_scenario(tmp_path, p, "mooncake"))
    req = m.requests
    assert np.allclose(req["arrival_s"], [0.0, 27.482, 30.0])
    assert list(req["input_tokens"]) == [6955, 6472, 100] and list(req["output_tokens"]) == [52, 26, 5]
    assert any("line 3" in w for w in m.summary["input_warnings"])


def test_rate_scaling_divides_arrival_times_exactly(tmp_path):
    p = write(tmp_path, "b.csv", BURSTGPT)
    base = run(trace_scenario(tmp_path / "1", p, "burstgpt")).requests["arrival_s"].to_numpy()
    fast = run(trace_scenario(tmp_path / "2", p, "burstgpt", speedup=4.0)).requests["arrival_s"].to_numpy()
    assert np.array_equal(fast, base / 4.0)
    window = run(trace_scenario(tmp_path / "3", p, "burstgpt", start_s=30, end_s=200)).requests
    assert np.allclose(window["arrival_s"], [10.0, 83.0])


def test_fitted_workload_reproduces_lengths_their_pairing_and_burstiness(tmp_path):
    """A trace whose rate swings between windows, with bursty gaps inside, correlated lengths: the fitted workload
    (run through a scenario with `arrival: workload`) keeps length percentiles, the rank correlation and the index
    of dispersion of counts at 60 s; the single-renewal candidate (the old fit) does not."""
    rng = np.random.default_rng(7)
    parts, start = [], 0.0
    for rate in rng.choice([1.0, 8.0], size=60):  # 60 windows of 60 s, the rate jumping between 1/s and 8/s
        g = rng.gamma(0.5, 1 / (rate * 0.5), int(rate * 120))
        t = start + np.cumsum(g)
        parts.append(t[t < start + 60])
        start += 60
    t = np.concatenate(parts)
    n = len(t)
    z = rng.standard_normal((n, 2)) @ np.linalg.cholesky([[1, 0.7], [0.7, 1]]).T
    inp = np.maximum(1, np.round(np.exp(np.log(800) + 0.9 * z[:, 0]))).astype(int)
    out = np.maximum(1, np.round(np.exp(np.log(150) + 0.7 * z[:, 1]))).astype(int)
    lines = ["Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"]
    lines += [f"{a:.6f},m,{i},{o},{i + o},API log" for a, i, o in zip(t, inp, out)]
    trace = parse_trace(write(tmp_path, "big.csv", "\n".join(lines)), "burstgpt")
    workload, report = fit_workload(trace, "fit")
    assert workload["arrival"]["process"] == "schedule" and report["arrivals"]["chosen"]["window_s"] <= 60
    single = report["arrivals"]["candidates"][-1]  # one window over the whole trace: a stationary renewal process
    idc_trace, idc_single = single["index_of_dispersion"]["60s"]
    assert idc_single < idc_trace / 3  # the stationary fit loses the rate swings
    wpath = tmp_path / "case" / "workloads"
    wpath.mkdir(parents=True)
    (wpath / "fit.yaml").write_text(yaml.safe_dump(workload))
    doc = scenario_doc(horizon_s=3600, max_num_seqs=256)
    c = doc["traffic"]["classes"][0]
    c.pop("input_tokens"), c.pop("output_tokens")
    c.update(workload="fit", arrival="workload")
    doc["traffic"].pop("arrival")
    doc["deployments"][0]["kv_cache_tokens"] = 10_000_000
    rs = load_and_resolve(write_case(tmp_path / "case", doc, {"overhead_s": 0.001}))
    from simfactory.sim.requests import RequestTable
    from simfactory.sim.streams import RandomStreams
    from simfactory.sim.traffic import add_plain_requests, arrival_schedule
    from simfactory.traces.fit import index_of_dispersion

    times, cls, rows = arrival_schedule(rs, RandomStreams(1))
    table = RequestTable()
    add_plain_requests(rs, RandomStreams(1), times, cls, table, rows)
    table.trim()
    assert len(times) == pytest.approx(n, rel=0.05)
    for sim_v, real in ((table.input_tokens, inp), (table.output_tokens, out)):
        for q in (50, 90, 99):
            assert np.percentile(sim_v, q) == pytest.approx(np.percentile(real, q), rel=0.06)
    rho = sps.spearmanr(table.input_tokens, table.output_tokens).statistic
    assert rho == pytest.approx(sps.spearmanr(inp, out).statistic, abs=0.05)
    idc_fit = index_of_dispersion(times, 3600, 60)
    assert idc_fit == pytest.approx(index_of_dispersion(t - t[0], 3600, 60), rel=0.3)


def test_trace_cli_stats_fit_and_run(tmp_path):
    p = write(tmp_path, "a.csv", AZURE)
    res = runner.invoke(app, ["trace", "stats", str(p), "--format", "azure", "--json", str(tmp_path / "s.json")])
    assert res.exit_code == 0 and json.loads((tmp_path / "s.json").read_text())["requests"] == 3
    res = runner.invoke(app, ["trace", "fit", str(p), "-f", "azure", "-o", str(tmp_path / "w" / "fit.yaml")])
    assert res.exit_code == 0 and (tmp_path / "w" / "fit.yaml").is_file()
    res = runner.invoke(app, ["run", "--trace-file", str(p), "--trace-format", "azure", "--quiet", "--no-plots",
                              "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "line 4" in res.output  # the bad row is reported
    assert len((tmp_path / "out" / "requests.csv").read_text().splitlines()) == 4
    bad = runner.invoke(app, ["trace", "stats", str(p), "--format", "csv"])
    assert bad.exit_code == 2 and "unknown trace format" in bad.output


def test_trace_fit_of_evenly_spaced_arrivals_is_the_most_regular_schedule(tmp_path):
    """A constant-rate benchmark's trace (every gap equal) has no spread for scipy's gamma solver: it used to
    end `trace fit` and `trace compare` in a ValueError traceback; it fits the smallest cv instead."""
    rows = "".join(f"2023-11-16 18:15:{i:02d}.5,{100 + i},{20 + i}\n" for i in range(40))
    p = write(tmp_path, "even.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n" + rows)
    out = tmp_path / "even.yaml"
    res = runner.invoke(app, ["trace", "fit", str(p), "-f", "azure", "-o", str(out)])
    assert res.exit_code == 0 and res.exception is None, res.output
    arrival = yaml.safe_load(out.read_text())["arrival"]
    assert arrival["cv"] < 0.1
    sim = write_case(tmp_path / "case", scenario_doc(rate=1.0, horizon_s=30), {"overhead_s": 0.01})
    res = runner.invoke(app, ["trace", "compare", str(p), "-f", "azure", "-s", str(sim), "--speedup", "1",
                              "--seeds", "1"])
    assert res.exit_code in (0, 1) and res.exception is None, res.output
    assert "Traceback" not in res.output


# Row 2 shares its first 3 blocks (512 tokens each) with row 1; row 3 repeats row 1's prompt exactly.
MOONCAKE_SHARED = "\n".join([
    json.dumps({"timestamp": 0, "input_length": 2000, "output_length": 4, "hash_ids": [1, 2, 3, 4]}),
    json.dumps({"timestamp": 10000, "input_length": 2500, "output_length": 4, "hash_ids": [1, 2, 3, 9, 10]}),
    json.dumps({"timestamp": 20000, "input_length": 2000, "output_length": 4, "hash_ids": [1, 2, 3, 4]}),
])


def cached_tokens_with_cache(tmp_path, capacity_tokens):
    tmp_path.mkdir()
    p = write(tmp_path, "m.jsonl", MOONCAKE_SHARED)
    doc = scenario_doc(rate=1.0, horizon_s=100, max_num_seqs=8, prefix_cache_tokens=capacity_tokens)
    c = doc["traffic"]["classes"][0]
    for k in ("input_tokens", "output_tokens"):
        c.pop(k)
    c["trace"] = {"file": str(p), "format": "mooncake"}
    del doc["traffic"]["arrival"]
    req = run(load_and_resolve(write_case(tmp_path / "case", doc, {"overhead_s": 0.01}))).requests
    return list(req.sort_values("arrival_s")["cached_tokens"])


def test_mooncake_hash_ids_drive_the_prefix_cache(tmp_path):
    # 3 shared blocks -> 3 * 512 cached; an identical prompt is cached whole but one token (the engine always
    # computes the last prompt token to produce the first output token)
    assert cached_tokens_with_cache(tmp_path / "big", 100_000) == [0, 3 * 512, 2000 - 1]
    assert cached_tokens_with_cache(tmp_path / "off", 0) == [0, 0, 0]
    # room for two blocks: row 1's tail blocks are evicted first, its two head blocks stay and row 2 hits them;
    # row 2 then caches its own blocks tail first, leaving blocks 1 and 2 the most recent again
    assert cached_tokens_with_cache(tmp_path / "small", 1024) == [0, 2 * 512, 2 * 512]


def test_non_finite_or_absurd_timestamps_are_bad_rows_and_unpaired_lengths_are_refused(tmp_path):
    from simfactory.traces.parse import parse_trace

    (tmp_path / "m.jsonl").write_text(
        '{"timestamp": NaN, "input_length": 10, "output_length": 5}\n'
        '{"timestamp": 5, "input_length": 10, "output_length": 5}\n'
        '{"timestamp": 1e308, "input_length": 10, "output_length": 5}\n')
    t = parse_trace(tmp_path / "m.jsonl", "mooncake")
    assert len(t) == 1 and len(t.bad_rows) == 2 and "line 3" in t.bad_rows[1]
    (tmp_path / "v.json").write_text('{"input_lens": [10, 20, 30], "output_lens": [5]}')
    with pytest.raises(InputError, match="output_lens: has 1 entries, input_lens 3"):
        parse_trace(tmp_path / "v.json", "vllm-bench")


def test_a_csv_saved_with_a_byte_order_mark_reads_like_one_without(tmp_path):
    from simfactory.traces.parse import parse_trace

    body = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n"
    (tmp_path / "plain.csv").write_text(body, encoding="utf-8")
    (tmp_path / "excel.csv").write_text(body, encoding="utf-8-sig")  # what Excel writes
    a, b = parse_trace(tmp_path / "plain.csv", "azure"), parse_trace(tmp_path / "excel.csv", "azure")
    assert len(a) == len(b) == 2 and (a.input_tokens == b.input_tokens).all()


def test_cached_tokens_count_once_and_stay_under_the_traces_reuse_bound(tmp_path):
    """Multi-turn prompts (each turn extends the last one's blocks) through a small KV cache that preempts: every
    request's cached tokens are at most its prompt, counted at its first admission only (a re-admission after
    preemption recomputes its own work, not the prompt), and the saved fraction stays under the trace's own bound:
    the leading blocks each prompt shares with an earlier one (computed here from hash_ids, independently)."""
    rng = np.random.default_rng(3)
    rows, seen, bound, total = [], set(), 0, 0
    for i in range(120):
        session = int(rng.integers(0, 6))
        turns = int(rng.integers(1, 6))
        blocks = [session * 1000 + k for k in range(turns)] + [100_000 + i]
        length = 512 * len(blocks) - int(rng.integers(0, 300))
        lead = 0
        for b in blocks:
            if b not in seen:
                break
            lead += 1
        bound += min(lead * 512, length - 1)
        total += length
        seen.update(blocks)
        rows.append(json.dumps({"timestamp": i * 150, "input_length": length, "output_length": 40, "hash_ids": blocks}))
    p = write(tmp_path, "m.jsonl", "\n".join(rows))
    doc = scenario_doc(rate=1.0, horizon_s=200, max_num_seqs=16, prefix_cache_tokens=20_000, kv_cache_tokens=9_000)
    c = doc["traffic"]["classes"][0]
    for k in ("input_tokens", "output_tokens"):
        c.pop(k)
    c["trace"] = {"file": str(p), "format": "mooncake"}
    del doc["traffic"]["arrival"]
    req = run(load_and_resolve(write_case(tmp_path / "case", doc, {"overhead_s": 0.01, "s_per_decode_seq": 0.002}))).requests
    assert (req["preemptions"] > 0).any()  # the small KV cache re-admits some requests
    assert (req["cached_tokens"] <= req["input_tokens"]).all()
    assert 0 < req["cached_tokens"].sum() <= bound
    assert req["cached_tokens"].sum() / req["input_tokens"].sum() <= bound / total


def test_a_trace_longer_than_the_run_is_replayed_in_part_with_a_warning(tmp_path):
    rows = "\n".join(json.dumps({"timestamp": i * 1000, "input_length": 100, "output_length": 5}) for i in range(50))
    p = write(tmp_path, "m.jsonl", rows)
    doc = scenario_doc(rate=1.0, horizon_s=20, max_num_seqs=8)
    c = doc["traffic"]["classes"][0]
    for k in ("input_tokens", "output_tokens"):
        c.pop(k)
    c["trace"] = {"file": str(p), "format": "mooncake"}
    del doc["traffic"]["arrival"]
    rs = load_and_resolve(write_case(tmp_path / "case", doc, {"overhead_s": 0.001}))
    assert any("30 of 50 trace rows arrive after sim.horizon_s (20 s)" in w and "above 49 s" in w for w in rs.warnings)
    doc["sim"]["horizon_s"] = 60
    rs = load_and_resolve(write_case(tmp_path / "case2", doc, {"overhead_s": 0.001}))
    assert not any("arrive after sim.horizon_s" in w for w in rs.warnings)


def test_sample_on_a_trace_without_timestamps_is_refused(tmp_path):
    p = write(tmp_path, "v.json", json.dumps({"input_lens": [10, 20, 30], "output_lens": [5, 5, 5]}))
    doc = scenario_doc(rate=1.0, horizon_s=5)
    c = doc["traffic"]["classes"][0]
    for k in ("input_tokens", "output_tokens"):
        c.pop(k)
    c["trace"] = {"file": str(p), "format": "vllm-bench", "sample": 0.5}
    with pytest.raises(InputErrors, match=r"trace\.sample: thins a trace's timestamped arrivals"):
        load_and_resolve(write_case(tmp_path / "case", doc, {"overhead_s": 0.001}))


def test_trace_stats_flags_timestamps_rounded_to_seconds(tmp_path):
    from simfactory.traces.parse import parse_trace
    from simfactory.traces.stats import trace_stats

    rows = [json.dumps({"timestamp": (i // 10) * 1000, "input_length": 10, "output_length": 5}) for i in range(100)]
    st = trace_stats(parse_trace(write(tmp_path, "r.jsonl", "\n".join(rows)), "mooncake"))
    assert st["zero_gap_fraction"] == pytest.approx(90 / 99)
    assert "timestamps step by 1 s" in st["warnings"][0]
    fine = [json.dumps({"timestamp": i * 137.3, "input_length": 10, "output_length": 5}) for i in range(100)]
    st = trace_stats(parse_trace(write(tmp_path, "f.jsonl", "\n".join(fine)), "mooncake"))
    assert st["zero_gap_fraction"] == 0 and "warnings" not in st
