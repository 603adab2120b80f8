"""Numeric extremes in every numeric field of every input: the CLI exits 0 with sane outputs or 2 with one
`error:` line, within a time and memory limit, never with a traceback (hypothesis picks document, field, value).

Fields are found by walking each shipped document (scenarios, workloads, hardware profiles, the model and engine
catalogues, the price book) beside its JSON Schema (tests/fuzz_support.py: numeric_fields), so a field added to
a model is fuzzed without touching this file. A few seed documents below switch on what no shipped file uses
(other arrival processes and distributions, traces, step-time entries, rolling restarts, ...) so that their
fields are reachable too. Sweep grids, plan spaces, the numeric CLI flags and every trace format's columns get
the same extremes. Each command runs in its own process (fuzz_support.SandboxedCli): an RLIMIT_AS memory limit and
a wall-clock limit, stdout and stderr captured.

Environment: SIMFACTORY_FUZZ_EXAMPLES (examples per test, default 25, fresh random examples every run: about 90 s of CPU for the file when nothing fails),
SIMFACTORY_FUZZ_TIMEOUT_S (per command, default 20; plan gets twice that), SIMFACTORY_FUZZ_MEM_MB (address space
per command, default 3072), SIMFACTORY_FUZZ_RUNNER=subprocess (one `python -m simfactory` per command instead of
the fork server: slower, same checks), SIMFACTORY_FUZZ_NEG_TOL (negative outputs down to minus this pass as
float rounding, default 1e-9). A larger run: SIMFACTORY_FUZZ_EXAMPLES=1000 pytest tests/test_fuzz_extremes.py.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from fuzz_support import (
    EXTREMES,
    TEXT_EXTREMES,
    SandboxedCli,
    check_json_file,
    check_result,
    dotted,
    get_path,
    numeric_fields,
    set_path,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from simfactory.errors import InputError, InputErrors
from simfactory.paths import PROFILES_DIR, SCENARIOS_DIR, WORKLOADS_DIR
from simfactory.plan.grid import SweepSpec
from simfactory.plan.search import PlanSpace
from simfactory.resolve import load_and_resolve
from simfactory.schemas import schema

EXAMPLES = int(os.environ.get("SIMFACTORY_FUZZ_EXAMPLES", "25"))
TIMEOUT_S = float(os.environ.get("SIMFACTORY_FUZZ_TIMEOUT_S", "20"))
HORIZON_S = 20.0  # shipped scenarios are cut to this (warm-up 0) unless the fuzzed field is the horizon itself
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=False,
    # no shrinking: an example is already one field and one value, and shrinking a hang costs a timeout per step
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
RUN_FLAGS = ["--no-plots", "--quiet"]


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


# ------------------------------------------------------------------------------------------ documents and seeds

SCENARIOS: dict[str, dict[str, Any]] = {p.stem: _load(p) for p in sorted(SCENARIOS_DIR.glob("*.yaml"))}
SCENARIO_FILES: dict[str, dict[str, str]] = {}  # scenario -> {relative path: text} it needs beside it
DEFAULT = SCENARIOS["default"]

BURSTGPT_ROWS = [
    ["Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type"],
    ["0", "ChatGPT", "472", "18", "490", "Conversation log"],
    ["1.5", "ChatGPT", "1087", "230", "1317", "Conversation log"],
    ["2", "GPT-4", "417", "33", "450", "Conversation log"],
    ["4.25", "GPT-4", "1360", "461", "1821", "API log"],
    ["7", "ChatGPT", "90", "12", "102", "Conversation log"],
]


def _csv(rows: list[list[str]]) -> str:
    return "\n".join(",".join(r) for r in rows) + "\n"


def _seed(name: str, path: tuple[Any, ...], value: Any, base: str = "default",
          files: dict[str, str] | None = None) -> None:
    """A scenario that switches on a feature no shipped scenario uses, so its numeric fields get fuzzed."""
    SCENARIOS[f"{base}+{name}"] = set_path(SCENARIOS[base], path, value)
    if files:
        SCENARIO_FILES[f"{base}+{name}"] = files


_seed("constant", ("traffic", "arrival"), {"process": "constant", "rate_per_s": 20})
_seed("tier-quality", ("routing", "routes", 0, "tiers", 0, "quality"), {
    "benchmark": "mmlu", "reference": {"model": "llama-3.1-70b", "dtype": "bf16"}, "mapping": "logistic",
    "logit_per_point": 0.1}, base="routing-tiered")
_seed("mmpp", ("traffic", "arrival"), {"process": "mmpp", "states": [{"rate_per_s": 5, "mean_sojourn_s": 2},
                                                                     {"rate_per_s": 40, "mean_sojourn_s": 1}]})
_seed("weibull", ("traffic", "arrival"), {"process": "weibull", "rate_per_s": 20, "shape": 0.6})
_seed("schedule", ("traffic", "arrival"), {"process": "schedule", "window_s": 5, "rates_per_s": [10, 30, 0],
                                           "gaps": "weibull", "cv": 2.0})
_seed("own-arrival-quantiles", ("traffic", "classes", 0), {
    "name": "chat", "target": "llama8b", "input_tokens": {"kind": "quantiles", "values": [10, 100, 900]},
    "output_tokens": {"kind": "lognormal", "median": 50, "sigma": 1.0, "min": 1, "max": 1000, "truncate": True},
    "length_correlation": 0.5, "rate_scale": 2,
    "arrival": {"process": "schedule", "window_s": 5, "rates_per_s": [5, 15], "cv": [1.5, 0.5]}})
_seed("diurnal", ("traffic", "arrival"), {
    "process": "diurnal", "mean_rate_per_s": 20, "period_s": 60, "peak_to_trough": 4, "peak_hour": 14,
    "start_hour": 0, "weekday_multipliers": [1, 1, 1, 1, 1, 0.6, 0.5],
    "events": [{"start_s": 5, "duration_s": 5, "multiplier": 3}]})
_seed("diurnal-hourly", ("traffic", "arrival"), {"process": "diurnal", "mean_rate_per_s": 20, "period_s": 60,
                                                 "hourly_multipliers": [0.5 + h / 24 for h in range(24)]})
_seed("uniform-lognormal", ("traffic", "classes", 0), {
    "name": "chat", "target": "llama8b", "input_tokens": {"kind": "uniform", "low": 10, "high": 100},
    "output_tokens": {"kind": "lognormal", "median": 50, "sigma": 1.0, "min": 1, "max": 1000}})
_seed("exponential-geometric", ("traffic", "classes", 0), {
    "name": "chat", "target": "llama8b", "input_tokens": {"kind": "exponential", "mean": 200},
    "output_tokens": {"kind": "geometric", "mean": 100}})
_seed("fixed-empirical", ("traffic", "classes", 0), {
    "name": "chat", "target": "llama8b", "input_tokens": {"kind": "fixed", "value": 128},
    "output_tokens": {"kind": "empirical", "values": [10, 50, 200], "weights": [1, 2, 1]}})
_seed("front-end-work", ("deployments", 0, "front_end_work"),
      {"per_request_s": 0.001, "per_input_token_s": 1e-6, "per_output_token_s": 5e-5, "cores_per_replica": 2})
_seed("semantic-cache", ("traffic", "classes", 0, "semantic_cache"),
      {"hit_ratio": 0.2, "latency_s": {"kind": "fixed", "value": 0.01}})
_seed("rolling-restart", ("faults",), {"rolling_restarts": [{"pool": "h100-cloud", "start_s": 2, "drain_s": 1,
                                                             "load_s": 2}]})
_seed("retrieval-brownout", ("faults",), {"retrieval_brownouts": [{"start_s": 2, "duration_s": 5, "error_rate": 0.2,
                                                                   "latency_multiplier": 3}]},
      base="support-agent")
_seed("cache-aware", ("routing",), {
    "load_balancer": "kv_aware",
    "cache_aware": {"balance_abs_threshold": 32, "balance_rel_threshold": 1.0001, "cache_threshold": 0.5,
                    "prefix_blocks": 2}}, base="cache-on")
_seed("trace", ("traffic", "classes", 0), {
    "name": "chat", "target": "llama8b",
    "trace": {"file": "trace.csv", "format": "burstgpt", "start_s": 0, "end_s": 1000, "speedup": 1.0,
              "sample": 1.0, "max_input_tokens": 4096, "max_output_tokens": 1024}},
      files={"trace.csv": _csv(BURSTGPT_ROWS)})

_seed("cost-stack-overrides", ("finance", "cost_stack"), {  # the cost stack's overrides of the price book
    "storage": {"usd_per_gb_month": 0.02, "block_usd_per_gb_month": 0.1}, "network": {"egress_usd_per_gb": 0.05},
    "orchestration": {"clusters": 1, "usd_per_cluster_hour": 0.2}, "support": {"cloud_fraction": 0.03},
    "replication": {"copies": 1, "gb": 100}}, base="tco-full-stack")


def _short(doc: dict[str, Any], fuzzed: tuple[Any, ...] = ()) -> dict[str, Any]:
    """The scenario cut to HORIZON_S with no warm-up, unless the fuzzed field is one of those."""
    doc = copy.deepcopy(doc)
    sim = doc.setdefault("sim", {})
    if fuzzed != ("sim", "horizon_s") and isinstance(sim.get("horizon_s"), (int, float)):
        sim["horizon_s"] = min(sim["horizon_s"], HORIZON_S)
    if fuzzed != ("sim", "warmup_s"):
        sim["warmup_s"] = 0
    return doc


SCHEMAS = {kind: schema(kind) for kind in ("scenario", "workload", "profile", "models", "engines", "price-book")}
SUPPORT_KINDS = {"models": "models", "engines": "engines", "prices": "price-book"}


def _support_docs() -> dict[str, tuple[str, str, dict[str, Any]]]:
    """file label -> (schema kind, folder beside the scenario, document) for every shipped input file."""
    docs: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for p in sorted(WORKLOADS_DIR.glob("*.yaml")):
        docs[f"workloads/{p.name}"] = ("workload", "workloads", _load(p))
    for p in sorted(PROFILES_DIR.glob("*.yaml")):
        docs[f"hardware_profiles/{p.name}"] = (SUPPORT_KINDS.get(p.stem, "profile"), "hardware_profiles", _load(p))
    return docs


SUPPORT = _support_docs()


def _seed_support() -> None:
    """Step-time entries (linear, roofline and kernels) in a profile, and request workloads with the other distributions."""
    h100 = SUPPORT["hardware_profiles/h100-sxm.yaml"][2]
    entry = {"model": "llama-3.1-8b", "engine": "vllm", "dtype": "bf16", "tp": 1, "source": "measured",
             "fit_mape": 0.05, "idle_w": 100, "max_w": 700, "provenance": {"gpu": "fuzz"}}
    linear = {**entry, "step_time": {"kind": "linear", "overhead_s": 0.003, "s_per_prefill_token": 1e-5,
                                     "s_per_decode_seq": 1e-4, "s_per_kv_token": 1e-8, "s_per_attn_pair": 1e-10}}
    roof = {**entry, "step_time": {"kind": "roofline", "compute_efficiency": 0.5, "memory_efficiency": 0.8,
                                   "step_overhead_s": 0.003}}
    SUPPORT["hardware_profiles/h100-sxm.yaml+linear"] = ("profile", "hardware_profiles",
                                                         {**h100, "step_time_models": [linear]})
    SUPPORT["hardware_profiles/h100-sxm.yaml+roofline"] = ("profile", "hardware_profiles",
                                                           {**h100, "step_time_models": [roof]})
    kern = {**entry, "step_time": {"kind": "kernels", "overhead_s": 0.001, "overhead_per_seq_s": 1e-5,
                                   "prefill_overhead_s": 0.002, "linear_scale": 1.1, "prefill_attn_scale": 1.2}}
    SUPPORT["hardware_profiles/h100-sxm.yaml+kernels"] = ("profile", "hardware_profiles",
                                                          {**h100, "step_time_models": [kern]})
    chat = SUPPORT["workloads/chat-sharegpt.yaml"][2]
    SUPPORT["workloads/chat-sharegpt.yaml+uniform-exponential"] = ("workload", "workloads", {
        **chat, "input_tokens": {"kind": "uniform", "low": 10, "high": 500},
        "output_tokens": {"kind": "exponential", "mean": 100}})
    SUPPORT["workloads/chat-sharegpt.yaml+geometric-fixed"] = ("workload", "workloads", {
        **chat, "input_tokens": {"kind": "geometric", "mean": 100}, "output_tokens": {"kind": "fixed", "value": 64}})
    arrivals = {  # a request workload may carry the arrival process measured with it (trace fit writes one)
        "poisson": {"process": "poisson", "rate_per_s": 5}, "constant": {"process": "constant", "rate_per_s": 5},
        "gamma": {"process": "gamma", "rate_per_s": 5, "cv": 2}, "weibull": {"process": "weibull", "rate_per_s": 5,
                                                                          "shape": 0.5},
        "schedule": {"process": "schedule", "window_s": 10, "rates_per_s": [2, 8], "cv": 1.5},
        "diurnal": {"process": "diurnal", "mean_rate_per_s": 5, "period_s": 60, "peak_to_trough": 3, "peak_hour": 12,
                    "start_hour": 1, "events": [{"start_s": 5, "duration_s": 5, "multiplier": 2}]},
        "mmpp": {"process": "mmpp", "states": [{"rate_per_s": 1, "mean_sojourn_s": 5}, {"rate_per_s": 9,
                                                                                      "mean_sojourn_s": 2}]},
    }
    for name, process in arrivals.items():
        SUPPORT[f"workloads/chat-sharegpt.yaml+{name}"] = ("workload", "workloads", {**chat, "arrival": process})
    agent = copy.deepcopy(SUPPORT["workloads/support-agent.yaml"][2])
    pause = {"type": "wait", "name": "pause", "duration_s": {"kind": "fixed", "value": 1}}
    options = [{"p": 0.5, "steps": agent["steps"]}, {"p": 0.5, "steps": [pause]}]
    agent["steps"] = [{"type": "branch", "options": options}]
    SUPPORT["workloads/support-agent.yaml+branch"] = ("workload", "workloads", agent)
    retain = copy.deepcopy(SUPPORT["workloads/long-context-tool-agent.yaml"][2])  # shipped scenarios set it per class
    retain["kv_retention"] = {"policy": "retain", "ttl_s": 30}
    SUPPORT["workloads/long-context-tool-agent.yaml+retain"] = ("workload", "workloads", retain)


_seed_support()


def _readers() -> dict[str, list[str]]:
    """Shipped input file -> the shipped scenarios that read it (from resolve's record of the files it read)."""
    readers: dict[str, list[str]] = {}
    for name in (n for n in SCENARIOS if "+" not in n):
        try:
            read = load_and_resolve(SCENARIOS_DIR / f"{name}.yaml").input_hashes
        except (InputError, InputErrors):  # a broken shipped scenario is test_shipped_files' to report
            continue
        for f in read:
            p = Path(f)
            readers.setdefault(f"{p.parent.name}/{p.name}", []).append(name)
    return readers


READERS = _readers()


def _scenario_for(label: str, doc: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    """A scenario that reads this input file, preferring one that uses the entry holding the fuzzed field."""
    base_label = label.split("+")[0]
    names = READERS.get(base_label, [])
    if not names and base_label.startswith("hardware_profiles/"):  # a profile no shipped scenario uses
        sku = doc.get("sku", Path(base_label).stem)
        return set_path(DEFAULT, ("pools", 0, "sku"), sku)
    entry = get_path(doc, path[:2]) if len(path) > 2 and isinstance(path[1], int) else None
    key = next((entry[k] for k in ("id", "name", "sku") if isinstance(entry, dict) and k in entry), None)
    if key is not None:
        using = [n for n in names if str(key) in _dump(SCENARIOS[n])]
        names = using or names
    name = "default" if "default" in names else min(names)
    return SCENARIOS[name]


def _fields(kind: str, docs: dict[str, Any]) -> dict[str, list[tuple[str, tuple[Any, ...]]]]:
    """Schema field name ("Pool.count") -> every (document, path) holding it, so sampling is even over fields."""
    by_field: dict[str, list[tuple[str, tuple[Any, ...]]]] = {}
    for label, doc in docs.items():
        for path, name in numeric_fields(doc, SCHEMAS[kind]):
            by_field.setdefault(name, []).append((label, path))
    return by_field


SCENARIO_FIELDS = _fields("scenario", SCENARIOS)
SUPPORT_FIELDS = {
    group: {f: cases for kind in kinds for f, cases in
            _fields(kind, {lbl: d for lbl, (k, _, d) in SUPPORT.items() if k == kind}).items()}
    for group, kinds in {"workload": ["workload"], "profile": ["profile", "models", "engines"],
                         "price-book": ["price-book"]}.items()
}


def _field_case(by_field: dict[str, list[tuple[str, tuple[Any, ...]]]]) -> st.SearchStrategy[tuple[str, tuple]]:
    return st.sampled_from(sorted(by_field)).flatmap(lambda f: st.sampled_from(by_field[f]))


EXTREME = st.sampled_from(EXTREMES)


# ------------------------------------------------------------------------------------------------ the runner


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory):
    runner = SandboxedCli(tmp_path_factory.mktemp("fuzz-cli"))
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def new_dir(tmp_path_factory: pytest.TempPathFactory):
    """A fresh folder per example (module-scoped, so hypothesis does not complain about function fixtures)."""
    return lambda: tmp_path_factory.mktemp("x", numbered=True)


def run_and_check(cli: SandboxedCli, argv: list[str], cwd: Path, out: Path | None, what: str,
                  timeout_s: float = TIMEOUT_S, typer_usage_ok: bool = False, exit_1_means: str | None = None) -> Any:
    res = cli.run(argv, cwd, timeout_s)
    problems = check_result(res, out, typer_usage_ok=typer_usage_ok, exit_1_means=exit_1_means)
    assert not problems, f"{what}\n{problems}\n{res.describe()}"
    return res


def write_scenario(case: Path, doc: dict[str, Any], fuzzed: tuple[Any, ...] = (), files: str = "") -> Path:
    """s.yaml (cut short) in case, with the files the seed scenario named `files` needs beside it."""
    (case / "s.yaml").write_text(_dump(_short(doc, fuzzed)), encoding="utf-8")
    for rel, text in SCENARIO_FILES.get(files, {}).items():
        (case / rel).write_text(text, encoding="utf-8")
    return case / "s.yaml"


def run_scenario(cli: SandboxedCli, d: Path, what: str, *extra: str) -> Any:
    return run_and_check(cli, ["run", "s.yaml", "--out", "out", *RUN_FLAGS, *extra], d, d / "out", what)


# ------------------------------------------------------------------------------------- the input documents


def check_scenario_field(cli: SandboxedCli, d: Path, name: str, path: tuple[Any, ...], label: str, value: Any) -> None:
    write_scenario(d, set_path(SCENARIOS[name], path, value), path, files=name)
    run_scenario(cli, d, f"scenario {name}: {dotted(path)} = {label}")


def check_input_file_field(cli: SandboxedCli, d: Path, label: str, path: tuple[Any, ...], vlabel: str,
                           value: Any) -> None:
    """The input file, changed, in a folder beside a scenario that reads it (found before the shipped one)."""
    kind, folder, doc = SUPPORT[label]
    (d / folder).mkdir()
    (d / folder / Path(label.split("+")[0]).name).write_text(_dump(set_path(doc, path, value)), encoding="utf-8")
    scenario = SCENARIOS["support-agent"] if label.endswith("+branch") else _scenario_for(label, doc, path)
    write_scenario(d, scenario)
    run_scenario(cli, d, f"{label} ({kind}): {dotted(path)} = {vlabel}, read by scenario {scenario.get('name')}")


@SETTINGS
@given(case=_field_case(SCENARIO_FIELDS), extreme=EXTREME)
def test_scenario_field_extremes(cli, new_dir, case, extreme):
    check_scenario_field(cli, new_dir(), *case, *extreme)


@SETTINGS
@given(case=_field_case(SUPPORT_FIELDS["workload"]), extreme=EXTREME)
def test_workload_field_extremes(cli, new_dir, case, extreme):
    check_input_file_field(cli, new_dir(), *case, *extreme)


@SETTINGS
@given(case=_field_case(SUPPORT_FIELDS["profile"]), extreme=EXTREME)
def test_profile_model_engine_field_extremes(cli, new_dir, case, extreme):
    check_input_file_field(cli, new_dir(), *case, *extreme)


@SETTINGS
@given(case=_field_case(SUPPORT_FIELDS["price-book"]), extreme=EXTREME)
def test_price_book_field_extremes(cli, new_dir, case, extreme):
    check_input_file_field(cli, new_dir(), *case, *extreme)


# -------------------------------------------------------------------------------- sweep grids and plan spaces

GRIDS = {
    "grid": {"mode": "grid", "samples": 1, "replications": 1, "seed": 1,
             "parameters": {"deployments.llama8b.replicas": [2, 4]}},
    "lhs": {"mode": "lhs", "samples": 2, "replications": 1, "seed": 1,
            "parameters": {"traffic.arrival.rate_per_s": {"low": 10, "high": 20, "integer": False, "log": False},
                           "deployments.llama8b.replicas": {"low": 1, "high": 4, "integer": True}}},
}
GRID_FIELDS = [(g, p) for g, doc in GRIDS.items() for p, _ in numeric_fields(doc, SweepSpec.model_json_schema())]
# a grid's values are scenario values: every numeric field of the default scenario, by dotted path
DEFAULT_PATHS = [p for p, _ in numeric_fields(DEFAULT, SCHEMAS["scenario"])]


def check_sweep(cli: SandboxedCli, d: Path, grid: dict[str, Any], what: str, jobs: str = "1") -> None:
    write_scenario(d, DEFAULT)
    (d / "grid.yaml").write_text(_dump(grid), encoding="utf-8")
    run_and_check(cli, ["sweep", "s.yaml", "--grid", "grid.yaml", "--out", "out", "--jobs", jobs, "--quiet"], d,
                  d / "out", what, typer_usage_ok=jobs != "1")


def sweep_value_grid(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    return {"mode": "grid", "replications": 1, "seed": 1, "parameters": {dotted(path): [value]}}


@SETTINGS
@given(data=st.data(), extreme=EXTREME)
def test_sweep_grid_extremes(cli, new_dir, data, extreme):
    vlabel, value = extreme
    if data.draw(st.booleans(), label="a grid value (else a field of the grid file)"):
        path = data.draw(st.sampled_from(DEFAULT_PATHS), label="scenario path")
        check_sweep(cli, new_dir(), sweep_value_grid(path, value), f"sweep grid value {dotted(path)}: [{vlabel}]")
    else:
        g, path = data.draw(st.sampled_from(GRID_FIELDS), label="grid field")
        check_sweep(cli, new_dir(), set_path(GRIDS[g], path, value), f"sweep {g} file: {dotted(path)} = {vlabel}")


SPACE = {"deployment": "llama8b", "max_replicas": 16,
         "candidates": [{"name": "base", "overrides": {"deployments.llama8b.max_num_seqs": 256}}],
         "grid": {"deployments.llama8b.max_num_batched_tokens": [8192]}}
SPACE_FIELDS = [p for p, _ in numeric_fields(SPACE, PlanSpace.model_json_schema())] + [
    ("candidates", 0, "overrides", "deployments.llama8b.max_num_seqs"),
    ("grid", "deployments.llama8b.max_num_batched_tokens", 0)]
PLAN_ARGS: dict[str, Any] = {"--target-rate": 20.0, "-R": 2, "--slo": "ttft_p99<2s"}
SLO_FORMS = ["ttft_p99<{}s", "e2e_p95<{}ms", "slo_attainment>{}"]


def plan_case(where: str, choice: Any, value: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(space, flags) with one extreme: where = space (choice: a space path), override (choice: a scenario
    path, as a new candidate), flag (choice: --target-rate or -R), slo (choice: a SLO_FORMS entry)."""
    space, args = copy.deepcopy(SPACE), dict(PLAN_ARGS)
    if where == "space":
        space = set_path(space, choice, value)
    elif where == "override":
        space["candidates"].append({"name": "fuzz", "overrides": {dotted(choice): value}})
    elif where == "flag":
        args[choice] = value
    else:
        args["--slo"] = choice.format(repr(value))
    return space, args


def check_plan(cli: SandboxedCli, d: Path, space: dict[str, Any], args: dict[str, Any], what: str,
               usage_ok: bool = False) -> None:
    write_scenario(d, DEFAULT)
    (d / "space.yaml").write_text(_dump(space), encoding="utf-8")
    argv = ["plan", "s.yaml", "--space", "space.yaml", "--out", "out", "--no-max-rate"]
    for k, v in args.items():
        argv += [k, repr(v) if isinstance(v, float) else str(v)]
    run_and_check(cli, argv, d, d / "out", what, timeout_s=2 * TIMEOUT_S, typer_usage_ok=usage_ok,
                  exit_1_means="No candidate met")  # plan's documented exit 1


@SETTINGS
@given(data=st.data(), extreme=EXTREME)
def test_plan_space_and_flag_extremes(cli, new_dir, data, extreme):
    vlabel, value = extreme
    where = data.draw(st.sampled_from(["space", "override", "flag", "slo"]), label="where")
    choices = {"space": SPACE_FIELDS, "override": DEFAULT_PATHS, "flag": ["--target-rate", "-R"], "slo": SLO_FORMS}
    choice = data.draw(st.sampled_from(choices[where]), label="which")
    space, args = plan_case(where, choice, value)
    check_plan(cli, new_dir(), space, args, f"plan {where} {choice if isinstance(choice, str) else dotted(choice)} "
                                            f"= {vlabel}", usage_ok=where == "flag")


FLAGS = ["run --seed", "run --trace-tasks", "run --trace-speedup", "sweep --jobs", "init --replicas", "init --tp",
         "init --rate", "init --ttft-slo"]


def check_flag(cli: SandboxedCli, d: Path, flag: str, vlabel: str, value: Any) -> None:
    text = repr(value) if isinstance(value, float) else str(value)
    command, option = flag.split()
    what = f"{flag} {vlabel}"
    if command == "init":
        argv = ["init", "--non-interactive", "-o", "out/s.yaml", option, text]
        res = run_and_check(cli, argv, d, d / "out", what, typer_usage_ok=True)
        if res.rc == 0:  # what init wrote must be a valid scenario
            run_and_check(cli, ["validate", "out/s.yaml"], d, None, f"validate what `{what}` wrote")
    elif command == "sweep":
        check_sweep(cli, d, GRIDS["grid"], what, jobs=text)
    elif option == "--trace-speedup":
        write_scenario(d, SCENARIOS["default+trace"], files="default+trace")
        run_and_check(cli, ["run", "s.yaml", "--out", "out", *RUN_FLAGS, "--trace-file", "trace.csv",
                            "--trace-format", "burstgpt", option, text], d, d / "out", what, typer_usage_ok=True)
    else:
        write_scenario(d, DEFAULT)
        run_and_check(cli, ["run", "s.yaml", "--out", "out", *RUN_FLAGS, option, text], d, d / "out", what,
                      typer_usage_ok=True)


@SETTINGS
@given(flag=st.sampled_from(FLAGS), extreme=EXTREME)
def test_cli_numeric_flag_extremes(cli, new_dir, flag, extreme):
    check_flag(cli, new_dir(), flag, *extreme)


# ------------------------------------------------------------------------------------------------ trace columns

AZURE_ROWS = [
    ["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
    ["2023-11-16 18:15:46.6805900", "374", "44"],
    ["2023-11-16 18:15:47.9951690", "396", "109"],
    ["2023-11-16 18:15:49.2000000", "879", "5"],
    ["2023-11-16 18:15:52.0000000", "120", "60"],
]
AZURE_TIMES = ["0001-01-01 00:00:00", "9999-12-31 23:59:59.9999999", "1970-01-01 00:00:00", "1e300", "nan", "-1",
               "2023-11-16 18:15:46.6805900+14:00", "2023-11-16 18:15:46.6805900-12:00", "2023-11-16T18:15:46Z"]
MOONCAKE_ROWS = [
    {"timestamp": 0, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47, 48]},
    {"timestamp": 2748, "input_length": 6472, "output_length": 26, "hash_ids": [46, 47, 49]},
    {"timestamp": 3000, "input_length": 100, "output_length": 5, "hash_ids": [50]},
    {"timestamp": 6100, "input_length": 900, "output_length": 40, "hash_ids": [50, 51]},
]
SHAREGPT_ROWS = [
    {"id": str(i), "conversations": [{"from": "human", "value": "x" * n}, {"from": "gpt", "value": "y" * m}]}
    for i, (n, m) in enumerate([(400, 800), (40, 90), (1200, 60), (8, 8)])
]
SHAREGPT_LENGTHS = [0, 1, 2, 3, 4, 5, 7, 2**20, 2**24]
VLLM_BENCH = {"backend": "vllm", "request_rate": 4.0, "duration": 12.5, "completed": 4, "total_input_tokens": 1400,
              "input_lens": [100, 200, 300, 800], "output_lens": [10, 20, 30, 40]}
TRACE_FILES = {"azure": "t.csv", "burstgpt": "t.csv", "mooncake": "t.jsonl", "sharegpt": "t.json",
               "vllm-bench": "t.json"}
TRACE_COLUMNS = {
    "azure": ["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
    "burstgpt": ["Timestamp", "Request tokens", "Response tokens", "Total tokens"],
    "mooncake": ["timestamp", "input_length", "output_length", "hash_ids"],
    "sharegpt": ["human", "gpt"],  # the turns' text: its length is the token count (characters / 4)
    "vllm-bench": ["input_lens", "output_lens", "request_rate", "duration", "completed"],
}
TRACE_ROWS = {"azure": 4, "burstgpt": 5, "mooncake": 4, "sharegpt": 4, "vllm-bench": 4}
TRACE_COMMANDS = ["run", "scenario", "stats", "fit"]
# a number in a JSON trace: a JSON number (NaN / Infinity tokens as Python writes them) or the same as text
JSON_VALUE = st.one_of(EXTREME.map(lambda e: e[1]), st.sampled_from(TEXT_EXTREMES))
CSV_TEXT = st.one_of(st.sampled_from(TEXT_EXTREMES), EXTREME.map(lambda e: repr(e[1])))


def trace_text(fmt: str, column: str, row: int | None, value: Any) -> str:
    """The base trace of a format with one cell (row None: the column in every row) set to value."""
    if fmt in ("azure", "burstgpt"):
        rows = copy.deepcopy(AZURE_ROWS if fmt == "azure" else BURSTGPT_ROWS)
        i = rows[0].index(column)
        for r in (rows[1:] if row is None else [rows[row + 1]]):
            r[i] = str(value)
        return _csv(rows)
    if fmt == "mooncake":
        recs = copy.deepcopy(MOONCAKE_ROWS)
        for r in (recs if row is None else [recs[row]]):
            if column == "hash_ids":
                r[column][0] = value
            else:
                r[column] = value
        return "\n".join(json.dumps(r) for r in recs) + "\n"
    if fmt == "sharegpt":
        convs = copy.deepcopy(SHAREGPT_ROWS)
        for c in (convs if row is None else [convs[row]]):
            c["conversations"][0 if column == "human" else 1]["value"] = "z" * value
        return json.dumps(convs)
    doc = copy.deepcopy(VLLM_BENCH)
    if column.endswith("_lens"):
        for k in (range(len(doc[column])) if row is None else [row]):
            doc[column][k] = value
    else:
        doc[column] = value
    return json.dumps(doc)


def check_trace(cli: SandboxedCli, d: Path, fmt: str, command: str, text: str, what: str) -> None:
    trace = d / TRACE_FILES[fmt]
    trace.write_text(text, encoding="utf-8")
    if command == "run":  # the --trace-file flag
        write_scenario(d, DEFAULT)
        run_scenario(cli, d, what, "--trace-file", trace.name, "--trace-format", fmt)
    elif command == "scenario":  # a class's trace: {file, format}
        write_scenario(d, set_path(DEFAULT, ("traffic", "classes", 0),
                                   {"name": "chat", "target": "llama8b", "trace": {"file": trace.name, "format": fmt}}))
        run_scenario(cli, d, what)
    elif command == "stats":
        res = run_and_check(cli, ["trace", "stats", trace.name, "--format", fmt, "--json", "out/stats.json"], d,
                            d / "out", what)
        assert res.rc != 0 or (d / "out" / "stats.json").is_file(), what
    else:
        res = run_and_check(cli, ["trace", "fit", trace.name, "-f", fmt, "-o", "out/fit.yaml"], d, d / "out", what)
        if res.rc == 0:  # the fitted workload holds finite numbers and a scenario can use it
            fitted = _load(d / "out" / "fit.yaml")
            bad = [f"{dotted(p)} = {get_path(fitted, p)!r}" for p, _ in numeric_fields(fitted, SCHEMAS["workload"])
                   if isinstance(get_path(fitted, p), float) and not math.isfinite(get_path(fitted, p))]
            assert not bad, f"{what}: trace fit wrote non-finite numbers {bad}"
            (d / "w" / "workloads").mkdir(parents=True)
            (d / "w" / "workloads" / "fit.yaml").write_text((d / "out" / "fit.yaml").read_text())
            write_scenario(d / "w", set_path(DEFAULT, ("traffic", "classes", 0, "workload"), fitted.get("name")))
            run_and_check(cli, ["validate", "s.yaml"], d / "w", None, f"{what}: validate the fitted workload")


@SETTINGS
@given(data=st.data(), fmt=st.sampled_from(sorted(TRACE_FILES)), command=st.sampled_from(TRACE_COMMANDS))
def test_trace_column_extremes(cli, new_dir, data, fmt, command):
    column = data.draw(st.sampled_from(TRACE_COLUMNS[fmt]), label="column")
    row = data.draw(st.one_of(st.none(), st.integers(0, TRACE_ROWS[fmt] - 1)), label="row (None: every row)")
    if fmt == "sharegpt":
        value = data.draw(st.sampled_from(SHAREGPT_LENGTHS), label="characters")
    elif fmt in ("azure", "burstgpt"):
        value = data.draw(st.sampled_from(AZURE_TIMES) if column == "TIMESTAMP" else CSV_TEXT, label="value")
    else:
        value = data.draw(JSON_VALUE, label="value")
    text = trace_text(fmt, column, row, value)
    check_trace(cli, new_dir(), fmt, command, text, f"trace {fmt} {column!r} row {row} = {value!r} ({command})")


# ---------------------------------------------------------------------------------------------- the harness


def test_harness_sees_a_good_run_and_a_bad_value(cli, new_dir):
    """The runner and checks themselves: the short default runs clean; a refused value is one error line."""
    d = new_dir()
    write_scenario(d, DEFAULT)
    res = run_scenario(cli, d, "the short default")
    assert res.rc == 0 and (d / "out" / "summary.json").is_file()
    assert not check_json_file(d / "out" / "summary.json")
    d = new_dir()
    write_scenario(d, set_path(DEFAULT, ("pools", 0, "count"), -1))
    assert run_scenario(cli, d, "pools[0].count = -1").rc == 2


def test_seed_documents_run_clean(cli, new_dir):
    """Every seed document runs as written (cut short): fuzzing a seed that is already refused would test nothing."""
    for name in (n for n in SCENARIOS if "+" in n):
        d = new_dir()
        write_scenario(d, SCENARIOS[name], files=name)
        res = run_scenario(cli, d, f"seed scenario {name}")
        assert res.rc == 0, f"{name}: {res.stderr}"
    for label in (lbl for lbl in SUPPORT if "+" in lbl):
        _, folder, doc = SUPPORT[label]
        d = new_dir()
        (d / folder).mkdir()
        (d / folder / Path(label.split("+")[0]).name).write_text(_dump(doc), encoding="utf-8")
        write_scenario(d, SCENARIOS["support-agent"] if label.endswith("+branch") else _scenario_for(label, doc, ()))
        res = run_scenario(cli, d, f"seed {label}")
        assert res.rc == 0, f"{label}: {res.stderr}"


def test_harness_reports_a_hang_and_a_crash(tmp_path):
    """A command over its time limit is a hang; an exit other than 0/2 and a traceback are crashes."""
    from fuzz_support import CliResult

    hang = CliResult(["run"], str(tmp_path), None, "", "", 31.0, timed_out=True)
    assert check_result(hang)[0].startswith("hang")
    crash = CliResult(["run"], str(tmp_path), 1, "", "Traceback (most recent call last):\nValueError: x\n", 0.1)
    assert any(p.startswith("traceback: ValueError") for p in check_result(crash))
    assert "exit code 1" in check_result(crash)


def test_every_numeric_schema_field_is_fuzzed():
    """Guards the field walker and the seeds: every numeric field of every schema is reachable. A new field that
    no shipped file and no seed above uses fails here: add a seed that switches its section on."""
    from fuzz_support import schema_numeric_fields

    groups = {"scenario": (["scenario"], SCENARIO_FIELDS)}
    for g, f in SUPPORT_FIELDS.items():
        groups[g] = ({"profile": ["profile", "models", "engines"]}.get(g, [g]), f)
    for group, (kinds, fields) in groups.items():
        every = set().union(*(schema_numeric_fields(SCHEMAS[k]) for k in kinds))
        assert every <= set(fields), f"{group}: no document holds {sorted(every - set(fields))}"
    assert GRID_FIELDS and SPACE_FIELDS and DEFAULT_PATHS
