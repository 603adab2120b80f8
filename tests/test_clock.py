"""The simulation clock and the request table's run-time columns."""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from simfactory.sim.clock import FloatEnvironment
from simfactory.sim.requests import COLUMNS, LIVE_COLUMNS, RequestTable


def test_clock_stays_a_python_float_after_numpy_delays():
    env = FloatEnvironment()
    seen = []
    for delay in np.array([0.5, 0.25]):  # numpy float64 delays, as distribution draws give
        env.timeout(delay).callbacks.append(lambda ev: seen.append(type(env.now)))
    env.run()
    assert seen == [float, float] and env.now == 0.5


def test_call_at_lands_exactly_and_refuses_the_past():
    env = FloatEnvironment()
    at = 0.1 + 0.2  # not representable as 0.3: the event must land on this very float
    fired = []
    env.call_at(at, lambda ev: fired.append(env.now))
    env.run()
    assert fired == [at]
    with pytest.raises(ValueError, match="before now"):
        env.call_at(at / 2, lambda ev: None)


def test_start_runs_before_normal_events_due_now():
    env = FloatEnvironment()
    order = []
    env.timeout(0).callbacks.append(lambda ev: order.append("timeout"))
    env.start(lambda ev: order.append("start"))
    env.run()
    assert order == ["start", "timeout"]


def test_live_columns_are_lists_during_the_run_and_arrays_of_their_dtype_after_trim():
    t = RequestTable(capacity=2)
    t.add_many(np.array([0.0, 1.0]), np.array([0, 0], dtype=np.int32), np.array([0, 0], dtype=np.int32),
               np.array([10, 20]), np.array([5, 6]))
    rid = t.add(2.0, 0, 0, 30, 7)  # grows past the capacity
    t.generated[rid] += 3
    t.replica_s[rid] += 0.5
    assert isinstance(t.generated, list) and isinstance(t.arrival_s, np.ndarray)
    assert all(type(v) is int for v in t.input_tokens[:3])  # values as Python scalars, not numpy ones
    t.trim()
    for name, (dtype, _) in COLUMNS.items():
        column = getattr(t, name)
        assert isinstance(column, np.ndarray) and column.dtype == dtype and len(column) == 3, name
    assert t.generated.tolist() == [0, 0, 3] and t.replica_s[2] == 0.5 and t.input_tokens.tolist() == [10, 20, 30]
    assert np.isnan(t.first_token_s).all() and "generated" in LIVE_COLUMNS


def _firing_order(later: bool) -> list[tuple[float, str]]:
    """Events of three kinds due at the same times (exact ties included), delays recurring or not; call_later for
    the recurring ones when `later`, a Timeout each otherwise."""
    env = FloatEnvironment()
    order: list[tuple[float, str]] = []

    def fire(name: str) -> None:
        order.append((env.now, name))

    def source(k: int) -> None:
        for d in (0.25, 0.5, 0.25):  # recurring delays, some due together with the other kinds' events
            if later:
                env.call_later(d, fire, f"later{k}/{d}")
            else:
                env.timeout(d).callbacks.append(lambda _ev, n=f"later{k}/{d}": fire(n))
        env.call_at(env.now + 0.25, lambda _ev, n=f"at{k}": fire(n))
        if later and k % 2:  # added from inside a callback of the line, which has just fired its last entry
            env.call_later(0.25, lambda: env.call_later(0.25, fire, f"nested{k}"))
        elif k % 2:
            env.timeout(0.25).callbacks.append(
                lambda _ev: env.timeout(0.25).callbacks.append(lambda _e, n=f"nested{k}": fire(n)))

    for k in range(6):
        env.call_at(0.25 * k, lambda _ev, k=k: source(k))
    env.run()
    return order


def test_call_later_fires_in_a_timeouts_place_among_ties():
    assert _firing_order(later=True) == _firing_order(later=False)
    env = FloatEnvironment()
    env.call_later(1.0, lambda: None)
    env.timeout(2.0)
    env.run()
    assert next(env._eid) == 2  # as many event ids as two Timeouts: the run's event count is unchanged


def test_run_keeps_simpys_until_semantics_and_crashes_on_an_undefused_failure():
    """FloatEnvironment.run spells SimPy's step() out in its loop: a time stops the run there (events due then, but
    after it, wait), an event's value is returned, a later run resumes where the last stopped, and a failed event
    nothing defused raises as in SimPy."""
    for env_type in (FloatEnvironment, simpy.Environment):
        env = env_type()
        seen: list[float] = []
        for t in (1.0, 2.0, 3.0):
            env.timeout(t).callbacks.append(lambda _ev, t=t: seen.append(t))
        assert env.run(until=2.0) is None and env.now == 2.0 and seen == [1.0]  # the event due at 2.0 waits
        done = env.timeout(0.5, value="v")
        assert env.run(until=done) == "v" and seen == [1.0, 2.0] and env.now == 2.5
        env.run()
        assert seen == [1.0, 2.0, 3.0] and env.now == 3.0
        with pytest.raises(ValueError):
            env.run(until=1.0)  # not after now
        failed = env.event()
        failed.fail(KeyError("boom"))
        with pytest.raises(KeyError):
            env.run()
        defused = env.event()
        defused.fail(KeyError("quiet"))
        defused.defused = True
        env.run()


def test_call_later_refuses_a_negative_delay_and_drawn_network_delays_do_not_make_a_line_each(monkeypatch, tmp_path):
    """A delay line per distinct delay stays for the run, so call_later is for delays from a small set: a negative
    one is refused as a Timeout refuses it, and requests crossing a jittered link (a drawn delay each) are delivered
    with call_at, not a line apiece (the deployment's fixed front end still takes one line)."""
    env = FloatEnvironment()
    with pytest.raises(ValueError):
        env.call_later(-1.0, lambda: None)

    from conftest import scenario_doc, write_case

    from simfactory.api import run

    delays: set[float] = set()
    original = FloatEnvironment.call_later

    def spy(self, delay_s, callback, *args):
        delays.add(delay_s)
        original(self, delay_s, callback, *args)

    monkeypatch.setattr(FloatEnvironment, "call_later", spy)
    doc = scenario_doc(rate=20.0, horizon_s=20.0, front_end_s=0.01)
    doc["traffic"]["classes"][0]["region"], doc["pools"][0]["region"] = "eu", "us"
    doc["network"] = {"links": [{"a": "eu", "b": "us", "latency_s": 0.05, "jitter_s": 0.02}]}
    res = run(write_case(tmp_path, doc))
    assert len(res.requests) > 200 and len(delays) <= 1
