"""Issue #22's calibrated check on a public per-phase table with batched prefills (calibrate/datasets/muxserve-a100/).

MuxServe's released cost file times one prefill step of `batch` prompts of `seq_len` tokens and one decode step of
`batch` sequences, on A100-80GB, for LLaMA-7B and LLaMA-13B at TP 1, 2, 4 and 8 (the whole GPU: 100% of the SMs).
These tests check that each step table is the stated conversion of the transcribed source, then that a roofline fit
(with its prefill floor) from 12 of a slice's steps forecasts the prefill and decode steps it never saw (batch sizes
or prompt lengths held out whole) within the 10% the issue asks, at every TP, on the steps of at most 16,384 tokens a
serving engine runs. The README of the dataset lists what misses: the linear and kernels fits on prefill, and the
larger forwards at TP 2-8.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simfactory.calibration.fit import fit_step_time, phase_of, shape_key
from simfactory.calibration.measurements import check_steps, read_table, within_step_tokens
from simfactory.calibration.microbench import kv_dtype_for
from simfactory.hardware.step_time import RooflineModel, StepLoad
from simfactory.paths import CALIBRATE_DIR, PROFILES_DIR
from simfactory.resolve import load_models, load_profile

DATASET = CALIBRATE_DIR / "datasets" / "muxserve-a100"
ISSUE_22_MAPE = 0.10  # "within 10% for prefill and for decode" (issue #22)
DECODE_STEPS_TIMED = 10  # MuxServe's profiler times 10 decode steps after the prompt's prefill: contexts L+1 .. L+10
SLICES = [(m, tp) for m in ("llama-7b", "llama-13b") for tp in (1, 2, 4, 8)]
# the check covers the steps a serving engine runs: vLLM's largest default token budget per step
# (max_num_batched_tokens 16,384 for the offline LLM class, EngineArgs.get_batch_defaults), TensorRT-LLM's 8,192;
# MuxServe also timed single forwards of up to 131,072 prompt tokens (README of the dataset)
SERVING_STEP_TOKENS = 16384


def source() -> pd.DataFrame:
    return pd.read_csv(DATASET / "muxserve-llama.source.csv")


def steps(model: str, tp: int) -> pd.DataFrame:
    return check_steps(read_table(DATASET / f"{model}-tp{tp}.steps.csv"))


@pytest.mark.parametrize("model,tp", SLICES)
def test_step_table_is_the_stated_conversion_of_the_source(model, tp):
    src = source()
    src = src[(src["model"] == model) & (src["tp"] == tp)]
    assert (src["sm_percent"] == 100).all() and len(src) > 0
    table = steps(model, tp)
    # -1 is the profiler's "not run" (the shape did not fit its token budget): no step for that cell
    ran_prefill, ran_decode = src[src["prefill_ms"] > 0], src[src["decoding_ms"] > 0]
    assert ((src["prefill_ms"] > 0) | (src["prefill_ms"] == -1)).all()
    assert ((src["decoding_ms"] > 0) | (src["decoding_ms"] == -1)).all()
    prefill = table[table["kind"] == "prefill"]
    decode = table[table["kind"] == "decode"]
    assert len(prefill) == len(ran_prefill) and len(decode) == len(ran_decode)
    # a prefill step of `batch` prompts of L tokens: tokens B L, pairs B L (L + 1) / 2
    b, length = ran_prefill["batch"].to_numpy(), ran_prefill["seq_len"].to_numpy()
    np.testing.assert_array_equal(prefill["prefill_seqs"], b)
    np.testing.assert_array_equal(prefill["prefill_tokens"], b * length)
    np.testing.assert_allclose(prefill["prefill_attn_pairs"], b * length * (length + 1) / 2)
    assert (prefill["decode_seqs"] == 0).all() and (prefill["kv_tokens_read"] == 0).all()
    np.testing.assert_allclose(prefill["step_s"], ran_prefill["prefill_ms"] / 1000, rtol=1e-9)
    # a decode step of `batch` sequences: the mean of 10 timed steps at contexts L+1 .. L+10, so L + 5.5 each
    b, length = ran_decode["batch"].to_numpy(), ran_decode["seq_len"].to_numpy()
    np.testing.assert_array_equal(decode["decode_seqs"], b)
    np.testing.assert_allclose(decode["kv_tokens_read"], b * (length + (DECODE_STEPS_TIMED + 1) / 2))
    assert (decode["prefill_tokens"] == 0).all()
    np.testing.assert_allclose(decode["step_s"], ran_decode["decoding_ms"] / 1000, rtol=1e-9)
    assert (phase_of(table) == np.where(table["kind"] == "prefill", "prefill", "decode")).all()
    # several shapes per phase: batch sizes and prompt lengths both vary
    lengths = prefill["prefill_tokens"] / prefill["prefill_seqs"]
    assert prefill["prefill_seqs"].nunique() >= 9 and lengths.nunique() == 5


@pytest.mark.parametrize("model,tp", SLICES)
@pytest.mark.parametrize("heldout_by", ["batch", "prompt"])
def test_twelve_steps_forecast_unseen_prefill_and_decode_steps_within_issue_22s_bar(model, tp, heldout_by):
    table, left_out = within_step_tokens(steps(model, tp), SERVING_STEP_TOKENS)
    assert left_out == int((steps(model, tp)["prefill_tokens"] > SERVING_STEP_TOKENS).sum())
    arch = load_models([PROFILES_DIR])[model]
    spec = load_profile([PROFILES_DIR], "a100-80gb", "sku", "sku").spec
    result = fit_step_time(table, "roofline", (arch, spec, "fp16", kv_dtype_for("fp16"), tp),
                           heldout_by=heldout_by, max_train=12)
    assert result.kind == "roofline" and result.n_train == 12
    pred = result.predictions
    train = (pred["split"] == "train").to_numpy()
    key, phase = shape_key(table, heldout_by), phase_of(table)
    for ph in ("prefill", "decode"):
        in_phase = phase == ph
        # the split holds out whole shapes: held-out rows whose batch size (or prompt / context length) no
        # training row of this phase has, and there are many of them
        unseen = in_phase & ~train & ~np.isin(key, key[in_phase & train])
        assert unseen.sum() >= 15
        assert float(np.abs(pred["error"][unseen]).mean()) < ISSUE_22_MAPE
        err = result.phases[ph]
        assert err.mape is not None and err.mape < ISSUE_22_MAPE
        rows = pred[(pred["split"] == "heldout") & (pred["phase"] == ph)]
        assert err.n == len(rows) and err.mape == pytest.approx(float(np.abs(rows["error"]).mean()))


@pytest.mark.parametrize("model,tp", [("llama-7b", 4), ("llama-13b", 8)])
def test_the_prefill_floor_is_what_lets_small_prefills_be_forecast(model, tp):
    """At TP >= 2 a prefill of a few hundred tokens takes as long as one of 32 (7B TP4: ~20 ms, decode ~13 ms): the
    host launching an eager forward. Without the fitted floor the same fit forecasts those prefills 20-38% fast."""
    table, _ = within_step_tokens(steps(model, tp), SERVING_STEP_TOKENS)
    arch = load_models([PROFILES_DIR])[model]
    spec = load_profile([PROFILES_DIR], "a100-80gb", "sku", "sku").spec
    result = fit_step_time(table, "roofline", (arch, spec, "fp16", kv_dtype_for("fp16"), tp), heldout_by="prompt",
                           max_train=12)
    floor = result.step_time.prefill_floor_s
    small = (table["prefill_tokens"] > 0) & (table["prefill_tokens"] <= 256)
    assert 0.8 * table["step_s"][small].min() <= floor <= 1.1 * table["step_s"][small].max()
    without = RooflineModel(arch, spec, result.step_time.model_copy(update={"prefill_floor_s": 0.0}), "fp16", "fp16",
                            tp)
    loads = [StepLoad(int(a), int(b), float(c), float(d)) for a, b, c, d in
             table.loc[small, ["prefill_tokens", "decode_seqs", "kv_tokens_read", "prefill_attn_pairs"]].itertuples(
                 index=False)]
    fast = np.array([without.step_s(ld) for ld in loads]) / table["step_s"][small].to_numpy() - 1.0
    assert fast.mean() < -0.15
    assert float(np.abs(result.predictions["error"][small]).mean()) < ISSUE_22_MAPE


def test_within_step_tokens_keeps_the_steps_an_engine_budget_allows():
    table = steps("llama-7b", 4)
    kept, left_out = within_step_tokens(table, 4096)
    tokens = table["prefill_tokens"] + table["decode_seqs"]
    assert left_out == int((tokens > 4096).sum()) > 0 and len(kept) + left_out == len(table)
    assert (kept["prefill_tokens"] + kept["decode_seqs"] <= 4096).all()
    assert within_step_tokens(table, 10**9)[1] == 0
