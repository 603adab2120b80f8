"""Training speed from hardware: closed forms (compute-only time, ring all-reduce, pipeline bubble, ZeRO memory),
the MFU prior fitted to one published run and checked on another (Meta's Llama 3 405B), the scenario path (derived
tokens/s, memory check, input-pipeline cap, serving beside training) and hostile values for every new field."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import scenario_doc, write_case
from typer.testing import CliRunner

from simfactory.calibration.training_runs import CALIBRATION, VALIDATION, calibrate, predicted_mfu
from simfactory.cli import app
from simfactory.config.profile import LinearStepTime
from simfactory.config.training import TrainingJob
from simfactory.errors import InputError, InputErrors
from simfactory.hardware.collectives import ring_allreduce_s
from simfactory.hardware.step_time import LinearModel, StepLoad
from simfactory.hardware.training import (
    Layout,
    calibrated_gemm_efficiency,
    memory_per_device,
    model_flops_per_token,
    pipeline_bubble_fraction,
    step_breakdown,
)
from simfactory.paths import PROFILES_DIR
from simfactory.resolve.files import load_models, load_profile
from simfactory.resolve.training import ScaledStepTime
from simfactory.sim.training import progress_fraction

runner = CliRunner()
MODELS = load_models([PROFILES_DIR])
H100 = load_profile([PROFILES_DIR], "h100-sxm", "h100-sxm.yaml", "sku")
H200 = load_profile([PROFILES_DIR], "h200", "h200.yaml", "sku")
L8B, L70B = MODELS["llama-3.1-8b"], MODELS["llama-3.1-70b"]
BASE = Layout(tp=1, pp=1, dp=1, seq_len_tokens=4096, global_batch_tokens=4096 * 64, microbatches=64)


def lay(**kw: Any) -> Layout:
    return Layout(**{**BASE.__dict__, **kw})


# ---- closed forms ------------------------------------------------------------------------------------------------
def test_compute_only_step_is_flops_over_peak_times_efficiency():
    b = step_breakdown(L8B, H100.spec, "bf16", BASE, 0.5)
    flops = BASE.global_batch_tokens * (6 * 8.03e9 + 12 * 32 * 4096 * 4096)
    assert b.compute_s == pytest.approx(flops / (989.4e12 * 0.5))
    assert b.step_s == b.compute_s and b.pp_bubble_s == b.tp_comm_s == b.dp_comm_s == 0
    assert b.mfu == pytest.approx(0.5)  # nothing but compute: MFU is the GEMM efficiency
    assert b.tokens_per_s == pytest.approx(BASE.global_batch_tokens / b.compute_s)
    fp8 = step_breakdown(L8B, H100.spec, "fp8", BASE, 0.5)
    assert fp8.compute_s == pytest.approx(b.compute_s * 989.4 / 1978.9)


def test_activation_checkpointing_recomputes_the_forward():
    plain = step_breakdown(L8B, H100.spec, "bf16", BASE, 0.5)
    ckpt = step_breakdown(L8B, H100.spec, "bf16", lay(activation_checkpointing=True), 0.5)
    assert ckpt.compute_s == pytest.approx(plain.compute_s * 4 / 3)  # (6N + 2N) / 6N, attention alike
    assert ckpt.mfu == pytest.approx(0.5 * 3 / 4)  # MFU counts model FLOPs only


def test_ring_allreduce_formula():
    m, n, bw, lat = 1e9, 16, 50e9, 1e-5
    assert ring_allreduce_s(m, n, bw, lat) == pytest.approx(2 * 15 / 16 * m / bw + 2 * 15 * lat)
    assert ring_allreduce_s(m, 1, bw, lat) == 0 and ring_allreduce_s(0, 8, bw, lat) == 0


def test_data_parallel_gradients_cross_the_nic_once_the_job_spans_nodes():
    job = lay(dp=16, dp_overlap_fraction=0.0)  # 16 devices: two nodes of 8
    b = step_breakdown(L8B, H100.spec, "bf16", job, 0.5)
    grad_bytes = 8.03e9 * 2
    assert b.dp_comm_s == pytest.approx(2 * 15 / 16 * grad_bytes / 50e9 + 2 * 15 * 1e-5)
    assert b.exposed_comm_s == pytest.approx(b.dp_comm_s)
    inside = step_breakdown(L8B, H100.spec, "bf16", lay(dp=8, microbatches=8), 0.5)  # one node: NVLink
    assert inside.dp_comm_s == pytest.approx(2 * 7 / 8 * grad_bytes / 450e9 + 2 * 7 * 5e-6)
    half = step_breakdown(L8B, H100.spec, "bf16", lay(dp=16, dp_overlap_fraction=0.5), 0.5)
    assert half.exposed_comm_s == pytest.approx(b.dp_comm_s / 2)
    zero3 = step_breakdown(L8B, H100.spec, "bf16", lay(dp=16, zero_stage=3), 0.5)
    assert zero3.dp_comm_s == pytest.approx(1.5 * b.dp_comm_s)  # parameters gathered again for the backward


def test_fabric_bandwidth_sets_the_data_parallel_time():
    slow = H100.spec.model_copy(update={"scale_out_gb_s": 12.5})
    fast_b = step_breakdown(L8B, H100.spec, "bf16", lay(dp=16), 0.5)
    slow_b = step_breakdown(L8B, slow, "bf16", lay(dp=16), 0.5)
    lat = 2 * 15 * 1e-5
    assert (slow_b.dp_comm_s - lat) == pytest.approx(4 * (fast_b.dp_comm_s - lat))
    assert slow_b.tokens_per_s < fast_b.tokens_per_s


def test_pipeline_bubble_and_tensor_parallel_all_reduces():
    assert pipeline_bubble_fraction(16, 32, 4) == pytest.approx(15 / 128)
    job = lay(tp=8, pp=4, microbatches=16, virtual_stages=2)
    b = step_breakdown(L70B, H100.spec, "bf16", job, 0.5)
    assert b.pp_bubble_s == pytest.approx(b.compute_s * 3 / 32)
    msg = job.microbatch_tokens * 8192 * 2
    one = 2 * 7 / 8 * msg / 450e9 + 5e-6  # inside one NVLink domain
    assert b.tp_comm_s == pytest.approx(16 * (80 / 4) * 4 * one)
    assert b.exposed_comm_s == pytest.approx(b.tp_comm_s)  # tp overlap defaults to none
    assert b.step_s == pytest.approx(b.compute_s + b.pp_bubble_s + b.exposed_comm_s)


def test_zero_stages_divide_states_over_data_parallel_ranks():
    params = 70.55e9 / (8 * 2)
    mems = [memory_per_device(L70B, lay(tp=8, pp=2, dp=8, zero_stage=z, microbatches=8)) for z in range(4)]
    assert mems[0].weights_bytes == pytest.approx(2 * params) and mems[0].grads_bytes == pytest.approx(4 * params)
    assert mems[0].optimizer_bytes == pytest.approx(12 * params)
    assert mems[1].optimizer_bytes == pytest.approx(12 * params / 8) and mems[1].grads_bytes == mems[0].grads_bytes
    assert mems[2].grads_bytes == pytest.approx(4 * params / 8) and mems[2].weights_bytes == mems[0].weights_bytes
    assert mems[3].weights_bytes == pytest.approx(2 * params / 8)
    assert [m.total_bytes for m in mems] == sorted((m.total_bytes for m in mems), reverse=True)
    # activations: min(microbatches, pp) in flight, each the stage's layers x tokens x hidden x 34 bytes / tp
    assert mems[0].activations_bytes == pytest.approx(2 * 40 * (4096 * 8192 * 34 / 8))


def test_checkpointing_keeps_only_layer_inputs():
    job = lay(tp=8, pp=2, dp=8, microbatches=8, activation_checkpointing=True)
    act = memory_per_device(L70B, job).activations_bytes
    per_token_hidden = 4096 * 8192 / 8
    assert act == pytest.approx(2 * 40 * per_token_hidden * 2 + per_token_hidden * 34)


# ---- calibration and validation against published runs --------------------------------------------------------
def test_calibration_round_trip_reproduces_the_measured_mfu():
    job = lay(tp=8, pp=4, dp=4, microbatches=16, virtual_stages=2, dp_overlap_fraction=0.5)
    eff = calibrated_gemm_efficiency(L70B, H100.spec, "bf16", job, 0.40)
    assert step_breakdown(L70B, H100.spec, "bf16", job, eff).mfu == pytest.approx(0.40)


def test_shipped_h100_priors_are_what_their_calibration_runs_imply():
    assert H100.training is not None and H100.training.calibrated
    assert H100.training.bf16_gemm_efficiency == pytest.approx(calibrate(CALIBRATION["bf16"], H100, MODELS), abs=1e-3)
    assert H100.training.fp8_gemm_efficiency == pytest.approx(calibrate(CALIBRATION["fp8"], H100, MODELS), abs=1e-3)
    assert H200.training is not None and not H200.training.calibrated  # assumed from H100, and marked so


@pytest.mark.parametrize("run", VALIDATION, ids=lambda r: r.name)
def test_llama3_405b_mfu_is_predicted_within_15_percent(run):
    """Meta, The Llama 3 Herd of Models (arXiv 2407.21783) Table 4: 43% BF16 MFU on 8,192 H100 and 41% on 16,384,
    TP8 PP16, 16M-token batches. The prior comes from a different run (llm-foundry MPT-70B)."""
    assert all(run.source != c.source for c in CALIBRATION.values())
    mfu = predicted_mfu(run, H100, MODELS, H100.training.bf16_gemm_efficiency)
    assert abs(mfu / run.mfu - 1) <= 0.15, (run.name, mfu, run.mfu)


def test_model_flops_per_token_is_six_n_plus_attention():
    assert model_flops_per_token(L70B, 8192) == pytest.approx(6 * 70.55e9 + 12 * 80 * 8192 * 8192)


# ---- interference with serving ----------------------------------------------------------------------------------
def test_shared_progress_and_serving_slowdown():
    job = TrainingJob(name="ft", pool="p", accelerators=8, work_hours=1, node_mtbf_h=100, checkpoint_cost_s=0,
                      restart_s=0, priority="idle", serving_share=0.25)
    assert progress_fraction(job, 0.4) == pytest.approx(0.4 + 0.6 * 0.75)
    assert progress_fraction(job.model_copy(update={"serving_share": None}), 0.4) == 0.4
    inner = LinearModel(spec=LinearStepTime(overhead_s=0.01, s_per_decode_seq=0.001, s_per_kv_token=1e-6))
    scaled = ScaledStepTime(inner, 4.0)
    load = StepLoad(0, 10, 5000.0, 0)
    assert scaled.step_s(load) == pytest.approx(4 * inner.step_s(load))
    a, b, n = scaled.decode_affine(10, 5000.0, 10.0, 50)
    a0, b0, n0 = inner.decode_affine(10, 5000.0, 10.0, 50)
    assert (a, b, n) == (pytest.approx(4 * a0), pytest.approx(4 * b0), n0)


def test_serving_beside_training_stretches_the_kernels_not_an_eager_prefills_launch():
    """The host's launch of an eager prefill is not what the training job slows: a step with prompt tokens takes
    max(kernels x factor, floor) on every path the engine prices it by (its own step, and the floorless model the
    engine adds the launch and the absorbed form to), and its parts add up to it."""
    from conftest import resolved_deployment

    real = resolved_deployment("sglang-0.5", "h200", "deepseek-r1", 8, "fp8").step_time
    floor_s = real.prefill_launch_s()
    scaled = ScaledStepTime(real, 2.0)
    short, long_ = StepLoad(30, 0, 0.0, 30 * 31 / 2), StepLoad(8192, 0, 0.0, 8192 * 8193 / 2)
    kernels = real.without_prefill_floor()
    assert kernels.step_s(short) * 2.0 < floor_s < kernels.step_s(long_) * 2.0
    for load in (short, long_):
        want = max(kernels.step_s(load) * 2.0, floor_s)
        assert scaled.step_s(load) == pytest.approx(want)
        assert max(scaled.without_prefill_floor().step_s(load), scaled.prefill_launch_s()) == pytest.approx(want)
        assert sum(scaled.breakdown_s(load).values()) == pytest.approx(want)
    decode = StepLoad(0, 16, 16 * 2000.0, 0.0)
    assert scaled.step_s(decode) == pytest.approx(2.0 * real.step_s(decode))


# ---- the scenario path -----------------------------------------------------------------------------------------
JOB: dict[str, Any] = dict(name="pt", pool="h100", accelerators=16, model="llama-3.1-8b", total_tokens=1e10,
                           seq_len_tokens=4096, global_batch_sequences=64, node_mtbf_h=6300.0, checkpoint_cost_s=60.0,
                           restart_s=300.0, replications=2, zero_stage=1)


def doc_with(**job: Any) -> dict[str, Any]:
    doc = scenario_doc(replicas=1)
    doc["pools"].append({"name": "h100", "sku": "h100-sxm", "count": 16, "location": "cloud"})
    doc["training"] = [{**JOB, **job}]
    return doc


def test_resolve_derives_tokens_per_s_from_the_pool_sku(case):
    rs = case(doc_with())
    est = rs.training_estimates["pt"]
    job = rs.training_jobs[0]
    assert job.tokens_per_s == pytest.approx(est.step.tokens_per_s)
    assert job.compute_hours == pytest.approx(1e10 / est.step.tokens_per_s / 3600)
    assert est.gemm_efficiency == H100.training.bf16_gemm_efficiency
    assert est.layout.dp == 16 and est.layout.microbatches == 4  # 64 sequences over 16 replicas, one each
    capped = case(doc_with(input_pipeline_tokens_per_s=1000.0))
    assert capped.training_jobs[0].tokens_per_s == 1000.0  # the data loader is the bottleneck: the min


def test_typed_in_jobs_are_left_untouched_and_the_cap_applies_to_them_too(case):
    typed = {k: v for k, v in JOB.items()
             if k not in ("model", "seq_len_tokens", "global_batch_sequences", "zero_stage")}
    doc = doc_with()
    doc["training"] = [{**typed, "tokens_per_s": 5000.0}]
    rs = case(doc)
    assert rs.training_jobs[0] is rs.scenario.training[0] and not rs.training_estimates
    doc["training"] = [{**typed, "tokens_per_s": 5000.0, "input_pipeline_tokens_per_s": 4000.0}]
    assert case(doc).training_jobs[0].tokens_per_s == 4000.0


def test_slower_fabric_and_sku_move_the_training_table(case):
    from simfactory.metrics.summary import compute_metrics
    from simfactory.sim.run import simulate

    doc = doc_with(zero_stage=3)
    doc["pools"].append({"name": "h100-slow", "sku": "h100-sxm", "count": 16, "location": "cloud",
                         "scale_out_gb_s": 6.25})
    doc["training"].append({**doc["training"][0], "name": "slow", "pool": "h100-slow"})
    doc["sim"]["horizon_s"] = 5.0
    rows = {t["job"]: t for t in compute_metrics(simulate(case(doc))).summary["finance"]["training"]}
    fast, slow = rows["pt"], rows["slow"]
    assert slow["step_dp_comm_s"] > fast["step_dp_comm_s"] and slow["step_compute_s"] == fast["step_compute_s"]
    assert slow["tokens_per_s"] < fast["tokens_per_s"]
    assert slow["compute_h"] == pytest.approx(fast["compute_h"] * fast["tokens_per_s"] / slow["tokens_per_s"])
    assert slow["usd_per_billion_tokens"] > fast["usd_per_billion_tokens"]
    assert fast["memory_per_gpu_bytes"] < fast["hbm_per_gpu_bytes"]
    assert fast["step_s"] == pytest.approx(fast["step_compute_s"] + fast["step_pp_bubble_s"]
                                           + fast["step_exposed_comm_s"])


def test_layout_that_does_not_fit_is_a_config_error_with_the_numbers(case):
    with pytest.raises((InputError, InputErrors)) as e:
        case(doc_with(model="llama-3.1-70b", global_batch_sequences=16))  # 70B unsharded on 16 GPUs
    msg = str(e.value)
    assert "training[0]: job 'pt' needs" in msg and "GB per GPU" in msg and "h100-sxm has 85.5 GB" in msg


def test_the_cli_refuses_a_layout_that_does_not_fit_in_one_line(tmp_path):
    refused(tmp_path, doc_with(model="llama-3.1-70b", global_batch_sequences=16), "training[0]",
            "needs 5")  # 70B unsharded over dp 16: ~500 GB per GPU


@pytest.mark.parametrize("job, field, contains", [
    ({"tp": 16}, "training[0].tp", "scale-up domain"),
    ({"tp": 8, "pp": 64, "accelerators": 512}, "training[0].pp", "exceed 32 layers"),
    ({"tp": 3, "dp": None, "accelerators": 15, "global_batch_sequences": 60}, "training[0].tp", "heads"),
    ({"model": "no-such-model"}, "training[0].model", "unknown model"),
])
def test_impossible_layouts_are_refused(case, job, field, contains):
    doc = doc_with(**job)
    doc["pools"][1]["count"] = 4096
    with pytest.raises((InputError, InputErrors)) as e:
        case(doc)
    assert field in str(e.value) and contains in str(e.value), str(e.value)


def test_a_sku_without_a_training_prior_needs_mfu_prior(case):
    doc = doc_with()
    doc["pools"][1]["sku"] = "b200"
    with pytest.raises((InputError, InputErrors)) as e:
        case(doc)
    assert "training[0].mfu_prior" in str(e.value)
    rs = case(doc_with(mfu_prior=0.5) | {"pools": doc["pools"]})
    assert rs.training_estimates["pt"].gemm_efficiency_source == "job mfu_prior"


# ---- hostile values: one line naming file and field, exit 2, no traceback ---------------------------------------
def refused(root: Path, doc: dict[str, Any], field: str, contains: str = "") -> None:
    path = write_case(root, copy.deepcopy(doc))
    res = runner.invoke(app, ["validate", str(path)])
    assert "Traceback" not in res.output and res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {field}"), res.output
    assert contains in lines[0], lines[0]


NUMERIC = ["seq_len_tokens", "global_batch_tokens", "global_batch_sequences", "tp", "pp", "dp", "virtual_stages",
           "zero_stage", "microbatches", "tp_overlap_fraction", "dp_overlap_fraction", "mfu_prior",
           "input_pipeline_tokens_per_s", "serving_share"]
HOSTILE = [float("nan"), -1, 1e300, "fast"]
CASES = [(f, v) for f in NUMERIC for v in HOSTILE] + [(f, v) for f in ("tp", "mfu_prior", "serving_share")
                                                      for v in (float("inf"), True)]


@pytest.mark.parametrize("field, value", CASES)
def test_hostile_values_of_every_new_numeric_field(tmp_path, field, value):
    job: dict[str, Any] = {field: value}
    if field == "global_batch_tokens":
        job["global_batch_sequences"] = None
    if field == "serving_share":
        job["priority"] = "idle"
    doc = doc_with(**job)
    doc["training"][0] = {k: v for k, v in doc["training"][0].items() if v is not None}
    refused(tmp_path, doc, f"training[0].{field}")


@pytest.mark.parametrize("job, field, contains", [
    ({"precision": "fp4"}, "training[0].precision", ""),
    ({"activation_checkpointing": "maybe"}, "training[0].activation_checkpointing", ""),
    ({"model": 7}, "training[0].model", ""),
    ({"zero_stage": 4}, "training[0].zero_stage", ""),
    ({"dp": 3}, "training[0]", "must equal accelerators (16)"),
    ({"work_hours": 10.0}, "training[0]", "not work_hours or tokens_per_s"),
    ({"global_batch_tokens": 4096.0}, "training[0]", "one of them"),
    ({"global_batch_sequences": 8}, "training[0]", "cannot feed 16"),
    ({"microbatches": 5}, "training[0]", "exceeds"),
    ({"serving_share": 0.5}, "training[0]", "only a priority idle job"),
    ({"model": None, "tp": 2, "work_hours": 5.0}, "training[0]", "set model too"),
])
def test_inconsistent_training_layouts_are_refused(tmp_path, job, field, contains):
    doc = doc_with(**job)
    doc["training"][0] = {k: v for k, v in doc["training"][0].items() if v is not None}
    if "model" not in doc["training"][0]:
        doc["training"][0] = {k: v for k, v in doc["training"][0].items()
                              if k not in ("total_tokens", "seq_len_tokens", "global_batch_sequences", "zero_stage")}
    refused(tmp_path, doc, field, contains)


def test_pool_fabric_override_is_bounded(tmp_path):
    for value in (float("nan"), -1.0, 1e9, "fast"):
        doc = doc_with()
        doc["pools"][1]["scale_out_gb_s"] = value
        refused(tmp_path / str(abs(hash(str(value)))), doc, "pools[1].scale_out_gb_s")


def test_the_uncalibrated_h200_prior_is_labelled_in_the_estimate(case):
    doc = doc_with()
    doc["pools"][1]["sku"] = "h200"
    est = case(doc).training_estimates["pt"]
    assert est.gemm_efficiency_source == "profile (uncalibrated prior)"
    assert math.isclose(est.step.compute_s, case(doc_with()).training_estimates["pt"].step.compute_s)


def test_a_derived_job_that_could_never_finish_is_refused_by_its_event_bound(case):
    with pytest.raises((InputError, InputErrors)) as e:
        case(doc_with(node_mtbf_h=0.01, checkpoint_cost_s=3600.0))  # fails far faster than it checkpoints
    assert "training[0]" in str(e.value) and "derived" in str(e.value) and "tokens/s" in str(e.value)


@pytest.mark.parametrize("field, value", [("bf16_gemm_efficiency", 1.5), ("bf16_gemm_efficiency", float("nan")),
                                          ("fp8_gemm_efficiency", 0), ("calibrated", "sometimes"),
                                          ("bf16_gemm_efficiency", "high")])
def test_hostile_training_priors_in_a_profile_name_the_profile(tmp_path, field, value):
    import yaml

    doc = doc_with()
    path = write_case(tmp_path, doc)
    profile = yaml.safe_load((PROFILES_DIR / "h100-sxm.yaml").read_text())
    profile["training"][field] = value
    target = path.parent.parent / "hardware_profiles" / "h100-sxm.yaml"
    target.write_text(yaml.safe_dump(profile))
    res = runner.invoke(app, ["validate", str(path)])
    assert "Traceback" not in res.output and res.exit_code == 2, res.output
    assert f"h100-sxm.yaml: training.{field}" in res.output, res.output


def test_checkpoints_every_n_steps_cost_more_on_a_slower_fabric(case):
    """checkpoint_every_steps (Megatron-LM's --save-interval): the interval is N steps at the job's speed, so a
    slower fabric stretches each checkpoint's interval by the step-time ratio and raises its cost."""
    from simfactory.metrics.summary import compute_metrics
    from simfactory.sim.run import simulate

    doc = doc_with(zero_stage=3, checkpoint_every_steps=500)
    doc["pools"].append({"name": "h100-slow", "sku": "h100-sxm", "count": 16, "location": "cloud",
                         "scale_out_gb_s": 6.25})
    doc["training"].append({**doc["training"][0], "name": "slow", "pool": "h100-slow"})
    doc["sim"]["horizon_s"] = 5.0
    rs = case(doc)
    for job in rs.training_jobs:
        step_s = rs.training_estimates[job.name].step.step_s
        assert job.checkpoint_interval_h == pytest.approx(500 * step_s / 3600.0)
    rows = {t["job"]: t for t in compute_metrics(simulate(rs)).summary["finance"]["training"]}
    fast, slow = rows["pt"], rows["slow"]
    ratio = slow["checkpoint_interval_h"] / fast["checkpoint_interval_h"]
    assert ratio == pytest.approx(fast["tokens_per_s"] / slow["tokens_per_s"]) and ratio > 1.5
    assert slow["usd_per_validated_checkpoint"] > 1.5 * fast["usd_per_validated_checkpoint"]
    with pytest.raises((InputError, InputErrors), match="checkpoint_every_steps: give it or checkpoint_interval_h"):
        case(doc_with(checkpoint_every_steps=500, checkpoint_interval_h=2.0))
