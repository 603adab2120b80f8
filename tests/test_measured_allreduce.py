"""A profile's measured all-reduce bus bandwidth (spec.allreduce_bus_gb_s): for the group sizes it lists, the ring's
bandwidth term runs at that rate in the roofline and replaces the kernel tables' all-reduce (L40S: the tables'
collectors lack GPU peer-to-peer). nccl-tests' busbw is defined as 2 (n-1)/n x bytes / time, so a ring all-reduce
of M bytes takes 2 (n-1)/n x M / busbw plus its latency."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import resolved_deployment

from simfactory.config.loader import load_model_file
from simfactory.config.profile import HardwareProfile, ModelCatalog, Spec
from simfactory.errors import InputError, InputErrors
from simfactory.hardware.collectives import Links, allreduce_s
from simfactory.hardware.kernels import kernel_step_time
from simfactory.hardware.step_time import StepLoad

ROOT = Path(__file__).resolve().parents[1]
MODELS = {m.id: m for m in load_model_file(ModelCatalog, ROOT / "hardware_profiles" / "models.yaml").models}
L40S = load_model_file(HardwareProfile, ROOT / "hardware_profiles" / "l40s.yaml")


def spec(**kw) -> Spec:
    base = {"hbm_gb": 48, "hbm_tb_s": 0.864, "bf16_tflops": 362, "tdp_w": 350, "interconnect_gb_s": 32,
            "interconnect_latency_s": 8e-6, "source": "test", "as_of": "2026-12"}
    return Spec.model_validate({**base, **kw})


def test_a_measured_group_size_runs_at_its_bus_bandwidth_and_others_at_the_link():
    links = Links.of(spec(allreduce_bus_gb_s={4: 20.0, 8: 10.0}))
    m = 16 * 2**20
    assert allreduce_s(m, 4, links) == pytest.approx(2 * 3 / 4 * m / 20e9 + 8e-6)
    assert allreduce_s(m, 8, links) == pytest.approx(2 * 7 / 8 * m / 10e9 + 8e-6)
    assert allreduce_s(m, 2, links) == pytest.approx(m / 32e9 + 8e-6)  # not listed: the link's bandwidth
    assert allreduce_s(m, 1, links) == 0.0
    plain = Links.of(spec())
    assert allreduce_s(m, 8, plain) == pytest.approx(2 * 7 / 8 * m / 32e9 + 8e-6)


@pytest.mark.parametrize("bad", [{1: 10.0}, {4: 0.0}, {4: -3.0}, {"four": 10.0}])
def test_bad_measured_bandwidth_is_refused(bad):
    with pytest.raises(ValueError, match="allreduce_bus_gb_s"):
        spec(allreduce_bus_gb_s=bad)


def test_the_l40s_tables_all_reduce_is_replaced_at_the_measured_group_sizes():
    arch = MODELS["llama-3.1-70b"]
    links = Links.of(L40S.spec)
    args = (arch, "llama-3.1-70b", "l40s", "trtllm", None, "fp8", "fp8")
    for tp, busbw in ((4, 21.85e9), (8, 14.27e9)):
        tables = kernel_step_time(*args, tp, 0.001)
        measured = kernel_step_time(*args, tp, 0.001, links=links)
        assert tables is not None and measured is not None
        assert "measured" in measured.label and "measured" not in tables.label
        for tokens in (1, 37, 256, 2048, 100_000):
            load = StepLoad(tokens, 0, 0.0, tokens * (tokens + 1) / 2)
            want = 2 * arch.layers * (2 * (tp - 1) / tp * tokens * arch.hidden * 2 / busbw + 8e-6)
            got, before = measured.breakdown_s(load), tables.breakdown_s(load)
            assert got["allreduce"] == pytest.approx(want, rel=1e-9)
            assert got["linear"] == pytest.approx(before["linear"], rel=1e-9)  # only the collectives change
            assert measured.step_s(load) - tables.step_s(load) == pytest.approx(want - before["allreduce"], rel=1e-9)
        # the tables' collectors went through host memory past two GPUs: the measured server is much faster
        big = StepLoad(8192, 0, 0.0, 8192 * 4096.5)
        assert measured.breakdown_s(big)["allreduce"] < tables.breakdown_s(big)["allreduce"] / 3
    one = kernel_step_time(MODELS["llama-3.1-8b"], "llama-3.1-8b", "l40s", "trtllm", None, "fp8", "fp8", 1,
                           0.001, links=links)
    assert one is not None and one.breakdown_s(StepLoad(512, 0, 0.0, 512 * 256.5))["allreduce"] == 0.0


def test_a_sku_without_measured_bandwidth_keeps_its_tables():
    h100 = load_model_file(HardwareProfile, ROOT / "hardware_profiles" / "h100-sxm.yaml")
    assert h100.spec.allreduce_bus_gb_s is None
    arch = MODELS["llama-3.1-70b"]
    args = (arch, "llama-3.1-70b", "h100-sxm", "tensorrt-llm", None, "fp8", "fp8", 4, 0.001)
    a, b = kernel_step_time(*args), kernel_step_time(*args, links=Links.of(h100.spec))
    load = StepLoad(1000, 16, 16_000.0, 1000 * 500.5)
    assert a is not None and b is not None and a.step_s(load) == b.step_s(load) and a.label == b.label


def test_a_resolved_l40s_deployment_uses_the_measured_all_reduce():
    d = resolved_deployment("tensorrt-llm-0", "l40s", "llama-3.1-70b", 8, "fp8")
    assert d.step_time_source.startswith("measured kernels") and "14.27 GB/s" in d.step_time_source


def test_a_profile_file_with_a_bad_bandwidth_names_the_field(tmp_path):
    text = (ROOT / "hardware_profiles" / "l40s.yaml").read_text()
    bad = tmp_path / "l40s.yaml"
    bad.write_text(text.replace("allreduce_bus_gb_s: {2: 21.14, 4: 21.85, 8: 14.27}", "allreduce_bus_gb_s: {8: -1}"))
    with pytest.raises((InputError, InputErrors)) as e:
        load_model_file(HardwareProfile, bad)
    assert "allreduce_bus_gb_s" in str(e.value) and "l40s.yaml" in str(e.value)


def test_a_kernel_fit_prices_the_same_all_reduce_as_the_deployment_it_calibrates(tmp_path):
    """`calibrate fit --fit kernels` fits its terms against the step the simulation will price: on L40S at TP 4 that
    is the measured all-reduce, not the tables' (else the fitted linear scale would absorb the tables' slow
    collectives and then apply them to the fast ones)."""
    from simfactory.calibration.fit import KernelsContext
    from simfactory.calibration.microbench import publish

    arch = MODELS["llama-3.1-70b"]
    ctx = KernelsContext(arch, "llama-3.1-70b", "l40s", "trtllm", "fp8", "fp8", 4, links=Links.of(L40S.spec))
    resolved = kernel_step_time(arch, "llama-3.1-70b", "l40s", "trtllm", None, "fp8", "fp8", 4, 0.0,
                                links=Links.of(L40S.spec))
    load = StepLoad(2048, 32, 32 * 1500.0, 2048 * 1024.5)
    assert ctx.model_for().step_s(load) == resolved.step_s(load)
    # publish builds that context from the profile: steps generated on the measured all-reduce fit back to the
    # tables' GEMMs (linear scale 1) with the overhead they were given
    import pandas as pd

    from simfactory.config.profile import KernelsStepTime

    truth = ctx.model_for(KernelsStepTime(overhead_s=0.002))
    rows = [dict(prefill_tokens=0, decode_seqs=b, kv_tokens_read=b * 1024, prefill_attn_pairs=0.0, prefill_seqs=0)
            for b in (1, 4, 16, 64, 128)]
    rows += [dict(prefill_tokens=t, decode_seqs=0, kv_tokens_read=0, prefill_attn_pairs=t * (t + 1) / 2,
                  prefill_seqs=1) for t in (512, 2048, 4096)]
    steps = pd.DataFrame(rows)
    steps["step_s"] = [truth.step_s(StepLoad(r.prefill_tokens, r.decode_seqs, float(r.kv_tokens_read),
                                             float(r.prefill_attn_pairs))) for r in steps.itertuples()]
    run = publish(steps, sku="l40s", model="llama-3.1-70b", engine="tensorrt-llm-0", dtype="fp8", tp=4,
                  profiles_dir=tmp_path, provenance={}, arch=arch, profile=L40S, kind="kernels")
    fitted = run.fit.step_time
    assert fitted.linear_scale == pytest.approx(1.0, abs=0.01) and fitted.overhead_s == pytest.approx(0.002, rel=0.05)
    assert fitted.allreduce_bus_gb_s == pytest.approx(21.85)  # the entry keeps what it was fitted against


@pytest.mark.parametrize("bad, why", [({"allreduce_bus_gb_s": {16: 10.0}}, "wider than the scale-up domain"),
                                      ({"allreduce_bus_gb_s": {4: 10.0}, "interconnect_gb_s": None}, "interconnect_gb_s")])
def test_a_measured_size_must_run_inside_one_domain_on_a_link(bad, why):
    with pytest.raises(ValueError, match=why):
        spec(**bad)


def test_a_calibrated_kernel_entry_keeps_the_all_reduce_it_was_fitted_with(tmp_path):
    """An entry records the measured bandwidth its fit priced all-reduces with; resolving it uses that, whatever the
    profile says later, and an entry that records none (fitted on the tables' all-reduce) gets the tables'."""
    from simfactory.config.profile import KernelsStepTime
    from simfactory.resolve.step_time import kernel_model

    arch = MODELS["llama-3.1-70b"]
    d = resolved_deployment("tensorrt-llm-0", "l40s", "llama-3.1-70b", 4, "fp8")
    load = StepLoad(8192, 0, 0.0, 8192 * 4096.5)

    def allreduce(fit):
        model, _ = kernel_model(d.config, L40S, arch, [ROOT / "hardware_profiles"], "fp8", d.engine_preset, fit)
        return model.breakdown_s(load)["allreduce"]

    at = {bw: allreduce(KernelsStepTime(overhead_s=0.001, allreduce_bus_gb_s=bw)) for bw in (21.85, 10.0)}
    assert at[10.0] == pytest.approx(at[21.85] * 21.85 / 10.0, rel=0.01)  # bandwidth-bound at 8k tokens
    tables = allreduce(KernelsStepTime(overhead_s=0.001))
    assert tables > 3 * at[21.85]  # the tables' host-memory all-reduce


def test_the_roofline_fit_starts_its_floor_within_bounds_when_every_prefill_is_slow():
    """A slow device (every prefill measured over a second) must not start the floor past its 1 s bound."""
    import pandas as pd

    from simfactory.calibration.fit import RooflineContext, fit_step_time

    rows = [dict(prefill_tokens=t, decode_seqs=0, kv_tokens_read=0, prefill_attn_pairs=t * (t + 1) / 2,
                 prefill_seqs=1, step_s=1.5 + t * 1e-4) for t in (256, 512, 1024, 2048, 4096)]
    rows += [dict(prefill_tokens=0, decode_seqs=b, kv_tokens_read=b * 512, prefill_attn_pairs=0.0, prefill_seqs=0,
                  step_s=0.2 + b * 1e-3) for b in (1, 2, 4, 8, 16, 32)]
    fit = fit_step_time(pd.DataFrame(rows), "roofline",
                        RooflineContext(MODELS["llama-3.1-8b"], L40S.spec, "bf16", "bf16", 1, L40S.roofline))
    assert fit.kind == "roofline"


def test_training_data_parallel_rings_use_the_measured_bandwidth():
    from simfactory.hardware.training import dp_ring_s

    links = Links.of(L40S.spec)
    m = 64 * 2**20
    assert dp_ring_s(m, 8, 8, links) == pytest.approx(2 * 7 / 8 * m / 14.27e9 + 14 * 8e-6)
