"""BF16 MoE layers on Triton fused_moe (EngineKernels.triton_bf16_moe): SGLang before 0.5.8 runs them there, where
the kernel tables' 0.5.14 rows time FlashInfer's TensorRT-LLM MoE on Blackwell; records with a Triton curve
(linear_ms_triton_moe, calibrate/kernels/derive_moe.py) are priced with it by the engines that say so, and by
nothing else."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import pytest
from conftest import resolved_deployment

from simfactory.calibration.fit import KernelsContext
from simfactory.config.loader import load_model_file
from simfactory.config.profile import ModelCatalog
from simfactory.errors import InputError
from simfactory.hardware import kernels
from simfactory.hardware.kernel_file import read_doc
from simfactory.hardware.kernels import load_kernel_tables
from simfactory.hardware.step_time import StepLoad

ROOT = Path(__file__).resolve().parents[1]
MODELS = {m.id: m for m in load_model_file(ModelCatalog, ROOT / "hardware_profiles" / "models.yaml").models}
QWEN = "qwen3-235b-a22b"
ONE_TOKEN = StepLoad(0, 1, 1000.0, 0.0)  # one sequence decoding, 1,000 tokens of context


def _curves(sku: str = "b200", model: str = QWEN, tp: int = 8) -> tuple[float, float]:
    """The first grid point (one token) of the sglang BF16 record's two linear curves, in seconds."""
    t = load_kernel_tables(sku)
    assert t is not None
    rec = t.linear[(model, "sglang", tp, 1, 1, "bf16")]
    return rec["linear_ms"][0] / 1e3, rec["linear_ms_triton_moe"][0] / 1e3


def test_sglang_before_0_5_8_prices_bf16_moe_with_the_triton_curve():
    """Same tables, overhead and front end: the two presets' one-token steps differ by exactly the curves'
    difference, and only the Triton one says so in its label."""
    default, triton = _curves()
    assert triton > default  # Triton fused_moe at one token is slower than FlashInfer's TensorRT-LLM MoE
    old = resolved_deployment("sglang-0.5", "b200", QWEN, 8, "bf16")
    new = resolved_deployment("sglang-0.5.8", "b200", QWEN, 8, "bf16")
    assert old.step_time.step_s(ONE_TOKEN) - new.step_time.step_s(ONE_TOKEN) == pytest.approx(triton - default)
    assert "MoE layers on Triton fused_moe" in old.step_time_source and "Triton" not in new.step_time_source


@pytest.mark.parametrize("sku, dtype", [("b200", "fp8"), ("h200", "bf16")])
def test_nothing_else_moves(sku, dtype):
    """FP8 experts run FlashInfer's kernel in both releases; on Hopper the tables' rows are Triton's already (no
    Triton curve): the presets agree there."""
    old = resolved_deployment("sglang-0.5", sku, QWEN, 8, dtype)
    new = resolved_deployment("sglang-0.5.8", sku, QWEN, 8, dtype)
    assert old.step_time.step_s(ONE_TOKEN) == new.step_time.step_s(ONE_TOKEN)
    assert "Triton" not in old.step_time_source


def test_only_bf16_sglang_records_of_blackwell_carry_a_triton_curve():
    for path in sorted((ROOT / "hardware_profiles" / "kernels").glob("*.json.gz")):
        for rec in read_doc(path)["linear"]:
            if "linear_ms_triton_moe" in rec:
                assert (rec["framework"], rec["dtype"]) == ("sglang", "bf16"), (path.name, rec["model"])
                assert path.name.startswith(("b", "gb")), path.name


def test_calibration_prices_the_tables_as_resolve_does():
    """A calibration fit of such a deployment starts from the same Triton curve (KernelsContext.triton_moe)."""
    default, triton = _curves()
    with_triton, without = (KernelsContext(MODELS[QWEN], QWEN, "b200", "sglang", "bf16", "bf16", 8, triton_moe=flag).model_for()
                            for flag in (True, False))
    assert with_triton is not None and without is not None
    assert with_triton.step_s(ONE_TOKEN) - without.step_s(ONE_TOKEN) == pytest.approx(triton - default)


def test_a_broken_triton_curve_is_refused_naming_it(tmp_path):
    src = load_kernel_tables("b200")
    assert src is not None
    doc = read_doc(src.path)
    i = next(i for i, r in enumerate(doc["linear"]) if "linear_ms_triton_moe" in r)
    bad = copy.deepcopy(doc)
    bad["linear"][i]["linear_ms_triton_moe"] = bad["linear"][i]["linear_ms_triton_moe"][::-1]
    folder = tmp_path / "kernels"
    folder.mkdir()
    (folder / "test-gpu.json.gz").write_bytes(gzip.compress(json.dumps(bad).encode(), compresslevel=1))
    kernels._cache.clear()
    t = load_kernel_tables("test-gpu", [tmp_path])
    assert t is not None
    rec = bad["linear"][i]
    key = (rec["model"], rec["framework"], rec["tp"], rec.get("dp_attention", 1), rec.get("ep", 1), rec["dtype"])
    with pytest.raises(InputError, match=rf"linear\[{i}\]\.linear_ms_triton_moe: must be non-decreasing"):
        t.linear[key]
    kernels._cache.clear()


