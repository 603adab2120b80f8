"""How far simfactory's own forecasts have been from published measurements, as the shipped fidelity suites last
recorded it (calibrate/fidelity/recorded.json, rewritten by `simfactory fidelity --record` when a change moves a
suite): the evidence a report cites beside a deployment's forecast, so a reader sees how much to trust it and which
way it has leaned. Optimism (forecast latency too low or throughput too high) is the costly direction: a plan built on
it buys too little.

The record pools every point of every suite by step-time source kind (measured kernels, roofline) and engine preset;
a deployment is matched on both, else on its source kind alone. Beside that pooled figure it cites its kind's figure
per metric: throughput, ITL and TTFT forecasts are not equally good (TTFT, queueing and admission included, is the
weakest), and one pooled MAPE would lend a TTFT forecast the accuracy of the throughput ones. Reads data only: no
simulation."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from simfactory.paths import CALIBRATE_DIR
from simfactory.resolve.step_time import MEASURED_KERNELS_LABEL, ROOFLINE_DEFAULT_LABEL

RECORD_FILE = CALIBRATE_DIR / "fidelity" / "recorded.json"
UNBIASED_WITHIN = 0.005  # |optimism| below this reads "unbiased" (the fidelity table's wording)
# the fidelity suites' metrics as a report names them, in the order it lists them (a metric not named here is listed
# after these, under its own name)
METRIC_LABELS = {"output_tokens_per_s": "throughput", "itl_s": "ITL mean", "itl_median_s": "ITL median",
                 "ttft_s": "TTFT mean", "ttft_median_s": "TTFT median", "batch_latency_s": "batch latency"}


def source_kind(label: str) -> str:
    """The kind of step-time source a resolved deployment's label names: kernels (the shipped tables), roofline (the
    SKU's default factors), else its profile entry's source and "entry" (measured entry, published-fit entry,
    roofline entry: a calibrated or user profile the suites never ran)."""
    if label.startswith(MEASURED_KERNELS_LABEL):
        return "kernels"
    if label.startswith(ROOFLINE_DEFAULT_LABEL):
        return "roofline"
    return f"{label.split(' (')[0]} entry"


def kind_key(kind: str) -> str:
    """The record's breakdown pooling every suite's points on one step-time source kind."""
    return f"all suites [{kind}]"


def kind_engine_key(kind: str, preset: str) -> str:
    """The record's breakdown pooling the points of one source kind and one engine preset."""
    return f"{kind_key(kind)} | {preset}"


def kind_tp_key(kind: str, tp: int) -> str:
    """The record's breakdown pooling the points of one source kind at one tensor-parallel degree (every preset):
    the error grows with TP, so a deployment's own TP is evidence of its own."""
    return f"{kind_key(kind)} | tp {tp}"


def kind_metric_key(kind: str, metric: str) -> str:
    """The record's breakdown pooling the points of one source kind on one metric (every preset, every TP)."""
    return f"{kind_key(kind)} | metric {metric}"


def kind_model_key(kind: str, model: str, preset: str = "") -> str:
    """The record's breakdown pooling the points of one source kind on one model (every preset, TP and SKU; with
    `preset`, that engine preset's alone): a model the suites measured is evidence of its own, whatever its kind
    pools."""
    return f"{kind_key(kind)} | model {model}" + (f" | {preset}" if preset else "")


def leaning(optimism: float) -> str:
    """Which way forecasts leaned: optimistic (too fast), pessimistic (too slow) or unbiased."""
    if abs(optimism) < UNBIASED_WITHIN:
        return "unbiased"
    return "optimistic" if optimism > 0 else "pessimistic"


