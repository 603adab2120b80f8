"""`simfactory validate --steps`: what one engine step costs at typical loads, and of what."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from simfactory.api import prepare, step_tables
from simfactory.cli import app
from simfactory.config.profile import LinearStepTime
from simfactory.hardware.step_table import step_rows, typical_loads
from simfactory.hardware.step_time import LinearModel, StepLoad
from simfactory.paths import SCENARIOS_DIR

# measured kernels (dense, TP1), a roofline MoE on AMD, kernel tables with 64-way DP attention and a disaggregated
# prefill pool, pipeline parallelism, speculative decoding
# (a model without parts), serving beside a training job (its parts and what the job adds)
SCENARIOS = ["default", "frontier-r1-fp8-8xmi355x", "frontier-r1-fp4-gb200-nvl72-disagg", "stack-70b-tp2-pp2",
             "stack-speculative", "training-from-hardware"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_steps_parts_add_up_to_the_step_it_costs(name):
    """Every part the step-time model names is a share of the step: they add up to step_s, for kernel tables (with
    the eager-prefill launch wait and the busiest attention rank), rooflines and calibrated fits alike."""
    rs = prepare(SCENARIOS_DIR / f"{name}.yaml")
    tables = step_tables(rs)
    assert set(tables) >= {d.config.name for d in rs.deployments}
    for d in rs.deployments:
        for part, table in ((d, tables[d.config.name]), (d.prefill, tables.get(f"{d.config.name} (prefill)"))):
            if part is None:
                continue
            c = part.config
            for r in table["rows"]:
                assert r["step_ms"] > 0 and r["tokens_per_s"] == pytest.approx(
                    (r["prefill_tokens"] + r["decode_seqs"]) / (r["step_ms"] / 1e3))
                if r["parts_ms"] is not None:
                    assert sum(r["parts_ms"].values()) == pytest.approx(r["step_ms"], rel=1e-9), (name, r)
                prompts = r["prefill_tokens"] // max(table["prompt_tokens"], 1) if r["prefill_tokens"] else 0
                assert r["decode_seqs"] + max(prompts, 1 if r["prefill_tokens"] else 0) <= c.max_num_seqs, r
                assert r["prefill_tokens"] + r["decode_seqs"] <= c.max_num_batched_tokens, r
                assert r["prefill_tokens"] + r["kv_tokens_read"] <= part.kv_capacity_tokens, r
    if name == "frontier-r1-fp4-gb200-nvl72-disagg":  # each pool gets the steps it runs
        assert all(r["prefill_tokens"] == 0 for r in tables["r1"]["rows"])
        assert all(r["decode_seqs"] == 0 for r in tables["r1 (prefill)"]["rows"])
    if name == "stack-speculative":
        assert "draft-and-verify cycle's time per token" in tables["llama8b"]["note"]
    if name == "training-from-hardware":
        assert any("beside_training" in (r["parts_ms"] or {}) for t in tables.values() for r in t["rows"])


def test_a_calibrated_fit_shows_its_own_terms():
    fit = LinearStepTime(overhead_s=0.004, s_per_prefill_token=6e-5, s_per_decode_seq=1e-4, s_per_kv_token=3e-8,
                         s_per_attn_pair=1e-9)
    load = StepLoad(prefill_tokens=512, decode_seqs=8, kv_tokens_read=8000.0, prefill_attn_pairs=512 * 513 / 2)
    (row,) = step_rows(LinearModel(fit), [("x", load)])
    assert row["parts_ms"] == pytest.approx({"overhead": 4.0, "prefill_tokens": 512 * 6e-2, "decode_seqs": 0.8,
                                             "kv_read": 8000 * 3e-5, "prefill_attention": 512 * 513 / 2 * 1e-6})
    assert row["step_ms"] == pytest.approx(sum(row["parts_ms"].values()))


def test_typical_loads_stay_within_the_deployments_limits():
    """Decode batches up to the sequence limit and what the KV cache holds at that context (the largest of them
    included), no single prompt past the step budget, and the mixed step exactly fills the budget."""
    loads = dict(typical_loads(max_num_seqs=256, max_num_batched_tokens=8192, kv_capacity_tokens=100_000,
                               context_tokens=1000, prompt_tokens=3000))
    decode = [ld for ld in loads.values() if ld.prefill_tokens == 0]
    assert [ld.decode_seqs for ld in decode] == [1, 8, 32, 100]  # 100 x 1,000 tokens fill the KV cache
    assert all(ld.kv_tokens_read == ld.decode_seqs * 1000 for ld in decode)
    single = [k for k in loads if k.startswith("prefill 1 x")]
    assert single == ["prefill 1 x 512", "prefill 1 x 2,048", "prefill 1 x 3,000", "prefill 1 x 8,192"]
    assert loads["prefill 2 x 3,000"].prefill_tokens == 6000
    mixed = loads["mixed 50 x 1,000+8,142"]
    assert mixed.prefill_tokens + mixed.decode_seqs == 8192
    assert all(ld.prefill_tokens <= 8192 for ld in loads.values())
    one = dict(typical_loads(max_num_seqs=1, max_num_batched_tokens=8192, kv_capacity_tokens=100_000,
                             context_tokens=1000, prompt_tokens=200))
    assert all(ld.decode_seqs <= 1 for ld in one.values()) and "prefill 40 x 200" not in one  # one sequence a step
    assert not [k for k in one if k.startswith("mixed")]  # no room for a prompt beside a decoding sequence
    tight = typical_loads(max_num_seqs=256, max_num_batched_tokens=8192, kv_capacity_tokens=852,
                          context_tokens=3549, prompt_tokens=3399)
    assert [k for k, _ in tight] == ["decode 1 x 852", "prefill 1 x 512", "prefill 1 x 852"]  # the KV cache binds
    tiny = typical_loads(max_num_seqs=4, max_num_batched_tokens=256, kv_capacity_tokens=10_000, context_tokens=1000,
                         prompt_tokens=1000)
    assert [k for k, ld in tiny if ld.prefill_tokens == 0] == ["decode 1 x 1,000", "decode 4 x 1,000"]
    assert not [k for k, ld in tiny if k.startswith("prefill 1 x 1,000")]  # longer than the budget: chunked


def test_validate_steps_prints_and_writes_each_deployments_steps(tmp_path):
    scenario = str(SCENARIOS_DIR / "frontier-r1-fp4-gb200-nvl72-disagg.yaml")
    res = CliRunner().invoke(app, ["validate", scenario, "--steps", "--json", str(tmp_path / "v.json")])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "r1: one engine step, ms" in text and "r1 (prefill): one engine step, ms" in text
    assert "wait: an eager prefill waiting for its kernel launches" in text
    doc = json.loads((tmp_path / "v.json").read_text())
    assert set(doc["steps"]) == {"r1", "r1 (prefill)"}
    assert all(r["parts_ms"] for r in doc["steps"]["r1"]["rows"]) and doc["steps"]["r1"]["context_tokens"] > 0
    plain = CliRunner().invoke(app, ["validate", scenario, "--json", str(tmp_path / "p.json")])
    assert plain.exit_code == 0 and "one engine step" not in plain.output
    assert "steps" not in json.loads((tmp_path / "p.json").read_text())


def test_fidelity_steps_shows_a_points_step_costs_without_running_the_suites(tmp_path):
    """`fidelity SUITE --steps ID` prices the point's own deployment at loads sized from its limits and lengths
    (a one-batch point of 16 prompts of 512 tokens: decode batches up to 16 at 768 tokens of KV); an unknown id is one
    error line naming ids that exist."""
    from simfactory.fidelity import FIDELITY_DIR, load_suite, point_steps

    suite = FIDELITY_DIR / "sglang-one-batch-h200.yaml"
    point = "sgl-pr14764-dsv31-fp8-h200-tp8-bs16-512-512"
    label, table = point_steps(load_suite(suite), point)
    rows = table["rows"]
    assert label.startswith("measured kernels") and "sglang" in label
    assert (table["context_tokens"], table["prompt_tokens"]) == (768, 512)  # 512 in, 512 out: 512 + 512 / 2
    assert [r["load"] for r in rows if not r["prefill_tokens"]] == ["decode 1 x 768", "decode 8 x 768", "decode 16 x 768"]
    assert all(sum(r["parts_ms"].values()) == pytest.approx(r["step_ms"]) for r in rows)
    res = CliRunner().invoke(app, ["fidelity", str(suite), "--steps", point])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert f"sglang-one-batch-h200 / {point}: step time: measured kernels" in text and "predicted vs measured" not in text
    bad = CliRunner().invoke(app, ["fidelity", str(suite), "--steps", "bs16"])
    assert bad.exit_code == 2 and "no point of that id" in bad.output and point in bad.output
    for flags, named in ((["--record", str(tmp_path / "r.json")], "--record"), (["--note", "x"], "--note"),
                         (["--requests", "50", "--force"], "--requests, --force")):
        res = CliRunner().invoke(app, ["fidelity", str(suite), "--steps", point, *flags])
        assert res.exit_code == 2 and f"runs no suite: {named} would be ignored" in " ".join(res.output.split())
    assert not (tmp_path / "r.json").exists()
    missing = CliRunner().invoke(app, ["fidelity", str(suite), str(tmp_path / "none.yaml"), "--steps", point])
    assert missing.exit_code == 2 and "none.yaml" in missing.output  # every suite named is read, not only up to the point


def test_the_absorbed_form_of_a_graphed_prefill_shows_in_the_step_table():
    """SGLang 0.5.10+ runs a DeepSeek prefill of up to 2,048 tokens as a piecewise graph in latent attention's
    absorbed form: the step table prices the rows the engine would (its part, the parts still adding up), and
    only those."""
    from conftest import resolved_deployment

    d = resolved_deployment("sglang", "h200", "deepseek-r1", 8, "fp8")
    s_per_pair, _, graph_max = d.step_time.absorbed_extend()
    assert s_per_pair > 0 and graph_max == 2048
    loads = [("short", StepLoad(512, 0, 0.0, 512 * 513 / 2)), ("graph", StepLoad(2048, 0, 0.0, 2048 * 2049 / 2)),
             ("eager", StepLoad(4096, 0, 0.0, 4096 * 4097 / 2)), ("decode", StepLoad(0, 32, 32 * 2000.0, 0.0))]
    rows = {r["load"]: r for r in step_rows(d.step_time, loads)}
    for label, load in loads:
        extra = s_per_pair * load.prefill_attn_pairs if label in ("short", "graph") else 0.0
        assert rows[label]["step_ms"] == pytest.approx((d.step_time.step_s(load) + extra) * 1e3)
        assert rows[label]["parts_ms"].get("absorbed", 0.0) == pytest.approx(extra * 1e3)
        assert sum(rows[label]["parts_ms"].values()) == pytest.approx(rows[label]["step_ms"])


def test_a_prompt_after_cached_tokens_shows_what_the_engine_adds_for_latent_attention():
    """The table's "prefill N after C" row prices an N-token prompt whose first C tokens are cached as the engine
    does (StepTimeModel.mla_extend): vLLM re-expands the C cached tokens from the latent (kv_up), SGLang on
    Hopper runs a batch with fewer than 8,192 of them in the absorbed form (absorbed), a GQA model adds neither."""
    from conftest import resolved_deployment

    from simfactory.hardware.step_table import cached_prefill

    label, load = cached_prefill(8192, 1_000_000, 30_000, 500)
    assert (label, load.prefill_tokens, load.computed_tokens) == ("prefill 500 after 30,000", 500, 30_000)
    assert load.prefill_attn_pairs == 500 * (30_000 + 501 / 2)
    vllm = resolved_deployment("vllm-0.11", "h200", "deepseek-r1", 8, "fp8").step_time
    row = step_rows(vllm, [(label, load)])[0]
    assert row["parts_ms"]["kv_up"] == pytest.approx(vllm.prefix_up_s_per_token() * 30_000 * 1e3)
    assert row["step_ms"] == pytest.approx(sum(row["parts_ms"].values()))
    short_label, short = cached_prefill(8192, 1_000_000, 4_000, 500)
    sglang = resolved_deployment("sglang-0.5", "h200", "deepseek-r1", 8, "fp8").step_time
    parts = step_rows(sglang, [(short_label, short)])[0]["parts_ms"]
    assert parts["absorbed"] == pytest.approx(sglang.absorbed_extend()[0] * short.prefill_attn_pairs * 1e3)
    assert "kv_up" not in parts
    llama = resolved_deployment("vllm", "h200", "llama-3.1-70b", 8, "fp8").step_time
    assert not {"kv_up", "absorbed"} & set(step_rows(llama, [(label, load)])[0]["parts_ms"])
    assert cached_prefill(8192, 400, 30_000, 500) is None  # the KV cache cannot hold both


def test_no_row_holds_a_chunk_longer_than_one_rank_schedules():
    """With attention data-parallel ranks a request's chunk is at most a rank's share of the budget
    (rank_chunk_tokens): the step table shows no prompt longer than that, mixed or cached."""
    from simfactory.hardware.step_table import cached_prefill
    from simfactory.hardware.step_time import rank_chunk_tokens

    cap = rank_chunk_tokens(65536, 8)
    assert cap == 8192 and rank_chunk_tokens(65536, 1) == 65536
    loads = typical_loads(8192, 65536, 10_000_000, 1500, 3000, max_chunk_tokens=cap)
    prompts = [load for _, load in loads if load.prefill_tokens]
    assert prompts and all(2 * ld.prefill_attn_pairs / ld.prefill_tokens - 1 <= cap for ld in prompts)
    assert max(ld.prefill_tokens for _, ld in loads if not ld.decode_seqs) >= cap  # budget-filling rows stay
    label, load = cached_prefill(65536, 10_000_000, 1500, 20_000, cap)
    assert load.prefill_tokens == cap
