"""Hostile values (astronomical caps, near-zero intervals, overflowing numbers, text or booleans where numbers
belong, impossible shapes and dates) are refused before anything runs: one line `error: FILE: FIELD: reason`,
exit code 2, no traceback, nothing written. Before these checks each case hung, exhausted memory, crashed or
ran to exit 0 with garbage. The bounds live in simfactory/config/limits.py."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import agent_doc, agent_scenario, scenario_doc, write_case
from typer.testing import CliRunner

from simfactory.cli import app
from simfactory.config import limits

runner = CliRunner()
FIXED = {"kind": "fixed", "value": 10}
LLM = {"type": "llm", "name": "ask", "model": "m", "input_tokens": FIXED, "output_tokens": FIXED}
WAIT0 = {"type": "wait", "name": "nothing", "duration_s": {"kind": "fixed", "value": 0}}


def refused(root: Path, doc: dict[str, Any], field: str, *, workloads: dict[str, Any] | None = None,
            commands: tuple[str, ...] = ("validate", "run"), file: Path | None = None, contains: str = "") -> str:
    """Write the case under root, run each command, and check it is refused in one line naming `field`
    (in `file`: the scenario unless given) with nothing written. Returns the reason."""
    path = write_case(root, copy.deepcopy(doc), workloads=workloads)
    named = file if file is not None else path
    out = root / "out"
    reason = ""
    for cmd in commands:
        args = [cmd, str(path)] + (["--out", str(out), "--no-plots", "--quiet"] if cmd == "run" else [])
        res = runner.invoke(app, args)
        assert "Traceback" not in res.output, res.output
        assert res.exit_code == 2, (cmd, res.exit_code, res.output)
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert len(lines) == 1, res.output
        assert lines[0].startswith(f"error: {named}: {field}: "), (field, lines[0])
        reason = lines[0].removeprefix(f"error: {named}: {field}: ")
        assert contains in reason, reason
        assert not out.exists(), "nothing may be written on bad input"
    return reason


def accepted(root: Path, doc: dict[str, Any], workloads: dict[str, Any] | None = None) -> str:
    path = write_case(root, copy.deepcopy(doc), workloads=workloads)
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    return res.output


def agent(steps: list[dict[str, Any]], **extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return agent_scenario(), {"agent": agent_doc(steps, **extra)}


# ---- the numbered cases of the issue ---------------------------------------------------------------------------
def test_1_a_timeline_resolution_of_a_nanosecond_is_refused_with_its_sample_bound(tmp_path):
    doc = scenario_doc()
    doc["sim"]["timeline_resolution_s"] = 1e-9
    reason = refused(tmp_path, doc, "sim.timeline_resolution_s")
    assert f"{limits.MAX_TIMELINE_SAMPLES:,}" in reason
    doc["sim"]["timeline_resolution_s"] = 1e-3  # 100 s horizon + 3600 s drain at 1 ms: 3.7e6 samples
    refused(tmp_path / "ms", doc, "sim.timeline_resolution_s", commands=("validate",))
    doc["sim"]["drain"] = False  # without a drain the same resolution keeps 1e5 samples: fine
    accepted(tmp_path / "nodrain", doc)


def test_2_mmpp_sojourns_near_zero_are_refused_by_expected_state_switches(tmp_path):
    doc = scenario_doc()
    doc["traffic"]["arrival"] = {"process": "mmpp", "states": [{"rate_per_s": 1, "mean_sojourn_s": 1e-300},
                                                                {"rate_per_s": 2, "mean_sojourn_s": 1e-300}]}
    reason = refused(tmp_path, doc, "traffic.arrival.states[0].mean_sojourn_s", contains="state switches")
    assert f"{limits.MAX_STATE_SWITCHES:,}" in reason


def test_3_gamma_cv_of_a_million_is_refused_at_validation(tmp_path):
    doc = scenario_doc()
    doc["traffic"]["arrival"] = {"process": "gamma", "rate_per_s": 1, "cv": 1e6}
    refused(tmp_path, doc, "traffic.arrival.cv", contains="less than or equal to 100")
    doc["traffic"]["arrival"]["cv"] = 1e-300  # 1 / cv^2 overflowed
    refused(tmp_path / "tiny", doc, "traffic.arrival.cv", commands=("validate",))


def test_4_lognormal_sigma_of_a_million_is_refused_not_an_overflow(tmp_path):
    doc = scenario_doc(input_tokens={"kind": "lognormal", "median": 100, "sigma": 1e6})
    refused(tmp_path, doc, "traffic.classes[0].input_tokens.sigma", contains="less than or equal to 10")


@pytest.mark.parametrize("mean, contains", [(1e300, "beyond 1e+15"), (1e9, "more than 10,000,000")])
def test_5_token_counts_beyond_any_context_are_refused(tmp_path, mean, contains):
    doc = scenario_doc(output_tokens={"kind": "geometric", "mean": mean})
    refused(tmp_path, doc, "traffic.classes[0].output_tokens.mean", contains=contains)


@pytest.mark.parametrize("dist, field", [
    ({"kind": "fixed", "value": 20_000_000}, "value"),
    ({"kind": "uniform", "low": 1, "high": 1e8}, "high"),
    ({"kind": "exponential", "mean": 5e7}, "mean"),
    ({"kind": "lognormal", "median": 100, "sigma": 1, "max": 1e8}, "max"),
    ({"kind": "empirical", "values": [1, 2.5]}, "values"),
])
def test_5_every_token_distribution_is_bounded_and_whole(tmp_path, dist, field):
    refused(tmp_path, scenario_doc(input_tokens=dist), f"traffic.classes[0].input_tokens.{field}",
            commands=("validate",), contains="token counts")


def test_5_token_counts_in_workload_files_are_bounded_too(tmp_path):
    doc = scenario_doc()
    doc["traffic"]["classes"][0] = {"name": "c", "workload": "w", "target": "dep"}
    w = {"kind": "requests", "name": "w", "source": "test", "as_of": "2026-11", "input_tokens": FIXED,
         "output_tokens": {"kind": "geometric", "mean": 1e12}}
    refused(tmp_path, doc, "output_tokens.mean", workloads={"w": w}, file=tmp_path / "workloads" / "w.yaml")
    d, wl = agent([{**LLM, "output_tokens": {"kind": "exponential", "mean": 1e9}}])
    refused(tmp_path / "agent", d, "steps[0].output_tokens.mean", workloads=wl,
            file=tmp_path / "agent" / "workloads" / "agent.yaml", commands=("validate",))


@pytest.mark.parametrize("dotted, value, field, contains", [
    ("seed", "42", "seed", "valid integer"),
    ("pools.0.count", True, "pools[0].count", "valid integer"),
    ("deployments.0.replicas", 2.0, "deployments[0].replicas", "valid integer"),
    ("traffic.arrival.rate_per_s", True, "traffic.arrival.rate_per_s", "valid number"),
    ("traffic.arrival.rate_per_s", "1.5", "traffic.arrival.rate_per_s", "valid number"),
    ("deployments.0.enable_chunked_prefill", "yes", "deployments[0].enable_chunked_prefill", "valid boolean"),
    ("sim.drain", 1, "sim.drain", "valid boolean"),
])
def test_9_text_and_booleans_are_not_coerced_into_numbers(tmp_path, dotted, value, field, contains):
    doc = scenario_doc()
    node: Any = doc
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if p.isdigit() else node[p]
    node[parts[-1]] = value
    refused(tmp_path, doc, field, contains=contains)


def test_9_a_fixed_length_of_zero_tokens_is_refused_not_read_as_one(tmp_path):
    doc = scenario_doc(input_tokens={"kind": "fixed", "value": 0})
    refused(tmp_path, doc, "traffic.classes[0].input_tokens.value", contains="at least 1")


def test_9_kv_cache_tokens_are_checked_against_device_memory(tmp_path):
    # llama-3.1-8b: 128 KiB of KV per token; 1e12 tokens are 131 PB on one 80 GB device
    reason = refused(tmp_path, scenario_doc(kv_cache_tokens=10**12), "deployments[0].kv_cache_tokens")
    assert "GB" in reason and "test-gpu" in reason
    refused(tmp_path / "e18", scenario_doc(kv_cache_tokens=10**18), "deployments[0].kv_cache_tokens",
            commands=("validate",))
    out = accepted(tmp_path / "over", scenario_doc(kv_cache_tokens=2_000_000))  # an over-commit within 100x: warned
    assert "deployments[0].kv_cache_tokens" in out and "memory the devices do not have" in out


def test_numbers_in_yaml_scientific_notation_and_ints_in_float_fields_still_work(tmp_path):
    path = write_case(tmp_path, scenario_doc())
    text = path.read_text()
    # PyYAML reads 1e-1 (no dot) as text: a float field takes it as the number it spells
    path.write_text(text.replace("rate_per_s: 1.0", "rate_per_s: 1e-1").replace("horizon_s: 100.0", "horizon_s: 100"))
    assert "1e-1" in path.read_text()
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 0, res.output


# ---- classes: unbounded or zero-time work ------------------------------------------------------------------------
@pytest.mark.parametrize("steps, field, contains", [
    ([{"type": "loop", "continue_p": 1.0, "max_iterations": 2**63, "steps": [WAIT0]}], "steps[0].max_iterations", "2^53"),
    ([{"type": "loop", "continue_p": 1.0, "max_iterations": 20_000, "steps": [WAIT0]}], "steps[0].max_iterations",
     "less than or equal to 10000"),
    ([{"type": "loop", "continue_p": 0.5, "max_iterations": 1000,
       "steps": [{"type": "loop", "continue_p": 0.5, "max_iterations": 1000, "steps": [WAIT0]}]}], "steps",
     "lower those caps"),
    ([{"type": "retry", "max_attempts": 10**9, "steps": [WAIT0]}], "steps[0].max_attempts", "less than or equal to 100"),
    ([{"type": "retry", "max_attempts": 5, "backoff_s": 1, "backoff_factor": 1e300, "steps": [LLM]}],
     "steps[0].backoff_factor", "beyond"),
    ([{"type": "parallel", "fan_out": {"kind": "fixed", "value": 0}, "steps": [LLM]}], "steps[0].fan_out.value",
     "at least 1"),
    ([{"type": "parallel", "fan_out": {"kind": "geometric", "mean": 3}, "steps": [LLM]}], "steps[0].fan_out.kind",
     "bounded distribution"),
    ([{"type": "parallel", "fan_out": {"kind": "fixed", "value": 3}, "join": "first_k", "k": 5, "steps": [LLM]}],
     "steps[0].k", "never be decided"),
    ([{"type": "parallel", "fan_out": {"kind": "fixed", "value": 500},
       "steps": [{"type": "parallel", "fan_out": {"kind": "fixed", "value": 500}, "steps": [LLM]}]}], "steps",
     "a task may run"),
])
def test_agent_loops_retries_and_fan_outs_are_bounded(tmp_path, steps, field, contains):
    doc, w = agent(steps)
    refused(tmp_path, doc, field, workloads=w, file=tmp_path / "workloads" / "agent.yaml", contains=contains)


def test_total_agent_work_is_bounded(tmp_path):
    loop = {"type": "loop", "continue_p": 0.99, "max_iterations": 1000, "steps": [LLM]}  # ~100 calls per task
    doc, w = agent([loop])
    doc["traffic"]["arrival"]["rate_per_s"] = 100.0
    doc["sim"].update(horizon_s=100_000.0, timeline_resolution_s=10.0)  # 1e7 tasks x 100 steps
    refused(tmp_path, doc, "traffic.classes[0].workload", workloads=w, contains="steps")


@pytest.mark.parametrize("section, field, contains", [
    ({"faults": {"replica_failures": [{"pool": "pool", "mtbf_s": 1e-9, "mttr_s": 1e-9}]}},
     "faults.replica_failures[0].mtbf_s", "fault events"),
    ({"faults": {"spot_reclamations": [{"pool": "pool", "per_replica_hour": 1e12, "notice_s": 0, "replacement_s": 0}]}},
     "faults.spot_reclamations[0].per_replica_hour", "fault events"),
    ({"faults": {"retry": {"max_retries": 2**64, "backoff_s": 0}}}, "faults.retry.max_retries", "2^53"),
    ({"faults": {"retry": {"max_retries": 1000, "backoff_s": 0}}}, "faults.retry.max_retries", "less than or equal"),
    ({"training": [{"name": "j", "pool": "pool", "accelerators": 1, "work_hours": 1e6, "node_mtbf_h": 1e-3,
                    "checkpoint_cost_s": 60, "restart_s": 60}]}, "training[0]", "barely progresses"),
])
def test_fault_retry_and_training_events_are_bounded(tmp_path, section, field, contains):
    doc = scenario_doc()
    doc.update(section)
    doc["pools"][0]["count"] = 2  # room for a training job
    refused(tmp_path, doc, field, contains=contains)


def test_autoscaler_interval_near_zero_is_refused(tmp_path):
    doc = scenario_doc(autoscaling={"min_replicas": 1, "max_replicas": 2, "target": 4, "interval_s": 1e-6})
    doc["pools"][0]["count"] = 2
    refused(tmp_path, doc, "deployments[0].autoscaling.interval_s", contains=f"{limits.MAX_AUTOSCALER_TICKS:,}")


@pytest.mark.parametrize("arrival, field, contains", [
    ({"process": "diurnal", "mean_rate_per_s": 1, "peak_to_trough": 2,
      "events": [{"start_s": 0, "duration_s": 10, "multiplier": 1000}] * 4},
     "traffic.arrival.mean_rate_per_s", "peak rate"),
    ({"process": "diurnal", "mean_rate_per_s": 1, "period_s": 1e-300, "peak_to_trough": 2},
     "traffic.arrival.period_s", "greater than or equal to 1"),
    ({"process": "diurnal", "mean_rate_per_s": 1, "hourly_multipliers": [0] * 24},
     "traffic.arrival.hourly_multipliers", "all zero"),
    ({"process": "poisson", "rate_per_s": 1e7}, "traffic.arrival.rate_per_s", "arrivals"),
    ({"process": "mmpp", "states": [{"rate_per_s": 0, "mean_sojourn_s": 1}, {"rate_per_s": 0, "mean_sojourn_s": 1}]},
     "traffic.arrival.states", "nothing would ever arrive"),
])
def test_arrival_processes_are_bounded_and_not_degenerate(tmp_path, arrival, field, contains):
    doc = scenario_doc()
    doc["traffic"]["arrival"] = arrival
    refused(tmp_path, doc, field, contains=contains)


def test_negative_zero_is_read_as_zero(tmp_path):
    doc = scenario_doc(output_tokens={"kind": "lognormal", "median": 20, "sigma": -0.0, "max": 100})
    path = write_case(tmp_path, doc)
    res = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--no-plots", "--quiet"])
    assert res.exit_code == 0, res.output  # numpy refused a scale of -0.0 ("scale < 0")
    assert (tmp_path / "out" / "summary.json").exists()


def test_an_hourly_class_mix_is_bounded(tmp_path):
    doc = scenario_doc()
    doc["traffic"]["arrival"] = {"process": "diurnal", "mean_rate_per_s": 1000, "peak_to_trough": 1}
    second = {**doc["traffic"]["classes"][0], "name": "d"}
    doc["traffic"]["classes"] = [{**doc["traffic"]["classes"][0], "weight_by_hour": [1] * 24},
                                 {**second, "weight_by_hour": [2] * 24}]
    doc["sim"]["horizon_s"] = 30_000.0  # 3e7 arrivals x 2 classes of hourly weights
    refused(tmp_path, doc, "traffic.classes[0].weight_by_hour", contains="weights")


def test_infinite_drain_is_refused(tmp_path):
    doc = scenario_doc()
    doc["sim"]["max_drain_s"] = float("inf")
    refused(tmp_path, doc, "sim.max_drain_s", contains="finite")


# ---- classes: overflow and degenerate values ----------------------------------------------------------------------
@pytest.mark.parametrize("path, value, field, contains", [
    (("traffic", "classes", 0, "weight"), 1e308, "traffic.classes[0].weight", "beyond"),
    (("pools", 0, "cloud_usd_per_accel_hour"), float("inf"), "pools[0].cloud_usd_per_accel_hour", "finite"),
    (("deployments", 0, "host_link_gb_s"), 1e-300, "deployments[0].host_link_gb_s", "greater than or equal"),
    (("traffic", "classes", 0, "sessions"), 2**64, "traffic.classes[0].sessions", "2^53"),
    (("traffic", "classes", 0, "prefix_variants"), 2**30, "traffic.classes[0].prefix_variants", "less than or equal"),
    (("traffic", "classes", 0, "shared_prefix_tokens"), 2**40, "traffic.classes[0].shared_prefix_tokens",
     "less than or equal"),
    (("sim", "warmup_s"), float("nan"), "sim.warmup_s", "finite"),
    (("deployments", 0, "max_model_len"), 10**9, "deployments[0].max_model_len", "less than or equal"),
    (("traffic", "arrival", "rate_per_s"), 5e-324, "traffic.arrival.rate_per_s", "subnormal"),  # 1/rate overflowed
    (("sim", "horizon_s"), 5e-324, "sim.horizon_s", "subnormal"),
])
def test_overflowing_and_degenerate_numbers_are_refused(tmp_path, path, value, field, contains):
    doc = scenario_doc()
    node: Any = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    refused(tmp_path, doc, field, contains=contains)


@pytest.mark.parametrize("section, field, contains", [
    ({"routing": {"load_balancer": "least_outstanding",
                  "routes": [{"name": "r", "policy": "weighted", "weights": {"dep": 1e308}}]}},
     "routing.routes[0].weights.dep", "beyond"),
    ({"finance": {"scorecard_weights": {"performance": 0}}}, "finance.scorecard_weights", "all zero"),
])
def test_weights_that_overflow_or_are_all_zero_are_refused(tmp_path, section, field, contains):
    doc = scenario_doc()
    doc.update(section)
    refused(tmp_path, doc, field, contains=contains)


def test_empirical_weights_that_overflow_are_refused(tmp_path):
    dist = {"kind": "empirical", "values": [1, 2], "weights": [1e308, 1e308]}
    refused(tmp_path, scenario_doc(input_tokens=dist), "traffic.classes[0].input_tokens.weights[0]", contains="beyond")


@pytest.mark.parametrize("change, field, contains", [
    ({"kv_heads": 64}, "models[0].kv_heads", "exceeds heads"),
    ({"kv_heads": 5}, "models[0].kv_heads", "multiple"),
    ({"active_params_b": 9}, "models[0].active_params_b", "exceeds params_b"),
    ({"num_experts": 8, "experts_per_token": 9}, "models[0].experts_per_token", "exceeds num_experts"),
    ({"as_of": "9999-99"}, "models[0].as_of", "year"),
    ({"as_of": "2026-13"}, "models[0].as_of", "not a date"),
])
def test_impossible_model_shapes_and_dates_are_refused(tmp_path, change, field, contains):
    model = {"id": "llama-3.1-8b", "params_b": 8, "active_params_b": 8, "layers": 32, "hidden": 4096, "heads": 32,
             "kv_heads": 8, "head_dim": 128, "source": "test", "as_of": "2026-11", **change}
    (tmp_path / "hardware_profiles").mkdir(parents=True)
    catalogue = tmp_path / "hardware_profiles" / "models.yaml"
    catalogue.write_text(yaml.safe_dump({"models": [model]}))
    refused(tmp_path, scenario_doc(), field, file=catalogue, contains=contains)


def test_workload_dates_that_do_not_exist_are_refused(tmp_path):
    doc, w = agent([LLM], as_of="2026-02-30")
    refused(tmp_path, doc, "as_of", workloads=w, file=tmp_path / "workloads" / "agent.yaml", contains="not a date")


# ---- sweep grids ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("grid, field, contains", [
    ({"mode": "grid", "replications": 10,
      "parameters": {"traffic.arrival.rate_per_s": list(range(1, 201)), "sim.horizon_s": list(range(1, 101))}},
     "parameters", "runs"),
    ({"mode": "lhs", "samples": 100_000, "replications": 2, "parameters": {"traffic.arrival.rate_per_s": {"low": 1, "high": 2}}},
     "parameters", "runs"),
    ({"mode": "grid", "replications": "2", "parameters": {"sim.horizon_s": [10, 20]}}, "replications", "valid integer"),
])
def test_sweep_grids_beyond_the_run_bound_are_refused(tmp_path, grid, field, contains):
    path = write_case(tmp_path, scenario_doc())
    spec = tmp_path / "grid.yaml"
    spec.write_text(yaml.safe_dump(grid))
    out = tmp_path / "sweep"
    res = runner.invoke(app, ["sweep", str(path), "--grid", str(spec), "--out", str(out), "--quiet"])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {spec}: {field}: ") and contains in lines[0], lines
    assert not out.exists()