def _resolved(tmp_path, engine: str, sku: str, dtype: str = "bf16"):
    """The default scenario with Qwen3-235B-A22B on 8 of `sku`, resolved from a file (its warnings with it)."""
    import yaml

    from simfactory.resolve import load_and_resolve

    doc = yaml.safe_load((ROOT / "scenarios" / "default.yaml").read_text())
    doc["pools"][0].update(sku=sku, count=8, cloud_usd_per_accel_hour=5.0)  # b300 has no shipped price
    doc["deployments"][0].update(model=QWEN, tp=8, dtype=dtype, engine=engine, replicas=1)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    return load_and_resolve(tmp_path / "s.yaml")


def _scenario_warnings(tmp_path, engine: str, sku: str, dtype: str = "bf16") -> tuple[list[str], str]:
    rs = _resolved(tmp_path, engine, sku, dtype)
    return [w for w in rs.warnings if "Triton fused_moe" in w], rs.deployments[0].step_time_source


def test_where_no_triton_curve_exists_the_stand_in_is_named_and_warned_of(tmp_path):
    """B300's tables time Qwen3's BF16 experts with FlashInfer's kernel only: an engine that runs Triton there is
    priced as the tables hold it, its label names the stand-in and the scenario is warned that this is optimistic;
    an engine that runs the tables' kernel (sglang-0.5.8) and a SKU whose rows are Triton's (H200) are not."""
    warned, label = _scenario_warnings(tmp_path, "sglang-0.5", "b300")
    assert len(warned) == 1 and "optimistic" in warned[0] and "b300" in warned[0], warned
    assert "no Triton fused_moe curve" in label and "sglang_flashinfer_trtllm_moe's rows stand in" in label
    for engine, sku in (("sglang-0.5.8", "b300"), ("sglang-0.5", "h200"), ("sglang-0.5", "b200")):
        warned, label = _scenario_warnings(tmp_path, engine, sku)
        assert warned == [] and "no Triton" not in label, (engine, sku, warned)
    warned, _ = _scenario_warnings(tmp_path, "sglang-0.5", "b300", "fp8")  # FP8 experts: FlashInfer's in 0.5.6 too
    assert warned == []


def test_the_presets_say_who_runs_triton():
    """What calibration's publish and resolve both ask (resolve.step_time.triton_moe over the shipped preset's
    kernels): sglang-0.5's BF16 MoE deployments, not its FP8 ones, not sglang-0.5.8's, not a dense model's."""
    from simfactory.calibration.microbench import preset_kernels
    from simfactory.resolve.step_time import triton_moe

    old, new = preset_kernels("sglang-0.5"), preset_kernels("sglang-0.5.8")
    assert triton_moe(old, MODELS[QWEN], "bf16") and triton_moe(old, MODELS[QWEN], "fp16")
    assert not triton_moe(old, MODELS[QWEN], "fp8") and not triton_moe(new, MODELS[QWEN], "bf16")
    assert not triton_moe(old, MODELS["llama-3.1-70b"], "bf16")


def test_a_calibrated_fit_is_not_warned_of_the_stand_in(tmp_path):
    """The warning is for the prior: a label that is a calibrated entry's (it does not start as the prior's does)
    carries the note but no warning."""
    from simfactory.resolve.deployments import _step_time_warnings
    from simfactory.resolve.step_time import MEASURED_KERNELS_LABEL

    d = _resolved(tmp_path, "sglang-0.5", "b300").deployments[0]
    note = d.step_time_source.split(MEASURED_KERNELS_LABEL, 1)[1]
    args = (d.config, "deployments[0]", "s.yaml", d.profile, d.arch)
    dirs = [ROOT / "hardware_profiles"]
    warned = [w for w in _step_time_warnings(*args, MEASURED_KERNELS_LABEL + note, dirs) if "Triton" in w]
    fitted = [w for w in _step_time_warnings(*args, "my-fit (profiles/x.yaml): " + note, dirs) if "Triton" in w]
    assert "no Triton fused_moe curve" in note and len(warned) == 1 and fitted == []


DSR1 = "deepseek-r1"


