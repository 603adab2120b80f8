"""SGLang's overlap scheduler outputs a prefill's first token only after launching the next batch: the client sees
it at the end of the next step when that step only decodes, once a prefill batch next is launched (at once where
prefills replay graphs), at once when nothing comes next
(`delayed_first_token`, on in the sglang presets). Closed forms on constant steps, and fast-forward exactness."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from conftest import assert_fast_forward_matches, scenario_doc, shipped_engines

from simfactory.api import run
from simfactory.fidelity import with_step_time
from simfactory.hardware.step_time import StepLoad, StepTimeModel
from simfactory.sim.outcomes import Outcome
from simfactory.sim.run import FleetModel, simulate

STEP_S = 0.01  # conftest's test profile: every step takes overhead_s


def test_an_idle_engines_first_token_waits_for_the_next_decode_step(case):
    common = dict(rate=0.5, process="constant", horizon_s=20.0)
    plain = run(case(scenario_doc(**common))).requests
    delayed = run(case(scenario_doc(**common, delayed_first_token=True, overlap_schedule=True))).requests
    assert np.allclose(plain["ttft_s"], STEP_S) and np.allclose(delayed["ttft_s"], 2 * STEP_S)
    assert np.allclose(delayed["e2e_s"], plain["e2e_s"])  # the answer ends when it ended
    one = run(case(scenario_doc(**common, delayed_first_token=True, overlap_schedule=True,
                                output_tokens={"kind": "fixed", "value": 1}))).requests
    assert np.allclose(one["ttft_s"], STEP_S) and np.allclose(one["e2e_s"], STEP_S)  # nothing follows: at once


def test_a_prefill_batch_next_processes_the_earlier_result_first(case):
    """Two 3,000-token prompts at once, one prompt per step (no chunking, prefill first): the first prompt's token
    goes out as the second prefill starts (one step), the second's after the decode step that follows (three)."""
    doc = scenario_doc(rate=2.0, process="constant", horizon_s=1.0, max_num_seqs=2, max_num_batched_tokens=4096,
                       enable_chunked_prefill=False, schedule="prefill_first", delayed_first_token=True,
                       overlap_schedule=True, input_tokens={"kind": "fixed", "value": 3000})
    doc["traffic"]["arrival"] = {"process": "closed", "concurrency": 2, "requests": 2}
    req = run(case(doc)).requests.sort_values("first_scheduled_s")
    assert len(req) == 2 and (req["outcome"] == "completed").all()
    assert np.allclose(req["ttft_s"].to_numpy(), [STEP_S, 3 * STEP_S])


class _EagerPrefills(StepTimeModel):
    """Constant steps whose prefills the host launches eagerly, taking launch_s of the step to do so."""

    def __init__(self, step_s: float, launch_s: float) -> None:
        self.step, self.launch = step_s, launch_s

    def step_s(self, load: StepLoad) -> float:
        return self.step

    def prefill_launch_s(self) -> float:
        return self.launch


@pytest.mark.parametrize("launch_s", [0.004, 0.01, 0.05])
def test_after_an_eager_prefill_the_earlier_first_token_waits_for_its_launch(case, launch_s):
    """As above, but the second prefill launches eagerly: SGLang 0.5 pops the first prompt's result only once that
    launch returns, so it goes out min(launch, step) after the second prefill starts; the second's is unchanged."""
    doc = scenario_doc(rate=2.0, process="constant", horizon_s=1.0, max_num_seqs=2, max_num_batched_tokens=4096,
                       enable_chunked_prefill=False, schedule="prefill_first", delayed_first_token=True,
                       overlap_schedule=True, input_tokens={"kind": "fixed", "value": 3000})
    doc["traffic"]["arrival"] = {"process": "closed", "concurrency": 2, "requests": 2}
    rs = with_step_time(case(doc), _EagerPrefills(STEP_S, launch_s))
    t = simulate(rs, keep_logs=0).table
    order = np.argsort(t.first_scheduled_s)
    ttft = (t.first_token_s - t.arrival_s)[order]
    assert (t.outcome == Outcome.COMPLETED).all()
    assert np.allclose(ttft, [STEP_S + min(launch_s, STEP_S), 3 * STEP_S])