@dataclass(frozen=True)
class Evidence:
    """Published measurements a deployment's kind of forecast was checked against, and how it did."""

    basis: str  # what the figures pool, in words
    record_key: str  # the breakdown of recorded.json they are
    points: int
    mape: float  # mean absolute percentage error, a fraction
    optimism: float  # mean signed error, > 0: forecasts ran optimistic
    at_tp: "Evidence | None" = None  # the same source kind at the deployment's TP, every preset
    # pooled over every preset: the lowest and highest of the presets' own biases (a pooled bias near zero can be
    # presets leaning both ways, which "unbiased" alone would hide)
    presets_range: tuple[float, float] | None = None
    skus: tuple[str, ...] = ()  # the hardware its points were measured on (empty: the record does not say)
    # the same source kind per metric (every preset, every TP): metric -> its evidence, in METRIC_LABELS' order
    by_metric: tuple[tuple[str, "Evidence"], ...] = ()
    # the same source kind on the deployment's own model: its preset's points where a suite ran the model on it, else
    # every preset's (each TP and SKU)
    of_model: "Evidence | None" = None
    own_preset: bool = False  # a model row: its points are the deployment's own preset's alone

    def as_dict(self) -> dict[str, Any]:
        return {"basis": self.basis, "record": self.record_key, "points": self.points, "mape": self.mape,
                "optimism": self.optimism, "leaning": leaning(self.optimism), "skus": list(self.skus),
                "presets_optimism_range": list(self.presets_range) if self.presets_range is not None else None,
                "at_tp": self.at_tp.as_dict() if self.at_tp is not None else None,
                "by_metric": {m: e.metric_dict() for m, e in self.by_metric},
                "of_model": ({**self.of_model.metric_dict(), "skus": list(self.of_model.skus),
                              "own_preset": self.of_model.own_preset} if self.of_model is not None else None),
                "source": "calibrate/fidelity/recorded.json (simfactory fidelity over the shipped suites)"}

    def metric_dict(self) -> dict[str, Any]:
        """One metric's figures (by_metric's entries: the basis is the metric's label)."""
        return {"label": self.basis, "record": self.record_key, "points": self.points, "mape": self.mape,
                "optimism": self.optimism, "leaning": leaning(self.optimism)}