def test_sglang_before_0_5_10_prices_moe_on_hopper_with_the_older_release():
    """SGLang 0.4-0.5.9 (sglang-0.5, sglang-0.5.8) on an H200 read a record's linear_ms_older_moe, composed with the
    SDK's 0.5.10 MoE rows (slower than the tables' 0.5.14 at one token for DeepSeek's shape); the sglang preset
    (0.5.10 on) keeps the tables' release; a record without the curve (a dense model) keeps its own."""
    t = load_kernel_tables("h200")
    assert t is not None
    rec = t.linear[(DSR1, "sglang", 8, 1, 1, "fp8")]
    default, older = rec["linear_ms"][0] / 1e3, rec["linear_ms_older_moe"][0] / 1e3
    assert older > default
    old = resolved_deployment("sglang-0.5", "h200", DSR1, 8, "fp8")
    mid = resolved_deployment("sglang-0.5.8", "h200", DSR1, 8, "fp8")
    assert old.step_time.breakdown_s(ONE_TOKEN)["linear"] == pytest.approx(older)
    assert mid.step_time.breakdown_s(ONE_TOKEN)["linear"] == pytest.approx(older)
    new = resolved_deployment("sglang", "h200", DSR1, 8, "fp8")
    assert new.step_time.breakdown_s(ONE_TOKEN)["linear"] == pytest.approx(default)
    assert "sglang 0.5.10's measured kernels" in old.step_time_source
    assert "0.5.10" not in new.step_time_source
    b200 = resolved_deployment("sglang-0.5", "b200", DSR1, 8, "fp8")  # no 0.5.10 MoE table there: the tables' own
    assert "0.5.10" not in b200.step_time_source
    dense = resolved_deployment("sglang-0.5", "h200", "llama-3.1-8b", 1, "fp8")
    assert "0.5.10" not in dense.step_time_source


def test_only_sglang_moe_records_of_hopper_carry_an_older_curve():
    for path in sorted((ROOT / "hardware_profiles" / "kernels").glob("*.json.gz")):
        for rec in read_doc(path)["linear"]:
            if "linear_ms_older_moe" in rec:
                assert rec["framework"] == "sglang" and rec["model"] in MODELS and MODELS[rec["model"]].is_moe
                assert path.name in ("h100-sxm.json.gz", "h200.json.gz"), path.name


def test_calibration_prices_the_older_curve_as_resolve_does():
    rec = load_kernel_tables("h200").linear[(DSR1, "sglang", 8, 1, 1, "fp8")]
    with_older, without = (KernelsContext(MODELS[DSR1], DSR1, "h200", "sglang", "fp8", "bf16", 8,
                                          older_moe=release).model_for() for release in ("0.5.10", None))
    assert with_older is not None and without is not None
    gap = (rec["linear_ms_older_moe"][0] - rec["linear_ms"][0]) / 1e3
    assert with_older.step_s(ONE_TOKEN) - without.step_s(ONE_TOKEN) == pytest.approx(gap)


def test_an_older_release_the_tables_lack_for_a_model_is_said_and_warned_of_not_silent():
    """gpt-oss's MXFP4 experts have no 0.5.10 rows in the SDK, so sglang-0.5 on an H200 prices them with the tables'
    own release: the label says so and resolving warns, while a model with the curve carries no such note."""
    from simfactory.hardware.kernels import NO_OLDER_MOE_CURVE

    gptoss = resolved_deployment("sglang-0.5", "h200", "gpt-oss-120b", 8, "fp4")
    t = load_kernel_tables("h200")
    assert t is not None and "linear_ms_older_moe" not in t.linear[("gpt-oss-120b", "sglang", 8, 1, 1, "fp4")]
    assert NO_OLDER_MOE_CURVE in gptoss.step_time_source and "sglang 0.5.10's" in gptoss.step_time_source
    assert gptoss.step_time.breakdown_s(ONE_TOKEN)["linear"] == pytest.approx(
        t.linear[("gpt-oss-120b", "sglang", 8, 1, 1, "fp4")]["linear_ms"][0] / 1e3)
    for engine, sku, model, dtype, said in (("sglang-0.5", "h200", DSR1, "fp8", False),
                                            ("sglang", "h200", "gpt-oss-120b", "fp4", False),
                                            ("sglang-0.5", "b200", "gpt-oss-120b", "fp4", False)):
        assert (NO_OLDER_MOE_CURVE in resolved_deployment(engine, sku, model, 8, dtype).step_time_source) == said
    from simfactory.resolve.deployments import _step_time_warnings

    warned = [w for w in _step_time_warnings(gptoss.config, "deployments[0]", "s.yaml", gptoss.profile, gptoss.arch,
                                             gptoss.step_time_source, [ROOT / "hardware_profiles"])
              if "older release" in w]
    assert len(warned) == 1 and "optimistic" in warned[0]
