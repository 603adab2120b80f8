"""From benchmark scores to an LLM step's failure odds: the two mappings of an LLM step's `quality:` block
(config/quality.py StepQuality documents them). Pure functions: the simulation, resolve and metrics share them."""

from __future__ import annotations

import math


def error_ratio_fail_p(fail_p: float, score: float, ref_score: float) -> float:
    """fail_p x (100 - score) / (100 - ref_score), capped at 1: failures scale with the benchmark's error rate.
    ref_score must be below 100 (resolve refuses a perfect reference)."""
    return min(1.0, fail_p * ((100.0 - score) / (100.0 - ref_score)))  # the ratio is exactly 1 at the reference


def logistic_fail_p(fail_p: float, score: float, ref_score: float, logit_per_point: float) -> float:
    """1 - sigmoid(logit(1 - fail_p) + logit_per_point x (score - ref_score)): a Rasch (one-parameter item-response)
    shift of the step's log-odds of success (G. Rasch, "Probabilistic Models for Some Intelligence and Attainment
    Tests", 1960: P(success) = sigmoid(ability - difficulty), here ability measured in benchmark points). A fail_p of
    0 or 1 stays put (infinite log-odds)."""
    if fail_p <= 0.0 or fail_p >= 1.0:
        return fail_p
    z = math.log((1.0 - fail_p) / fail_p) + logit_per_point * (score - ref_score)
    # 1 - sigmoid(z) = sigmoid(-z), written so that neither branch overflows
    if z >= 0:
        e = math.exp(-z)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(z))


def mapped_fail_p(fail_p: float, score: float, ref_score: float, mapping: str,
                  logit_per_point: float | None = None) -> float:
    """The step's failure probability when answered by a model scoring `score` (the reference scores ref_score)."""
    if mapping == "logistic":
        assert logit_per_point is not None
        return logistic_fail_p(fail_p, score, ref_score, logit_per_point)
    return error_ratio_fail_p(fail_p, score, ref_score)