@lru_cache(maxsize=4)
def _breakdowns(path: Path) -> dict[str, dict[str, Any]]:
    """The record's breakdowns; empty where the record is missing or unreadable (a SIMFACTORY_HOME tree without
    one): a report then says so (record_problem) rather than failing the run."""
    try:
        return dict(json.loads(path.read_text(encoding="utf-8"))["breakdowns"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def record_problem(path: Path = RECORD_FILE) -> str | None:
    """Why the record cannot say how any kind of forecast did (missing, unreadable, or written before it pooled
    points by source kind), else None: a report must not pass that off as "never checked"."""
    if not _breakdowns(path):
        return f"the fidelity record {path} is missing or unreadable"
    if not any(k.startswith("all suites [") for k in _breakdowns(path)):
        return f"the fidelity record {path} predates the per-kind breakdowns (refresh it: `simfactory fidelity --record`)"
    return None


def _row(record: dict[str, dict[str, Any]], key: str, basis: str, sku: str | None) -> Evidence | None:
    """One breakdown of the record as evidence; its basis says so where none of its points was measured on the
    deployment's own hardware (`sku`)."""
    row = record.get(key)
    if not row or not row.get("points"):
        return None
    skus = tuple(str(x) for x in row.get("skus") or ())
    if sku and skus and sku not in skus:
        basis += f" (measured on {', '.join(skus)}; none on {sku})"
    return Evidence(basis, key, int(row["points"]), float(row["mape"]), float(row["optimism"]), skus=skus)


def _preset_biases(record: dict[str, dict[str, Any]], kind: str) -> list[float]:
    """Each engine preset's own bias on one source kind (the record's kind-and-preset rows, not its TP rows)."""
    preset_rows = kind_engine_key(kind, "")
    other_rows = (kind_tp_key(kind, 0).removesuffix("0"), kind_metric_key(kind, ""), kind_model_key(kind, ""))
    return [float(v["optimism"]) for k, v in record.items()
            if k.startswith(preset_rows) and not k.startswith(other_rows) and v.get("points")]


def _by_metric(record: dict[str, dict[str, Any]], kind: str) -> tuple[tuple[str, Evidence], ...]:
    """The record's rows of one source kind per metric, in METRIC_LABELS' order (others after, by name)."""
    prefix = kind_metric_key(kind, "")
    metrics = [k.removeprefix(prefix) for k in record if k.startswith(prefix)]
    order = list(METRIC_LABELS)
    metrics.sort(key=lambda m: (order.index(m) if m in order else len(order), m))
    found = [(m, _row(record, prefix + m, METRIC_LABELS.get(m, m), None)) for m in metrics]
    return tuple((m, e) for m, e in found if e is not None)


def _model_row(record: dict[str, dict[str, Any]], kind: str, model: str, preset: str | None,
               source: str) -> Evidence | None:
    """A model's own points on a source kind: on the deployment's engine preset where a suite ran the model on it (a
    model's presets can lean opposite ways: gpt-oss-120b's SGLang points on B200 pessimistic, its vLLM bursts on H100
    optimistic), else every preset's; they pool every TP and SKU that measured it, which the basis names
    ('gpt-oss-120b's published points on measured kernels (sglang-0.5; TP 8; b200)'), the deployment's own or not:
    the figure is the model's record, not its forecast's."""
    key = kind_model_key(kind, model, preset or "")
    if not (record.get(key) or {}).get("points"):
        key = kind_model_key(kind, model)
    row = record.get(key) or {}
    pools = [", ".join(str(x) for x in row.get("presets") or ()),
             "TP " + ", ".join(str(x) for x in row.get("tps") or ()) if row.get("tps") else "",
             ", ".join(str(x) for x in row.get("skus") or ())]
    where = "; ".join(x for x in pools if x)
    found = _row(record, key, f"{model}'s published points on {source}" + (f" ({where})" if where else ""), None)
    return replace(found, own_preset=key != kind_model_key(kind, model)) if found is not None else None


def evidence(step_time_label: str, preset: str | None, tp: int | None = None, sku: str | None = None,
             path: Path = RECORD_FILE, model: str | None = None) -> Evidence | None:
    """The evidence for a deployment whose step time is `step_time_label` on engine preset `preset` (and `sku`):
    its preset's points on its source kind, else every suite's on that kind, with that kind's points at its TP, per
    metric and on its own `model` beside them (at_tp, by_metric, of_model: where a suite measured that model); None
    where the suites never ran that kind (a calibrated or user profile: its own fit error is its evidence)."""
    kind, record = source_kind(step_time_label), _breakdowns(path)
    source = "measured kernels" if kind == "kernels" else kind
    found = _row(record, kind_engine_key(kind, preset), f"{preset} preset on {source}", sku) if preset else None
    if found is None:
        unchecked = f"{preset} preset not checked; " if preset else ""
        found = _row(record, kind_key(kind), f"{unchecked}every engine preset on {source}", sku)
        if found is None:
            return None
        biases = _preset_biases(record, kind)
        found = replace(found, presets_range=(min(biases), max(biases)) if biases else None)
    found = replace(found, by_metric=_by_metric(record, kind))
    if model:
        found = replace(found, of_model=_model_row(record, kind, model, preset, source))
    if tp is None:
        return found
    return replace(found, at_tp=_row(record, kind_tp_key(kind, tp), f"every engine preset on {source} at TP {tp}",
                                     None))


def forecast_sides(d: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None]]:
    """A summary deployment's forecast evidence per side: the deployment's, and its disaggregated prefill
    replicas' (their own hardware and step time) where it has them."""
    sides = [(d["name"], d.get("forecast_accuracy"))]
    if "prefill_forecast_accuracy" in d:
        sides.append((f"{d['name']} (prefill)", d["prefill_forecast_accuracy"]))
    return sides


def most_optimistic(s: dict[str, Any]) -> dict[str, Any] | None:
    """The forecast evidence (deployments[].forecast_accuracy) of a run's most optimistic deployment kind."""
    found = [a for d in s.get("deployments", []) for _, a in forecast_sides(d) if a]
    return max(found, key=lambda a: a["optimism"]) if found else None