def test_the_launch_a_model_reports_is_its_eager_prefill_floor():
    """What the engine waits for: the floor of the models that have one (kernel tables, roofline), 0 elsewhere."""
    from conftest import resolved_deployment

    eager = resolved_deployment("sglang-0.5", "b200", "deepseek-r1", 8, "fp8").step_time
    graphed = resolved_deployment("sglang", "b200", "deepseek-r1", 8, "fp8").step_time
    assert eager.prefill_launch_s() == pytest.approx(eager.step_s(StepLoad(prefill_tokens=1, prefill_attn_pairs=1)))
    assert eager.prefill_launch_s() > 0.05 and graphed.prefill_launch_s() == 0.0
    assert eager.without_prefill_floor().prefill_launch_s() == 0.0


class _Launching(StepTimeModel):
    """Another model's steps, its prefills launched eagerly in launch_s (fast-forward keeps the inner model's)."""

    def __init__(self, inner: StepTimeModel, launch_s: float) -> None:
        self.inner, self.launch = inner, launch_s

    def step_s(self, load: StepLoad) -> float:
        return self.inner.step_s(load)

    def decode_affine(self, decode_seqs: int, kv0: float, kv_step: float, n_max: int) -> tuple[float, float, int]:
        return self.inner.decode_affine(decode_seqs, kv0, kv_step, n_max)

    def prefill_launch_s(self) -> float:
        return self.launch


def _pair(case, doc, step=None, seed=1, launch_s=0.0):
    """The same run stepping every iteration and fast-forwarding."""
    out = []
    for exact in (True, False):
        d = copy.deepcopy(doc)
        d["sim"]["exact"] = exact
        rs = case(d, step)
        if launch_s:
            rs = with_step_time(rs, _Launching(rs.deployments[0].step_time, launch_s))
        out.append(FleetModel(rs, seed=seed).run())
    return out


@pytest.mark.parametrize("seed, launch_s", [(1, 0.0), (2, 0.0), (3, 0.003)])
def test_fast_forward_matches_stepping_with_delayed_first_tokens(case, seed, launch_s):
    doc = scenario_doc(rate=12.0, max_num_seqs=24, seed=seed, delayed_first_token=True, overlap_schedule=True,
                       input_tokens={"kind": "lognormal", "median": 200, "sigma": 1.0, "max": 1500},
                       output_tokens={"kind": "geometric", "mean": 60}, horizon_s=8)
    step = {"overhead_s": 0.004, "s_per_prefill_token": 1e-5, "s_per_decode_seq": 3e-4, "s_per_kv_token": 2e-7}
    exact, fast = _pair(case, doc, step, seed, launch_s)
    assert_fast_forward_matches(exact, fast)
    t = exact.table
    done = t.outcome == 1
    assert done.sum() > 50 and (t.first_token_s[done] <= t.completion_s[done]).all()


def test_the_sglang_presets_delay_and_the_others_do_not():
    presets = shipped_engines()
    assert presets["sglang"].defaults.delayed_first_token and presets["sglang-0.5"].defaults.delayed_first_token
    for name in ("vllm", "tensorrt-llm", "tensorrt-llm-0", "nim"):
        assert not presets[name].defaults.delayed_first_token, name




@pytest.mark.parametrize("stop", ["horizon", "outage"])
def test_a_run_that_stops_or_fails_mid_step_records_the_same_first_tokens_either_way(case, stop):
    """The decode step after a prefill is cut by the end of the run (drain off) or a replica outage: the first token
    it would have delivered is delivered (or not) alike when stepping and when fast-forwarding."""
    doc = scenario_doc(rate=1.0, process="constant", horizon_s=1.015 if stop == "horizon" else 1.5,
                       delayed_first_token=True, overlap_schedule=True)
    if stop == "horizon":
        doc["sim"]["drain"] = False
    else:
        doc["faults"] = {"outages": [{"pool": "pool", "start_s": 1.015, "duration_s": 0.1}]}
    exact, fast = (r.table for r in _pair(case, doc))
    np.testing.assert_array_equal(exact.outcome, fast.outcome)
    for col in ("first_token_s", "completion_s"):
        np.testing.assert_allclose(getattr(exact, col), getattr(fast, col), rtol=1e-12, equal_nan=True, err_msg=col)
    if stop == "horizon":  # the second request's first token was due after the run ended
        assert np.isnan(exact.first_token_s[1]) and exact.first_token_s[0] == pytest.approx(2 * STEP_S)


def test_without_overlap_scheduling_nothing_is_delayed(case):
    req = run(case(scenario_doc(rate=0.5, process="constant", horizon_s=20.0, delayed_first_token=True,
                                overlap_schedule=False))).requests
    assert np.allclose(req["ttft_s"], STEP_S)
