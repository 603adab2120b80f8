"""Closed-loop clients (traffic.arrival process: closed) against the closed forms of closed queueing systems.

N clients, each with one request in flight, think time Z between a request's end and the next send:
- Little's law on the whole closed system (clients thinking + requests in flight = N): X = N / (R + Z);
  with zero think time X = N / R, whatever the service.
- Deterministic service, max_num_seqs >= N: every client is served at once, so X = N / S exactly.
- One server serving one request at a time, exponential think time: the finite-source queue (machine
  repairman, M/G/1//N). Takacs (1962) gives the idle probability for any service-time distribution with
  Laplace-Stieltjes transform B*(s):
      p0 = 1 / (1 + N lam E[S] sum_{k=0}^{N-1} C(N-1, k) prod_{i=1}^{k} (1 - B*(i lam)) / B*(i lam)),  lam = 1/Z
  and then X = (1 - p0) / E[S], R = N / X - Z. For exponential service it is the M/M/1//N formula
  p0 = 1 / sum_n N! / (N-n)! (E[S]/Z)^n. Service here is n constant steps of dt with n geometric (mean m):
  B*(s) = p e^{-s dt} / (1 - (1 - p) e^{-s dt}), p = 1/m, exactly; within ~1/m of exponential service.
Estimates use batch means; theory must lie within 4 standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from simfactory.api import run
from simfactory.cli import app
from simfactory.config.limits import MIN_CLOSED_LOOP_CYCLE_S
from conftest import scenario_doc, write_case

runner = CliRunner()


def closed_doc(n: int, think: dict | None = None, **kw) -> dict:
    doc = scenario_doc(**kw)
    doc["traffic"]["arrival"] = {"process": "closed", "concurrency": n, **({"think_time": think} if think else {})}
    return doc


def batch_means(x: np.ndarray, batches: int = 30) -> tuple[float, float]:
    usable = len(x) - len(x) % batches
    means = x[:usable].reshape(batches, -1).mean(axis=1)
    return float(means.mean()), float(means.std(ddof=1) / math.sqrt(batches))


def completions_rate(req, start: float, end: float, batches: int = 30) -> tuple[float, float]:
    """Completions per second in [start, end), with a batch-means standard error over equal time slices."""
    done = np.sort(req.loc[req["outcome"] == "completed", "completion_s"].to_numpy())
    edges = np.linspace(start, end, batches + 1)
    counts = np.diff(np.searchsorted(done, edges))
    rates = counts / np.diff(edges)
    return float(rates.mean()), float(rates.std(ddof=1) / math.sqrt(batches))


def max_in_flight(req) -> int:
    """Most requests in flight at once: +1 at each arrival, -1 at each end as the caller sees it (departure: the
    answer back, or the rejection), ends first at equal times."""
    ends = req["departure_s"].to_numpy()
    assert not np.isnan(ends).any()
    times = np.concatenate([req["arrival_s"].to_numpy(), ends])
    steps = np.concatenate([np.ones(len(req)), -np.ones(len(req))])
    order = np.lexsort((steps, times))
    return int(np.cumsum(steps[order]).max())


def takacs_p0(n: int, lam: float, mean_s: float, lst) -> float:
    """Idle probability of the finite-source M/G/1//N queue (Takacs 1962)."""
    total, prod = 0.0, 1.0
    for k in range(n):
        if k > 0:
            b = lst(k * lam)
            prod *= (1 - b) / b
        total += math.comb(n - 1, k) * prod
    return 1.0 / (1.0 + n * lam * mean_s * total)


def mm1n_p0(n: int, rho: float) -> float:
    """M/M/1//N (machine repairman): p0 = 1 / sum_k N!/(N-k)! rho^k, rho = E[S] / Z."""
    return 1.0 / sum(math.factorial(n) / math.factorial(n - k) * rho**k for k in range(n + 1))


def test_takacs_reduces_to_machine_repairman():
    n, z, s = 5, 4.0, 1.0
    assert takacs_p0(n, 1 / z, s, lambda x: (1 / s) / (1 / s + x)) == pytest.approx(mm1n_p0(n, s / z), rel=1e-12)


