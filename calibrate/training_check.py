"""Fit the H100 training MFU priors to one published run each and check the bf16 one on Meta's Llama 3 405B.

Run: python calibrate/training_check.py
Prints the GEMM efficiency each calibration run implies (hardware_profiles/h100-sxm.yaml `training` ships them)
and, with the shipped bf16 prior, the predicted MFU of the Llama 3 405B pre-training layouts against the reported
figures (simfactory/calibration/training_runs.py names the sources).
"""

from __future__ import annotations

from simfactory.calibration.training_runs import CALIBRATION, VALIDATION, calibrate, predicted_mfu
from simfactory.paths import PROFILES_DIR
from simfactory.resolve.files import load_models, load_profile


def main() -> None:
    models = load_models([PROFILES_DIR])
    h100 = load_profile([PROFILES_DIR], "h100-sxm", "h100-sxm.yaml", "sku")
    for precision, run in CALIBRATION.items():
        print(f"calibration {precision}: {run.name}: measured MFU {run.mfu:.1%} -> GEMM efficiency "
              f"{calibrate(run, h100, models):.4f}")
    assert h100.training is not None
    shipped = h100.training.bf16_gemm_efficiency
    print(f"shipped bf16 prior: {shipped:.4f}")
    for run in VALIDATION:
        mfu = predicted_mfu(run, h100, models, shipped)
        print(f"validation: {run.name}: predicted MFU {mfu:.1%}, reported {run.mfu:.0%}, "
              f"error {mfu / run.mfu - 1:+.1%}")


if __name__ == "__main__":
    main()
