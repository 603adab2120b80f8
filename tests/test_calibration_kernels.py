"""`calibrate fit --fit kernels`: the kernel tables kept, what kernels miss fitted; held-out designs by step shape;
held-out error per phase; a measured `kernels` entry read back by resolve."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from conftest import default_h100_8b_deployment
import yaml

from simfactory.calibration.fit import (
    FitRefused,
    KernelsContext,
    evaluate,
    fit_step_time,
    phase_of,
    shape_key,
    split_steps,
)
from simfactory.calibration.microbench import publish
from simfactory.config.profile import KernelsStepTime
from simfactory.hardware.kernels import KernelStepTime
from simfactory.hardware.step_time import StepLoad, StepTimeModel
from simfactory.paths import PROFILES_DIR
from simfactory.resolve import load_models, load_profile

TRUE = KernelsStepTime(overhead_s=0.004, overhead_per_seq_s=2e-5, prefill_overhead_s=0.003, linear_scale=1.1,
                       prefill_attn_scale=1.3)


def context() -> KernelsContext:
    arch = load_models([PROFILES_DIR])["llama-3.1-8b"]
    return KernelsContext(arch, "llama-3.1-8b", "h100-sxm", "vllm", "bf16", "bf16", 1)


def loads(steps: pd.DataFrame) -> list[StepLoad]:
    return [StepLoad(int(r.prefill_tokens), int(r.decode_seqs), float(r.kv_tokens_read), float(r.prefill_attn_pairs))
            for r in steps.itertuples()]


def synthetic_steps(spec: KernelsStepTime = TRUE) -> pd.DataFrame:
    """Decode steps at 8 batch sizes x 2 context lengths, whole-prompt prefills of 6 lengths x 1-2 prompts."""
    rows = [dict(kind="decode", prefill_tokens=0, decode_seqs=b, kv_tokens_read=b * ctx, prefill_attn_pairs=0.0,
                 prefill_seqs=0) for b in (1, 2, 4, 8, 16, 32, 64, 128) for ctx in (512, 2048)]
    rows += [dict(kind="prefill", prefill_tokens=n * L, decode_seqs=0, kv_tokens_read=0, prefill_attn_pairs=n * L * (L + 1) / 2,
                  prefill_seqs=n) for L in (256, 512, 1024, 2048, 4096, 8192) for n in (1, 2)]
    steps = pd.DataFrame(rows)
    model = context().model_for(spec)
    assert model is not None
    steps["step_s"] = [model.step_s(ld) for ld in loads(steps)]
    return steps


@pytest.mark.parametrize("by", ["random", "batch", "prompt"])
def test_kernels_fit_recovers_the_overheads_it_was_generated_with(by):
    fit = fit_step_time(synthetic_steps(), "kernels", kernels=context(), heldout_by=by, max_train=12)
    assert fit.kind == "kernels" and fit.n_train == 12 and fit.heldout_by == by
    got = fit.step_time
    assert isinstance(got, KernelsStepTime)
    assert got.overhead_s == pytest.approx(TRUE.overhead_s, rel=0.02)
    assert got.overhead_per_seq_s == pytest.approx(TRUE.overhead_per_seq_s, rel=0.05)
    assert got.prefill_overhead_s == pytest.approx(TRUE.prefill_overhead_s, rel=0.05)
    assert got.linear_scale == pytest.approx(TRUE.linear_scale, rel=0.01)
    assert got.prefill_attn_scale == pytest.approx(TRUE.prefill_attn_scale, rel=0.03)
    assert fit.phases["prefill"].mape < 0.005 and fit.phases["decode"].mape < 0.005


def eager_steps(floor_s: float) -> pd.DataFrame:
    """Synthetic steps of an engine that launches prefill forwards eagerly: decode steps as TRUE, and prompts of
    16-8192 tokens whose steps take max(floor, TRUE's step)."""
    steps = synthetic_steps()
    short = pd.DataFrame([dict(kind="prefill", prefill_tokens=L, decode_seqs=0, kv_tokens_read=0,
                               prefill_attn_pairs=L * (L + 1) / 2, prefill_seqs=1) for L in (16, 32, 64, 128)])
    steps = pd.concat([steps, short], ignore_index=True)
    model = context().model_for(TRUE.model_copy(update={"prefill_floor_s": floor_s}))
    assert model is not None
    steps["step_s"] = [model.step_s(ld) for ld in loads(steps)]
    return steps


def test_kernels_fit_finds_an_eager_prefill_floor_and_keeps_none_where_there_is_none():
    """Short prompts measured flat in their length (the host's launch time) give a floor; the terms come from the
    steps the floor does not hold up, so the long prompts are still priced by the kernels."""
    steps = eager_steps(0.03)
    prefill = phase_of(steps) == "prefill"
    plain = context().model_for(TRUE)
    assert plain is not None
    flat = [plain.step_s(ld) < 0.03 for ld, p in zip(loads(steps), prefill) if p]
    assert 3 <= sum(flat) < len(flat)  # the floor holds up the short prompts only
    fit = fit_step_time(steps, "kernels", kernels=context(), heldout_by="random", heldout_fraction=0.25)
    got = fit.step_time
    assert got.prefill_floor_s == pytest.approx(0.03, rel=1e-6)
    assert got.linear_scale == pytest.approx(TRUE.linear_scale, rel=0.02)
    assert fit.phases["prefill"].mape < 0.01 and fit.phases["decode"].mape < 0.01
    without = fit_step_time(synthetic_steps(), "kernels", kernels=context(), heldout_by="random")
    assert without.step_time.prefill_floor_s == 0.0
    model = context().model_for(got)
    assert model is not None and "at least 30 ms (eager launch)" in model.label


def test_best_picks_kernels_when_the_tables_cover_the_deployment():
    steps = synthetic_steps()
    fit = fit_step_time(steps, "best", kernels=context(), heldout_by="batch")
    assert fit.kind == "kernels"
    assert fit_step_time(steps, "best", heldout_by="batch").kind == "linear"  # no context: no kernels candidate
    uncovered = KernelsContext(context().arch, "llama-3.1-8b", "h100-sxm", "torch-eager", "bf16", "bf16", 1)
    with pytest.raises(FitRefused, match="no kernel tables cover"):
        fit_step_time(steps, "kernels", kernels=uncovered)


def test_without_prefill_rows_the_prefill_terms_stay_at_the_tables():
    steps = synthetic_steps()
    decode = steps[steps["prefill_tokens"] == 0].reset_index(drop=True)
    fit = fit_step_time(decode, "kernels", kernels=context(), heldout_by="batch")
    assert fit.step_time.prefill_overhead_s == 0.0 and fit.step_time.prefill_attn_scale == 1.0
    assert fit.phases["prefill"].n == 0 and fit.phases["prefill"].mape is None
    assert "heldout_prefill_mape" in fit.summary() and fit.summary()["n_heldout_decode"] == fit.n_heldout


def test_per_phase_errors_are_computed_on_each_phases_held_out_rows():
    steps = synthetic_steps()
    exact = context().model_for(TRUE)
    assert exact is not None

    class SlowPrefill(StepTimeModel):  # exact on decode-only steps, 10 % slow on steps with prefill
        def step_s(self, load: StepLoad) -> float:
            return exact.step_s(load) * (1.1 if load.prefill_tokens else 1.0)

    heldout = np.arange(len(steps)) % 3 == 0
    fit = evaluate("kernels", TRUE, SlowPrefill(), steps, heldout)  # type: ignore[arg-type]
    prefill = phase_of(steps) == "prefill"
    assert fit.phases["prefill"].n == int((heldout & prefill).sum()) > 0
    assert fit.phases["decode"].n == int((heldout & ~prefill).sum()) > 0
    assert fit.phases["prefill"].mape == pytest.approx(0.1) and fit.phases["prefill"].bias == pytest.approx(0.1)
    assert fit.phases["decode"].mape == pytest.approx(0.0, abs=1e-12)
    assert fit.heldout_mape == pytest.approx(0.1 * fit.phases["prefill"].n / fit.n_heldout)
    assert set(fit.predictions["phase"]) == {"prefill", "decode"}


def test_heldout_by_batch_forecasts_batch_sizes_it_never_trained_on():
    steps = synthetic_steps()
    heldout = split_steps(steps, "batch")
    decode = (phase_of(steps) == "decode")
    key = shape_key(steps, "batch")
    train_b, held_b = set(key[decode & ~heldout]), set(key[decode & heldout])
    assert train_b.isdisjoint(held_b) and held_b == {2, 8, 32}  # every second one, not the largest
    assert min(key[decode]) in train_b and max(key[decode]) in train_b
    by_prompt = split_steps(steps, "prompt")
    prompt_key = shape_key(steps, "prompt")
    prefill = ~decode
    assert set(prompt_key[prefill & by_prompt]) == {512, 2048}
    capped = split_steps(steps, "batch", max_train=6)
    assert (~capped).sum() == 6 and not (~capped & heldout).any()  # only training rows move to held-out
    with pytest.raises(FitRefused):
        split_steps(steps.iloc[:5], "batch")


def test_kernels_profile_is_read_back_by_resolve_and_reproduces_the_steps(tmp_path):
    steps = synthetic_steps()
    arch = load_models([PROFILES_DIR])["llama-3.1-8b"]
    profile = load_profile([PROFILES_DIR], "h100-sxm", "x", "sku")
    run = publish(steps, sku="h100-sxm", model="llama-3.1-8b", engine="vllm", dtype="bf16", tp=1,
                  profiles_dir=tmp_path / "hardware_profiles", provenance={"gpu": "test"}, arch=arch, profile=profile,
                  kind="kernels", heldout_by="batch", max_train=12)
    doc = yaml.safe_load(run.profile_path.read_text())
    assert doc["step_time"]["kind"] == "kernels"
    assert "split batch" in doc["provenance"]["fit"]
    assert doc["provenance"]["fit_heldout_prefill"].startswith("MAPE") and "bias" in doc["provenance"]["fit_heldout_decode"]

    rs, dep = default_h100_8b_deployment(tmp_path)
    assert dep.step_time_source.startswith("measured")
    assert isinstance(dep.step_time, KernelStepTime)
    assert dep.step_time.prefill_attn_scale == pytest.approx(run.fit.step_time.prefill_attn_scale)
    predicted = [dep.step_time.step_s(ld) for ld in loads(steps)]
    np.testing.assert_allclose(predicted, run.fit.predictions["predicted_s"], rtol=1e-12)
    np.testing.assert_allclose(predicted, steps["step_s"], rtol=0.01)


def test_a_model_of_a_tabled_shape_fits_on_that_models_tables(tmp_path):
    """calibrate fit / run on Llama-3.3-70B steps (the tables hold Llama-3.1-70B, the same shape): the kernels fit
    runs on Llama-3.1-70B's tables, as `run` does, instead of being refused."""
    models = load_models([PROFILES_DIR])
    profile = load_profile([PROFILES_DIR], "h100-sxm", "x", "sku")
    twin = KernelsContext(models["llama-3.1-70b"], "llama-3.1-70b", "h100-sxm", "vllm", "fp8", "fp8", 2)
    base = twin.model_for()
    assert base is not None
    steps = synthetic_steps().iloc[:20].copy()
    steps["step_s"] = [base.step_s(ld) * 1.1 + 0.003 for ld in loads(steps)]
    alone = KernelsContext(models["llama-3.3-70b"], "llama-3.3-70b", "h100-sxm", "vllm", "fp8", "fp8", 2)
    assert alone.model_for() is None  # the tables hold no llama-3.3-70b
    run = publish(steps, sku="h100-sxm", model="llama-3.3-70b", engine="vllm", dtype="fp8", tp=2,
                  profiles_dir=tmp_path / "hardware_profiles", provenance={"gpu": "test"},
                  arch=models["llama-3.3-70b"], profile=profile, kind="kernels", max_train=12)
    assert run.fit.kind == "kernels"
    same = publish(steps, sku="h100-sxm", model="llama-3.1-70b", engine="vllm", dtype="fp8", tp=2,
                   profiles_dir=tmp_path / "other", provenance={"gpu": "test"}, arch=models["llama-3.1-70b"],
                   profile=profile, kind="kernels", max_train=12)
    assert run.fit.step_time == same.fit.step_time


def test_a_floor_over_every_training_prompt_leaves_the_prefill_terms_at_the_tables():
    """Every training prompt under an 80 ms floor: the prompts say nothing of the kernels, so the prefill terms
    stay at the tables' values instead of bending to explain the floor, and a long prompt is still priced by them."""
    steps = eager_steps(0.08)
    prefill = phase_of(steps) == "prefill"
    short = prefill & (steps["step_s"].to_numpy() <= 0.08 * 1.0001)
    train_only = steps[~prefill | short].reset_index(drop=True)
    fit = fit_step_time(train_only, "kernels", kernels=context(), heldout_by="random")
    got = fit.step_time
    assert got.prefill_floor_s == pytest.approx(0.08, rel=1e-6)
    assert got.prefill_overhead_s < 0.002 and got.prefill_attn_scale == pytest.approx(1.0, abs=0.05)
    tables = context().model_for(TRUE.model_copy(update={"prefill_overhead_s": 0.0, "prefill_attn_scale": 1.0}))
    model = context().model_for(got)
    assert tables is not None and model is not None
    long = StepLoad(32768, 0, 0.0, 32768 * 32769 / 2)  # priced by the tables' prefill, not bent by the floor
    assert model.step_s(long) == pytest.approx(tables.step_s(long), rel=0.02)


def test_a_step_tables_computed_tokens_are_priced_as_the_engine_prices_them():
    """A latent-attention engine re-expands a prompt's computed tokens (a cached prefix, earlier chunks) from the cached
    latent: with the step table's computed_tokens column the fit prices that as resolve will (the tables' own, not
    fitted) and recovers the terms; without it, that time is folded into the fitted prefill terms, which the engine
    would then charge again on top of its own re-expansion."""
    from simfactory.hardware.step_time import idle_step_s

    arch = load_models([PROFILES_DIR])["deepseek-r1"]
    ctx = KernelsContext(arch, "deepseek-r1", "h200", "vllm", "fp8", "bf16", 8, mla_kv_up_share=arch.mla_kv_up_share(8))
    truth = ctx.model_for(TRUE)
    assert truth is not None and truth.prefix_up_s_per_token() > 0
    rows = [dict(kind="decode", prefill_tokens=0, decode_seqs=b, kv_tokens_read=b * c, prefill_attn_pairs=0.0,
                 computed_tokens=0) for b in (1, 4, 16, 64) for c in (512, 4096)]
    rows += [dict(kind="prefill", prefill_tokens=n, decode_seqs=0, kv_tokens_read=0, computed_tokens=c,
                  prefill_attn_pairs=n * (c + (n + 1) / 2)) for n in (512, 2048, 8192) for c in (0, 8192, 32768)]
    steps = pd.DataFrame(rows)
    steps["step_s"] = [idle_step_s(truth, StepLoad(int(r.prefill_tokens), int(r.decode_seqs), float(r.kv_tokens_read),
                                                   float(r.prefill_attn_pairs), int(r.computed_tokens)))[0]
                       for r in steps.itertuples()]
    seen = fit_step_time(steps, "kernels", kernels=ctx)  # the extension scales with prompt attention, as resolve's
    assert seen.step_time.prefill_attn_scale == pytest.approx(TRUE.prefill_attn_scale, rel=1e-3)
    assert seen.phases["prefill"].mape < 1e-3
    blind = fit_step_time(steps.drop(columns="computed_tokens"), "kernels", kernels=ctx)
    assert blind.phases["prefill"].mape > 5 * seen.phases["prefill"].mape