def test_zero_think_time_obeys_littles_law(case):
    n, warmup, horizon = 6, 200.0, 6000.0
    rs = case(closed_doc(n, max_num_seqs=2, horizon_s=horizon, warmup_s=warmup,
                         output_tokens={"kind": "geometric", "mean": 20}), {"overhead_s": 0.05})
    m = run(rs)
    req = m.requests
    assert (req["outcome"] == "completed").all()
    measured = req[req["measured"]]
    e2e = measured["e2e_s"].mean()
    x, _ = completions_rate(req, warmup, horizon)
    assert x == pytest.approx(n / e2e, rel=0.02), (x, n / e2e)
    assert m.summary["throughput"]["requests_per_s"] == pytest.approx(x, rel=0.01)
    assert max_in_flight(req) == n
    assert m.summary["arrival_process"] == "closed loop: 6 clients, no think time"


def test_deterministic_service_gives_n_over_s(case):
    """All N clients send together and are batched together: a prefill step of N prompts, then 19 decode steps
    of N sequences, so S is known exactly and X = N / S."""
    n, dt, per_prefill, per_seq = 4, 0.02, 0.001, 0.002
    rs = case(closed_doc(n, max_num_seqs=8, horizon_s=1000, warmup_s=50, input_tokens={"kind": "fixed", "value": 10},
                         output_tokens={"kind": "fixed", "value": 20}),
              {"overhead_s": dt, "s_per_prefill_token": per_prefill, "s_per_decode_seq": per_seq})
    m = run(rs)
    service_s = (dt + per_prefill * 10 * n) + 19 * (dt + per_seq * n)
    req = m.requests[m.requests["measured"]]
    assert np.allclose(req["e2e_s"], service_s, rtol=1e-9)
    x, _ = completions_rate(m.requests, 50, 1000)
    assert x == pytest.approx(n / service_s, rel=2 * n / service_s / 950)  # one round of N at either edge


def test_a_request_count_stops_the_clients_once_sent(case):
    """A benchmark's request count (AIPerf --request-count): 4 clients and 10 requests, deterministic service as
    above. Rounds of 4 start at 0 and S4; the third sends only the last 2, served as a batch of 2 (S2), and then
    every client stops, long before the horizon."""
    n, total, dt, per_prefill, per_seq = 4, 10, 0.02, 0.001, 0.002
    doc = closed_doc(n, max_num_seqs=8, horizon_s=1000, input_tokens={"kind": "fixed", "value": 10},
                     output_tokens={"kind": "fixed", "value": 20})
    doc["traffic"]["arrival"]["requests"] = total
    rs = case(doc, {"overhead_s": dt, "s_per_prefill_token": per_prefill, "s_per_decode_seq": per_seq})
    res = run(rs)
    req = res.requests

    def service_s(batch: int) -> float:
        return (dt + per_prefill * 10 * batch) + 19 * (dt + per_seq * batch)

    s4, s2 = service_s(4), service_s(2)
    assert len(req) == total and (req["outcome"] == "completed").all()
    sends = np.sort(req["arrival_s"].to_numpy())
    assert np.allclose(sends, [0.0] * 4 + [s4] * 4 + [2 * s4] * 2, rtol=1e-9)
    assert req["completion_s"].max() == pytest.approx(2 * s4 + s2, rel=1e-9)
    assert max_in_flight(req) == n
    assert res.summary["arrival_process"] == "closed loop: 4 clients, no think time, 10 requests in all"
    # the run, and the measurement window, end with the count's last request (a benchmark's duration), not at 1000 s
    assert res.summary["window"]["end_s"] == pytest.approx(2 * s4 + s2, rel=1e-12)
    assert res.summary["window"]["horizon_s"] == 1000
    assert res.summary["throughput"]["requests_per_s"] == pytest.approx(total / (2 * s4 + s2), rel=1e-9)
    assert not [w for w in rs.warnings if "traffic.arrival.requests" in w]  # no warm-up: every request measured


def test_clients_that_join_over_a_ramp_send_their_first_requests_evenly_spread(case):
    """ramp_up_s: client k sends first at k x ramp / N (here before any answer, which takes 5 steps of dt). Joined
    a step apart, they stay apart: no two sends coincide, where clients that start together send in fours. A client
    due at or past the horizon never sends."""
    n, dt = 4, 0.02
    doc = closed_doc(n, max_num_seqs=8, horizon_s=10.0, input_tokens={"kind": "fixed", "value": 10},
                     output_tokens={"kind": "fixed", "value": 5})
    together = run(case(doc, {"overhead_s": dt})).requests["arrival_s"].to_numpy()
    assert len(np.unique(together)) == len(together) / n
    doc["traffic"]["arrival"]["ramp_up_s"] = n * dt
    res = run(case(doc, {"overhead_s": dt}))
    sends = np.sort(res.requests["arrival_s"].to_numpy())
    assert np.allclose(sends[:n], dt * np.arange(n)) and len(np.unique(sends)) == len(sends) > 100
    assert res.summary["arrival_process"] == "closed loop: 4 clients, no think time, joining over 0.08 s"
    doc["traffic"]["arrival"]["ramp_up_s"] = 40.0  # clients 1-3 would join at 10 s or later: only client 0 sends
    sends = np.sort(run(case(doc, {"overhead_s": dt})).requests["arrival_s"].to_numpy())
    assert np.allclose(sends, 5 * dt * np.arange(len(sends)))


