"""Issue #22's calibrated check on a public measured per-phase table (calibrate/datasets/lmdeploy-a100/).

The step table is derived from LMDeploy's published static-inference table (llama2-70b, TP4, A100-80G) by the
conversion its README states; these tests check that derivation against the transcribed source, then that a fit
from 12 of its steps forecasts the decode steps it never saw (every batch-16 step among them) within the 10% the
issue asks. The prefill side of the table has one batch size and three prompt lengths, too few for a held-out check.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simfactory.calibration.fit import KernelsContext, fit_step_time, phase_of
from simfactory.calibration.measurements import check_steps, read_table
from simfactory.paths import CALIBRATE_DIR, PROFILES_DIR
from simfactory.resolve import load_models

DATASET = CALIBRATE_DIR / "datasets" / "lmdeploy-a100"
ISSUE_22_MAPE = 0.10  # "within 10% for prefill and for decode" (issue #22)


def source() -> pd.DataFrame:
    return pd.read_csv(DATASET / "llama2-70b-tp4.source.csv")


def steps() -> pd.DataFrame:
    return check_steps(read_table(DATASET / "llama2-70b-tp4.steps.csv"))


def test_step_table_is_the_stated_conversion_of_the_source():
    src, table = source(), steps()
    lone = src[src["batch"] == 1]
    prefill = table[table["kind"] == "prefill"]
    # a lone prompt's first-token latency is one prefill of its prompt: tokens L, pairs L (L + 1) / 2
    assert prefill["prefill_tokens"].tolist() == lone["prompt_tokens"].tolist()
    assert (prefill["prefill_seqs"] == 1).all() and (prefill["decode_seqs"] == 0).all()
    length = prefill["prefill_tokens"].to_numpy(dtype=float)
    np.testing.assert_allclose(prefill["prefill_attn_pairs"], length * (length + 1) / 2)
    np.testing.assert_allclose(prefill["step_s"], lone["ftl_ave_s"])
    # a decode step at batch B: the median inter-token time, at the median step's context P + O/2
    decode = table[table["kind"] == "decode"]
    assert len(decode) == len(src)
    np.testing.assert_array_equal(decode["decode_seqs"], src["batch"])
    context = src["prompt_tokens"] + src["output_tokens"] // 2
    np.testing.assert_allclose(decode["kv_tokens_read"], src["batch"] * (context + 1))
    np.testing.assert_allclose(decode["step_s"], src["token_p50_s"])
    assert (phase_of(table) == np.where(table["kind"] == "prefill", "prefill", "decode")).all()


def kernels_context() -> KernelsContext:
    arch = load_models([PROFILES_DIR])["llama-2-70b"]
    return KernelsContext(arch, "llama-2-70b", "a100-80gb", "tensorrt-llm", "fp16", "fp16", 4)


@pytest.mark.parametrize("kind", ["linear", "kernels"])
def test_twelve_steps_forecast_unseen_decode_steps_within_issue_22s_bar(kind):
    table = steps()
    result = fit_step_time(table, kind, kernels=kernels_context() if kind == "kernels" else None,
                           heldout_by="batch", max_train=12)
    assert result.kind == kind and result.n_train == 12
    held = result.predictions[result.predictions["split"] == "heldout"]
    # the batch split holds out a whole batch size the fit never saw (16: ranked second of 1, 16, 32, 64)
    unseen = table[(table["kind"] == "decode") & (table["decode_seqs"] == 16)]
    assert set(unseen.index) <= set(held.index)
    decode = result.phases["decode"]
    assert decode.n >= len(unseen)
    assert decode.mape is not None and decode.mape < ISSUE_22_MAPE
    # the phase figure is the mean of the held-out decode rows' absolute errors
    rows = held[held["phase"] == "decode"]
    assert decode.mape == pytest.approx(float(np.abs(rows["error"]).mean()))
