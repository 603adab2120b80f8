"""A calibrated step-time entry describes one parallel layout: the model, engine, dtype and TP it was measured at and
whether attention ran data-parallel and experts expert-parallel. A DeepSeek-R1 step on 8 GPUs with attention split
into 8 groups and experts spread over 8 ranks is not the step of the same 8 GPUs in plain tensor parallelism, so an
entry measured one way must not price the other."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from simfactory.resolve import load_and_resolve

ENTRY = {"model": "deepseek-r1", "engine": "sglang", "dtype": "fp8", "tp": 8, "source": "measured",
         "step_time": {"kind": "linear", "overhead_s": 0.05}}


def scenario(tmp_path: Path, entry: dict, **layout: int) -> Path:
    (tmp_path / "hardware_profiles" / "h200").mkdir(parents=True, exist_ok=True)
    (tmp_path / "hardware_profiles" / "h200" / "r1.yaml").write_text(yaml.safe_dump(entry))
    doc = {"name": "layout", "seed": 1,
           "pools": [{"name": "p", "sku": "h200", "count": 8, "location": "cloud"}],
           "deployments": [{"name": "d", "model": "deepseek-r1", "pool": "p", "replicas": 1, "tp": 8, "dtype": "fp8",
                            "engine": "sglang", **layout}],
           "traffic": {"arrival": {"process": "poisson", "rate_per_s": 1.0},
                       "classes": [{"name": "c", "target": "d", "input_tokens": {"kind": "fixed", "value": 100},
                                    "output_tokens": {"kind": "fixed", "value": 10}}]},
           "sim": {"horizon_s": 10.0}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def source(path: Path) -> str:
    return load_and_resolve(path).deployments[0].step_time_source


def test_an_entry_prices_only_the_layout_it_was_measured_at(tmp_path):
    plain = source(scenario(tmp_path, ENTRY))
    assert plain.startswith("measured (") and "r1.yaml" in plain
    wide = source(scenario(tmp_path, ENTRY, dp_attention=8, ep=8))
    assert wide.startswith("measured kernels") and "r1.yaml" not in wide  # the tables' DP-attention + EP8 layout
    ep_only = source(scenario(tmp_path, ENTRY, ep=8))
    assert "r1.yaml" not in ep_only


def test_an_entry_for_a_wide_layout_prices_that_layout_and_not_plain_tp(tmp_path):
    wide_entry = {**ENTRY, "dp_attention": 8, "ep": 8}
    assert "r1.yaml" in source(scenario(tmp_path, wide_entry, dp_attention=8, ep=8))
    assert "r1.yaml" in source(scenario(tmp_path, wide_entry, dp_attention=8, expert_parallel=True))  # ep = tp
    assert "r1.yaml" not in source(scenario(tmp_path, wide_entry))


def test_a_layout_that_cannot_exist_is_refused():
    import pytest
    from pydantic import ValidationError

    from simfactory.config.profile import StepTimeEntry

    for bad in ({"ep": 16}, {"dp_attention": 3}):
        with pytest.raises(ValidationError, match="does not divide tp"):
            StepTimeEntry.model_validate({**ENTRY, **bad})


def test_an_entry_of_another_layout_is_named_in_a_warning(tmp_path):
    """A deployment whose (model, engine, dtype, TP) has entries only for other layouts is told so, since it runs on
    the tables or the roofline instead of the calibration its author may expect."""
    rs = load_and_resolve(scenario(tmp_path, ENTRY, dp_attention=8, ep=8))
    said = [w for w in rs.warnings if "other parallel layouts" in w]
    assert len(said) == 1 and "r1.yaml (dp_attention 1, ep 1)" in said[0] and "dp_attention 8, ep 8" in said[0]
    assert not [w for w in load_and_resolve(scenario(tmp_path, ENTRY)).warnings if "other parallel layouts" in w]


def test_dp_attention_pays_the_host_sync_of_the_whole_tensor_parallel_group(tmp_path):
    """With attention data-parallel, every step still all-gathers each rank's batch over the whole group (SGLang's
    prepare_mlp_sync_batch) and the expert layers' collectives span it, so the kernel path's engine-overhead prior
    grows with the deployment's TP, not its attention ranks': DP8 on 8 GPUs pays what TP8 pays, more than TP1."""
    from conftest import shipped_engines

    from simfactory.hardware.kernels import AttentionRanks, KernelStepTime

    overhead = shipped_engines()["sglang"].kernels.overhead
    paid = {}
    for name, layout in (("tp8", {}), ("dp8", {"dp_attention": 8, "ep": 8})):
        path = scenario(tmp_path, ENTRY, **layout)
        (tmp_path / "hardware_profiles" / "h200" / "r1.yaml").unlink()  # no entry: the kernel tables price it
        deployment = load_and_resolve(path).deployments[0]
        st = deployment.step_time
        st = st.inner if isinstance(st, AttentionRanks) else st  # DP attention: the busiest rank's steps
        assert isinstance(st, KernelStepTime), name
        paid[name] = st.overhead_s
    layers = deployment.arch.layers
    assert overhead.per_extra_gpu_s > 0
    expect = overhead.base_s + overhead.per_layer_s * layers + overhead.per_extra_gpu_s * 7
    assert paid["tp8"] == pytest.approx(expect, rel=1e-9)
    assert paid["dp8"] == pytest.approx(paid["tp8"], rel=1e-12)
    # past the largest group the prior was drawn from (8), a wider one (a 64-GPU NVL72 decode replica) pays the same
    assert overhead.per_extra_gpu_up_to == 8
    assert overhead.step_s(layers, 64) == overhead.step_s(layers, 8) > overhead.step_s(layers, 4)