def test_a_request_count_behind_a_warm_up_says_what_goes_unmeasured(case):
    doc = closed_doc(4, horizon_s=100, warmup_s=10)
    doc["traffic"]["arrival"]["requests"] = 10
    rs = case(doc, {"overhead_s": 0.02})
    said = [w for w in rs.warnings if "traffic.arrival.requests" in w]
    assert len(said) == 1 and "sim.warmup_s: 0" in said[0], rs.warnings


@pytest.mark.parametrize("n, think_s", [(5, 4.0), (2, 1.0)])
def test_single_server_matches_the_finite_source_queue(case, n, think_s):
    dt, m_tokens = 0.01, 100  # E[S] = 1 s; every request takes >= dt = the send floor, which never binds
    assert dt >= MIN_CLOSED_LOOP_CYCLE_S
    warmup, horizon = 500.0, 30000.0
    rs = case(closed_doc(n, {"kind": "exponential", "mean": think_s}, horizon_s=horizon, warmup_s=warmup,
                         output_tokens={"kind": "geometric", "mean": m_tokens}), {"overhead_s": dt})
    res = run(rs)
    req = res.requests
    assert (req["outcome"] == "completed").all()
    p = 1 / m_tokens
    mean_s = m_tokens * dt
    lam = 1 / think_s
    p0 = takacs_p0(n, lam, mean_s, lambda x: p * math.exp(-x * dt) / (1 - (1 - p) * math.exp(-x * dt)))
    x_theory = (1 - p0) / mean_s
    r_theory = n / x_theory - think_s
    x, x_se = completions_rate(req, warmup, horizon)
    r, r_se = batch_means(req[req["measured"]].sort_values("arrival_s")["e2e_s"].to_numpy())
    assert abs(x - x_theory) < 4 * x_se, (x, x_se, x_theory)
    assert abs(r - r_theory) < 4 * r_se, (r, r_se, r_theory)
    # the exponential-service formula (M/M/1//N) differs by O(1/m) from this service
    x_mm = (1 - mm1n_p0(n, mean_s / think_s)) / mean_s
    assert x == pytest.approx(x_mm, rel=0.03)
    assert max_in_flight(req) <= n


def test_every_request_ends_and_same_seed_same_table(case):
    doc = closed_doc(8, {"kind": "lognormal", "median": 0.5, "sigma": 1.0}, max_num_seqs=4, horizon_s=300,
                     output_tokens={"kind": "geometric", "mean": 30}, max_waiting=2)
    doc["traffic"]["classes"].append({"name": "long", "target": "dep", "weight": 0.5,
                                      "input_tokens": {"kind": "fixed", "value": 3_000_000},
                                      "output_tokens": {"kind": "fixed", "value": 5}})
    rs = case(doc, {"overhead_s": 0.02})
    a, b = run(rs), run(rs)
    req = a.requests
    outcomes = set(req["outcome"])
    assert "rejected_too_long" in outcomes and "rejected_queue_full" in outcomes and "completed" in outcomes
    assert "unfinished" not in outcomes and req["departure_s"].notna().all()
    assert max_in_flight(req) <= 8
    assert req["arrival_s"].max() < 300
    assert req.equals(b.requests)
    assert set(req["class"]) == {"c", "long"}
    share = (req["class"] == "long").mean()
    assert share == pytest.approx(0.5 / 1.5, abs=0.05)
    other = run(rs, seed=7).requests
    assert not other["arrival_s"].equals(req["arrival_s"])


def test_instant_rejections_cannot_loop_in_zero_time(case):
    """Zero think time and requests rejected the instant they arrive: each client still sends at most once per
    MIN_CLOSED_LOOP_CYCLE_S."""
    horizon = 5.0
    too_long = {"kind": "fixed", "value": 3_000_000}
    rs = case(closed_doc(3, horizon_s=horizon, input_tokens=too_long), {"overhead_s": 0.01})
    req = run(rs).requests
    assert (req["outcome"] == "rejected_too_long").all()
    assert len(req) == pytest.approx(3 * horizon / MIN_CLOSED_LOOP_CYCLE_S, abs=3)  # (+1 each: float sums of 0.01)
    instants, per_instant = np.unique(req["arrival_s"].to_numpy(), return_counts=True)
    assert (per_instant == 3).all()  # the three clients, in step
    assert np.diff(instants) == pytest.approx(MIN_CLOSED_LOOP_CYCLE_S, rel=1e-6)


