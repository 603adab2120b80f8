"""The torch backend for real, on the CPU, with a tiny Llama-shaped config: what `calibrate run --backend torch`
executes on a GPU, minus the GPU. Skipped where torch and transformers are not installed (the serve-test extra, which CI installs, has both)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("transformers")

from simfactory.calibration.backends import TorchBackend  # noqa: E402
from simfactory.calibration.design import DesignPoint  # noqa: E402
from simfactory.calibration.microbench import measure, publish  # noqa: E402

TINY = Path(__file__).parent / "fixtures" / "calibration" / "tiny-llama"


@pytest.fixture(scope="module")
def backend():
    """One intra-op thread while these tests time steps: CI runs two test workers on two cores, and torch's default
    (a thread a core, each OpenMP thread spinning while it waits) oversubscribes them, which once timed a 64-token
    prefill at 81 ms; with one thread the other worker only ever delays a step, which fastest_s's minimum discards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield TorchBackend(TINY, "bf16", 1, device="cpu")
    finally:
        torch.set_num_threads(threads)


def fastest_s(backend: TorchBackend, small: DesignPoint, large: DesignPoint, rounds: int = 7) -> tuple[float, float]:
    """The fastest of several interleaved timings of each point: on a shared CPU, other processes only ever add
    time, so the minimum is the step's own cost and interleaving exposes both points to the same load."""
    a, b = [], []
    for _ in range(rounds):
        a += backend.time_point(small, repetitions=1, warmup=1)
        b += backend.time_point(large, repetitions=1, warmup=1)
    return min(a), min(b)


def test_step_times_grow_with_the_work_in_the_step(backend):
    small, large = fastest_s(backend, DesignPoint("prefill", prefill_seqs=1, prefill_tokens=64),
                             DesignPoint("prefill", prefill_seqs=4, prefill_tokens=512))
    assert large > 3 * small
    # the decode attends over the whole static cache: a longer context is a slower step (the tiny model's fixed
    # per-step cost keeps the ratio far below 128x: about 5x on a quiet CPU, 8192 vs 64 tokens)
    short, long = fastest_s(backend, DesignPoint("decode", decode_seqs=32, context_tokens=64),
                            DesignPoint("decode", decode_seqs=32, context_tokens=8192))
    assert long > 1.5 * short


def test_repetitions_start_from_the_same_cache(backend):
    """More repetitions than the static cache has free positions: each starts from an emptied cache (5.x
    appends at the cache's length and would run off its end otherwise)."""
    times = backend.time_point(DesignPoint("decode", decode_seqs=2, context_tokens=4), repetitions=8, warmup=2)
    assert len(times) == 8 and all(t > 0 for t in times)


def test_mixed_steps_are_not_offered(backend):
    with pytest.raises(ValueError, match="cannot time mixed"):
        backend.time_point(DesignPoint("mixed", prefill_seqs=1, prefill_tokens=16, decode_seqs=2, context_tokens=16), 3, 0)


def test_measured_steps_fit_and_publish_a_profile(backend, tmp_path):
    points = [DesignPoint("prefill", prefill_seqs=b, prefill_tokens=p) for p in (32, 128, 256) for b in (1, 2, 4)]
    points += [DesignPoint("decode", decode_seqs=b, context_tokens=c) for b in (1, 8, 32) for c in (64, 512, 1024)]
    steps = measure(backend, points, repetitions=5, warmup=1)
    assert len(steps) == len(points) and set(steps["kind"]) == {"prefill", "decode"}
    assert (steps["step_s"] > 0).all() and (steps["repetitions"] >= 3).all()
    run = publish(steps, sku="h100-sxm", model="llama-3.1-8b", engine=backend.engine, dtype="bf16", tp=1,
                  profiles_dir=tmp_path, provenance={"gpu": "cpu (test)", "engine_version": backend.version()},
                  kind="linear", force=True)
    doc = yaml.safe_load(run.profile_path.read_text())
    assert doc["engine"] == "torch-eager" and doc["source"] == "measured"
    assert "transformers" in doc["provenance"]["engine_version"]


def test_calibrate_run_rehearses_the_whole_path_on_the_cpu(tmp_path):
    """`calibrate run --backend torch --device cpu`: time, fit and write a profile without a GPU or NVML."""
    from typer.testing import CliRunner

    from simfactory.cli import app

    res = CliRunner().invoke(app, ["calibrate", "run", "--backend", "torch", "--device", "cpu", "--sku", "h100-sxm",
                                   "--model", "llama-3.1-8b", "--config-dir", str(TINY), "--quick", "--repetitions", "3",
                                   "--warmup", "0", "--fit", "linear", "--profiles-dir", str(tmp_path), "--force"])
    assert res.exit_code == 0, res.output
    doc = yaml.safe_load((tmp_path / "h100-sxm" / "llama-3.1-8b-torch-eager-bf16-tp1.yaml").read_text())
    assert doc["source"] == "measured" and doc["provenance"]["gpu"] == "cpu"


def test_device_flags_are_checked_before_anything_runs(tmp_path):
    from typer.testing import CliRunner

    from simfactory.cli import app

    base = ["calibrate", "run", "--model", "llama-3.1-8b", "--profiles-dir", str(tmp_path)]
    for flags, message in ((["--device", "cpu"], "--device: device: cpu runs the torch backend only"),
                           (["--backend", "torch", "--device", "cpu"], "--sku: sku: --device cpu has no GPU name"),
                           (["--backend", "torch", "--device", "tpu"], "--device: device: cuda or cpu")):
        res = CliRunner().invoke(app, base + flags)
        assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, (flags, res.output)
