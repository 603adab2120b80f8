"""JSON Schemas for editors (generated, shipped, validating every shipped file) and the Python API."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

import simfactory
from simfactory.cli import app
from simfactory.paths import PROFILES_DIR, PROJECT_ROOT, SCENARIOS_DIR, WORKLOADS_DIR
from simfactory.schemas import KINDS, SCHEMA_DIR, schema

KIND_OF = {"models": "models", "engines": "engines", "prices": "price-book"}


def shipped_files():
    for p in sorted(SCENARIOS_DIR.glob("*.yaml")):
        yield p, "scenario"
    for p in sorted(WORKLOADS_DIR.glob("*.yaml")):
        yield p, "workload"
    for p in sorted(PROFILES_DIR.glob("*.yaml")):
        yield p, KIND_OF.get(p.stem, "profile")


@pytest.mark.parametrize("kind", list(KINDS))
def test_shipped_schema_files_are_current(kind):
    assert json.loads((SCHEMA_DIR / f"{kind}.json").read_text()) == schema(kind), (
        "regenerate: python -c 'from simfactory.schemas import write_all; write_all()'"
    )


def test_every_shipped_yaml_validates_and_points_editors_at_its_schema():
    validators: dict[str, jsonschema.protocols.Validator] = {}
    for path, kind in shipped_files():
        text = path.read_text()
        assert text.startswith(f"# yaml-language-server: $schema=../schemas/{kind}.json"), path
        if kind not in validators:  # what jsonschema.validate does, once per schema rather than once per file
            s = schema(kind)
            cls = jsonschema.validators.validator_for(s)
            cls.check_schema(s)
            validators[kind] = cls(s)
        validators[kind].validate(yaml.safe_load(text))


def test_schema_rejects_an_unknown_field():
    doc = yaml.safe_load((SCENARIOS_DIR / "default.yaml").read_text())
    doc["deployments"][0]["max_batch"] = 8
    with pytest.raises(jsonschema.ValidationError, match="max_batch"):
        jsonschema.validate(doc, schema("scenario"))


def test_every_schema_field_has_a_description():
    """The schema is the documentation (editor hovers, the reference pages): every property of every model, the
    root's and each of $defs', says what it is; a field added without `description=` fails here."""
    missing = set()
    for kind in KINDS:
        s = schema(kind)
        models = [(s.get("title", kind), s), *s.get("$defs", {}).items()]
        for name, model in models:
            for field, prop in model.get("properties", {}).items():
                if not str(prop.get("description", "")).strip():
                    missing.add(f"{name}.{field}")
    assert not missing, f"{len(missing)} fields without a description: {', '.join(sorted(missing))}"


def test_schema_command():
    res = CliRunner().invoke(app, ["schema", "workload"])
    assert res.exit_code == 0 and json.loads(res.output)["title"]
    assert CliRunner().invoke(app, ["schema", "nope"]).exit_code == 2


def test_python_api_equals_the_cli_run(tmp_path):
    m = simfactory.run(SCENARIOS_DIR / "default.yaml", seed=9)
    res = CliRunner().invoke(app, ["run", str(SCENARIOS_DIR / "default.yaml"), "--seed", "9", "--quiet", "--no-plots",
                                   "--out", str(tmp_path)])
    assert res.exit_code == 0
    cli = json.loads((tmp_path / "summary.json").read_text())
    assert json.loads(json.dumps(m.summary)) == cli
    assert len(m.requests) == cli["window"]["total_requests"]
    edited = simfactory.load_scenario(SCENARIOS_DIR / "default.yaml")
    faster = edited.model_copy(update={"traffic": edited.traffic.model_copy(update={
        "arrival": edited.traffic.arrival.model_copy(update={"rate_per_s": 10.0})})})
    assert simfactory.run(faster, seed=9).summary["throughput"]["offered_requests_per_s"] < 15
    assert PROJECT_ROOT.is_dir()


def test_init_writes_a_valid_scenario_that_runs(tmp_path):
    out = tmp_path / "mine.yaml"
    runner = CliRunner()
    res = runner.invoke(app, ["init", "--non-interactive", "--model", "llama-3.1-8b", "--sku", "h200", "--rate", "5",
                              "--replicas", "1", "-o", str(out)])
    assert res.exit_code == 0, res.output
    m = simfactory.run(out)
    assert m.summary["outcomes"]["completed"] > 0 and m.summary["service"]["service_classes"]["interactive"]
    again = runner.invoke(app, ["init", "--non-interactive", "-o", str(out)])
    assert again.exit_code == 2 and "exists" in again.output
    bad = tmp_path / "bad.yaml"
    res = runner.invoke(app, ["init", "--non-interactive", "--model", "llama-3.1-70b", "--sku", "l40s", "-o", str(bad)])
    assert res.exit_code == 2 and "does not fit" in res.output
    assert not bad.exists() and list(tmp_path.iterdir()) == [out]


def test_python_api_lists_its_functions_documents_them_and_prints_a_short_result(tmp_path, monkeypatch):
    import simfactory

    monkeypatch.setenv("HOME", str(tmp_path))
    assert {"run", "prepare", "load_scenario", "Result"} <= set(simfactory.__all__) <= set(dir(simfactory))
    for name in ("run", "prepare", "load_scenario"):
        assert "Example:" in getattr(simfactory, name).__doc__, name
    sc = simfactory.load_scenario("scenarios/default.yaml")
    short = sc.model_copy(update={"sim": sc.sim.model_copy(update={"horizon_s": 20.0, "warmup_s": 5.0})})
    text = repr(simfactory.run(short))
    assert text.startswith("Result(scenario='default'") and "ttft_p99=" in text and len(text) < 200