def test_mixed_with_a_timestamped_trace_and_agent_tasks(case, tmp_path):
    """Timestamped trace classes keep their times (open loop) beside the clients; a client waits for a whole task."""
    trace = tmp_path / "b.csv"
    rows = "".join(f"{t},ChatGPT,20,5,25,Conversation log\n" for t in range(0, 100, 2))
    trace.write_text("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n" + rows)
    doc = closed_doc(3, {"kind": "exponential", "mean": 1.0}, max_num_seqs=8, horizon_s=100)
    doc["traffic"]["classes"] += [
        {"name": "replay", "target": "dep", "trace": {"file": str(trace), "format": "burstgpt"}},
        {"name": "task", "target": "dep", "workload": "agent"},
    ]
    llm = {"type": "llm", "model": "m", "input_tokens": {"kind": "fixed", "value": 5},
           "output_tokens": {"kind": "fixed", "value": 5}}
    agent = {"kind": "agent", "name": "agent", "source": "test", "as_of": "2026-11",
             "steps": [{**llm, "name": "plan"}, {**llm, "name": "act"}]}
    m = run(case(doc, {"overhead_s": 0.05}, {"agent": agent}))
    req = m.requests
    replay = req[req["class"] == "replay"]
    assert np.allclose(np.sort(replay["arrival_s"]), np.arange(0, 100, 2))
    assert m.summary["tasks"]["task"]["tasks"] > 0
    closed = req[req["class"] != "replay"]
    # in flight per client: a plain request, or one task (whose two steps run one after the other)
    ends = closed.groupby(closed["task_id"].where(closed["task_id"] >= 0, -1 - closed.index.to_series()))
    spans = ends.agg(arrival_s=("arrival_s", "min"), departure_s=("departure_s", "max"))
    assert max_in_flight(spans) <= 3
    assert (req["outcome"] == "completed").all()


@pytest.mark.parametrize("arrival, field, reason", [
    ({"process": "closed", "concurrency": 0}, "traffic.arrival.concurrency", "greater than or equal to 1"),
    ({"process": "closed", "concurrency": 10**9}, "traffic.arrival.concurrency", "less than or equal to"),
    ({"process": "closed", "concurrency": 2, "think_time": {"kind": "fixed", "value": -1}},
     "traffic.arrival.think_time.value", "greater than or equal to 0"),
    ({"process": "closed", "concurrency": 2, "rate_per_s": 3}, "traffic.arrival.rate_per_s", "unknown field"),
    ({"process": "closed", "concurrency": 50_000}, "traffic.arrival.concurrency", "more than the 5e+07"),
    ({"process": "closed", "concurrency": 2, "requests": 0}, "traffic.arrival.requests", "greater than or equal to 1"),
    ({"process": "closed", "concurrency": 2, "ramp_up_s": -1}, "traffic.arrival.ramp_up_s", "greater than or equal to 0"),
])
def test_bad_closed_arrivals_exit_2_naming_the_field(tmp_path, arrival, field, reason):
    doc = scenario_doc(horizon_s=1000)
    doc["traffic"]["arrival"] = arrival
    path = write_case(tmp_path, doc)
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {field}: ") and reason in lines[0], lines


def test_plan_refuses_a_closed_loop(tmp_path):
    path = write_case(tmp_path, closed_doc(4))
    res = runner.invoke(app, ["plan", str(path), "--target-rate", "2", "--slo", "e2e_p99<3s",
                              "--out", str(tmp_path / "p")])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{path}: traffic.arrival.process: closed" in lines[0], lines
    assert "Traceback" not in res.output


def test_a_sweep_over_the_rate_of_a_closed_loop_names_the_field(tmp_path):
    path = write_case(tmp_path, closed_doc(4))
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"mode": "grid", "parameters": {"traffic.arrival.rate_per_s": [1, 2]}}))
    res = runner.invoke(app, ["sweep", str(path), "--grid", str(grid), "--out", str(tmp_path / "s"), "--quiet"])
    assert res.exit_code == 2, res.output
    assert "traffic.arrival.rate_per_s" in res.output and "Traceback" not in res.output
