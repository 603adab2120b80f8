"""Joint planning of several deployments (simfactory/plan/joint.py) against queueing theory.

The hand-solvable fleet: two deployments behind a weighted route (Bernoulli thinning: each is offered Poisson
arrivals), each replica serving one sequence at a time with geometric output lengths (service ~ exponential,
tests/test_queueing_theory.py), one shared queue per deployment (balancer pull): each deployment is an M/M/c
queue, and the fleet's mean queueing delay is the traffic-weighted mean of two Erlang C delays. Erlang C is
computed here from its closed form, independently of simfactory.plan.bounds."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest
import yaml
from conftest import TEST_SKU, profile_doc, scenario_doc, write_case
from typer.testing import CliRunner

from simfactory.cli import app
from simfactory.plan.joint import FleetSearch, JointPlanResult, plan_fleet
from simfactory.plan.search import Evaluation, PlanSpace
from simfactory.plan.shares import offered_load
from simfactory.plan.slo import parse_slo
from simfactory.resolve import load_and_resolve, load_scenario

runner = CliRunner()

LAM = 4.0  # requests/s arriving; the route sends 2/3 to `a` and 1/3 to `b`
SHARE = {"a": 2 / 3, "b": 1 / 3}
MU = {"a": 1.0, "b": 0.5}  # geometric(20) steps of 0.05 s (a) and of 0.1 s (b, its own accelerator)
USD = {"a": 2.0, "b": 6.0}  # per replica-hour: the two accelerators' cloud prices below
TARGET_S = 0.78  # fleet mean queueing delay: (4, 4) gives 0.38 s; every cheaper fleet over 1.6 s


def erlang_c_wait_s(c: int, lam: float, mu: float) -> float:
    """M/M/c mean wait: C(c, a) / (c mu - lam), C from the closed form (Erlang 1917)."""
    a = lam / mu
    if a >= c:
        return math.inf
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top) / (c * mu - lam)


def fleet_wait_s(fleet: dict[str, int]) -> float:
    return sum(SHARE[d] * erlang_c_wait_s(n, LAM * SHARE[d], MU[d]) for d, n in fleet.items())


def fleet_usd(fleet: dict[str, int]) -> float:
    return sum(USD[d] * n for d, n in fleet.items())


def two_tier_case(root, replicas=(4, 4), horizon_s=3000.0):
    doc = scenario_doc(replicas=replicas[0], rate=LAM, output_tokens={"kind": "geometric", "mean": 20},
                       horizon_s=horizon_s, warmup_s=100, balancer="pull")
    a = {**doc["deployments"][0], "name": "a"}
    doc["deployments"] = [a, {**a, "name": "b", "pool": "big", "replicas": replicas[1]}]
    doc["pools"] = [{"name": "pool", "sku": TEST_SKU, "count": replicas[0], "location": "cloud"},
                    {"name": "big", "sku": "test-gpu-big", "count": replicas[1], "location": "cloud"}]
    doc["routing"]["routes"] = [{"name": "split", "policy": "weighted", "weights": {"a": 2, "b": 1}}]
    doc["traffic"]["classes"][0]["target"] = "split"
    path = write_case(root, doc, step_time={"overhead_s": 0.05})
    big = profile_doc({"overhead_s": 0.1})
    big["sku"] = "test-gpu-big"
    big["price"]["cloud_usd_per_accel_hour"] = USD["b"]
    (root / "hardware_profiles" / "test-gpu-big.yaml").write_text(yaml.safe_dump(big))
    return path


@pytest.fixture(scope="module")
def joint(tmp_path_factory):
    path = two_tier_case(tmp_path_factory.mktemp("joint"))
    result = plan_fleet(load_scenario(path), str(path), LAM, parse_slo(f"queue_mean<{TARGET_S}s"),
                        PlanSpace(max_replicas=16), replications=3, max_rate=False)
    return path, result


def test_the_joint_plan_is_the_erlang_c_minimum_of_each_tier(joint):
    _, r = joint
    assert isinstance(r, JointPlanResult) and r.deployments == ["a", "b"]
    # each tier's own Erlang C minimum for the target, and the cheapest fleet meeting it on the mixture
    per_tier = {d: next(c for c in range(1, 50) if erlang_c_wait_s(c, LAM * SHARE[d], MU[d]) <= TARGET_S) for d in SHARE}
    fleets = [dict(zip(SHARE, x)) for x in itertools.product(range(1, 17), repeat=2)]
    cheapest = min((f for f in fleets if fleet_wait_s(f) <= TARGET_S), key=fleet_usd)
    assert per_tier == cheapest == {"a": 4, "b": 4}
    assert r.chosen is not None and r.chosen.fleet == cheapest and r.chosen.min_replicas == 8
    assert r.chosen.best.usd_per_hour == pytest.approx(fleet_usd(cheapest))  # 2 x 4 + 6 x 4
    starts = {s.deployment: s for s in r.chosen.starts}
    for d in SHARE:  # the analytic starts: offered load from the route's weights, c > lambda / mu, Erlang C
        assert starts[d].attempts_per_request == pytest.approx(SHARE[d])
        assert starts[d].rate_per_s == pytest.approx(LAM * SHARE[d])
        assert starts[d].lower_bound == math.floor(LAM * SHARE[d] / MU[d]) + 1 == 3
        assert starts[d].start == per_tier[d]
    simulated = {tuple(e.fleet.values()): e for e in r.evaluations}
    assert simulated[(4, 4)].met and not simulated[(3, 4)].met and not simulated[(4, 3)].met  # checked, not assumed
    assert len(simulated) == len(r.evaluations) == r.sizing_points  # each fleet simulated once, every one recorded
    for x, e in simulated.items():  # the simulation agrees with theory at every fleet it tried
        assert e.met == (fleet_wait_s(dict(zip(SHARE, x))) <= TARGET_S), (x, e.slo)


def test_the_joint_plan_is_never_dearer_than_sizing_each_tier_alone(joint):
    """`--deployment a` sizes a with b as the scenario has it (6), then b with a at that answer: same targets."""
    path, r = joint
    doc = yaml.safe_load(path.read_text())
    doc["deployments"][1]["replicas"] = doc["pools"][1]["count"] = 6
    doc["sim"]["horizon_s"] = 1000.0  # wide margins (0.38 s at the answer, > 1.6 s below it): 4,000 requests tell
    path = path.with_name("alone.yaml")
    path.write_text(yaml.safe_dump(doc))
    alone = {}
    for d in ("a", "b"):
        sc = load_scenario(path)
        one = plan_fleet(sc, str(path), LAM, parse_slo(f"queue_mean<{TARGET_S}s"), PlanSpace(max_replicas=16),
                         replications=2, max_rate=False, deployment=d)
        assert not isinstance(one, JointPlanResult) and one.chosen is not None
        alone[d] = one.chosen.min_replicas
        k = 0 if d == "a" else 1
        doc["deployments"][k]["replicas"] = doc["pools"][k]["count"] = alone[d]
        path.write_text(yaml.safe_dump(doc))
    assert r.chosen.best.usd_per_hour <= fleet_usd(alone) + 1e-9
    assert fleet_usd(alone) >= fleet_usd({"a": 4, "b": 4})  # theory: nothing cheaper meets the target


@pytest.mark.parametrize("args, space, message", [
    (["--target-rate", "0"], None, "error: --target-rate: must be a rate > 0 per second, got 0"),
    ([], "deployments: [a, nope]\n", "error: {space}: deployments[1]: unknown deployment 'nope' (deployments: a, b)"),
    (["--deployment", "nope"], None, "error: --deployment: unknown deployment 'nope' (deployments: a, b)"),
    (["--deployment", "a"], "deployments: [a, b]\n", "error: --deployment: {space} already names the deployment(s)"),
    ([], "deployment: a\ndeployments: [a, b]\n", "give deployment (size one) or deployments (size several jointly)"),
    ([], "candidates:\n  - {name: x, overrides: {deployments.b.replicas: 3}}\n",
     "error: {space}: candidates[x].deployments.b.replicas: plan sets the replica count of the deployment it sizes"),
])
def test_bad_joint_input_exits_2_with_one_message(tmp_path, args, space, message):
    path = two_tier_case(tmp_path, horizon_s=200)
    argv = ["plan", str(path), "--target-rate", "4", "--slo", "queue_mean<1s", "-R", "2", "--out", str(tmp_path / "p")]
    if space is not None:
        (tmp_path / "space.yaml").write_text(space)
        argv += ["--space", str(tmp_path / "space.yaml")]
    res = runner.invoke(app, argv + args)
    assert res.exit_code == 2, res.output
    assert message.format(space=tmp_path / "space.yaml") in res.output, res.output
    assert "replicas at" not in res.output and "Traceback" not in res.output  # refused before any simulation
    assert not (tmp_path / "p").exists()


def test_the_same_seed_gives_the_same_joint_plan(tmp_path):
    """Without a mean-queueing target the analytic start is the stability bound (3, 3), which misses: the search
    grows from there. Twice, on the same seed: the same fleets simulated, the same answer, the same report."""
    path = two_tier_case(tmp_path, replicas=(1, 1), horizon_s=600)
    docs = []
    for k in range(2):
        res = runner.invoke(app, ["plan", str(path), "--target-rate", "4", "--slo", "e2e_mean<2.1s,e2e_p90<6s",
                                  "-R", "2", "--no-max-rate", "--out", str(tmp_path / f"p{k}")])
        assert res.exit_code == 0, res.output
        assert "Cheapest joint fleet meeting e2e_mean<2.1s, e2e_p90<6s (95% CI) at 4/s: as-is with a " in res.output
        assert "points simulated" in res.output
        doc = json.loads((tmp_path / f"p{k}" / "plan.json").read_text())
        assert doc["wall_s"] > 0 and doc["simulated_points"] == len(doc["candidates"][0]["simulated_fleets"])
        doc.pop("wall_s")
        docs.append(doc)
    assert docs[0] == docs[1]
    assert docs[0]["joint"] and docs[0]["deployments"] == ["a", "b"] and docs[0]["pareto"]
    fleets = docs[0]["candidates"][0]["simulated_fleets"]
    assert fleets[0] == {"a": 3, "b": 3}  # the analytic start (c > lambda / mu), not the scenario's 1 + 1
    assert docs[0]["chosen_replicas"] > 6 and len(fleets) > 2  # it grew
    for f in ("plan.md", "plan.csv", "plan_points.csv", "pareto.png"):
        assert (tmp_path / "p0" / f).exists()


def _oracle(lams, mus, prices, target_s):
    """A 'simulation' that is the closed form: the mixture of Erlang C waits, judged without noise."""
    lam = sum(lams)
    waits = [[erlang_c_wait_s(c, li, mu) if c else math.inf for c in range(100)] for li, mu in zip(lams, mus)]

    def simulate(x):
        wait = sum(li / lam * w[c] for c, li, w in zip(x, lams, waits))
        met = wait <= target_s
        return Evaluation("c", sum(x), lam, met, {"queue_mean": {"mean": wait, "ci95": 0.0, "met": met}},
                          sum(c * p for c, p in zip(x, prices)), None, None)
    return simulate


def test_the_fleet_search_finds_the_cheapest_fleet_of_two_from_any_start():
    """Grow and trim against the closed form on random two-deployment fleets: from the stability bounds and
    from one replica each, the cheapest fleet meeting the target is found, and no fleet at or below one that
    missed is ever simulated."""
    rng = random.Random(7)
    for _ in range(60):
        lams, mus = [rng.uniform(0.5, 8) for _ in range(2)], [rng.choice([1.0, 0.5, 0.25]) for _ in range(2)]
        prices, target_s = [rng.choice([1.0, 2.0, 3.0, 6.0]) for _ in range(2)], rng.uniform(0.05, 1.0)
        simulate = _oracle(lams, mus, prices, target_s)
        ok = [x for x in itertools.product(range(1, 60), repeat=2) if simulate(x).met]
        best_usd = min(simulate(x).usd_per_hour for x in ok)
        for start in ((1, 1), tuple(math.floor(li / m) + 1 for li, m in zip(lams, mus))):
            order = []
            search = FleetSearch(lambda x: order.append(x) or simulate(x), parse_slo(f"queue_mean<{target_s}s"),
                                 (1, 1), (80, 80), 200)
            search.run(start)
            assert search.best is not None and simulate(search.best).usd_per_hour == best_usd, (lams, mus, start)
            assert len(order) == len(set(order)) <= 40
            for k, x in enumerate(order):
                assert not any(not simulate(z).met and x[0] <= z[0] and x[1] <= z[1] for z in order[:k])


def test_a_search_out_of_budget_says_so():
    simulate = _oracle([6.0, 2.0], [1.0, 0.5], [2.0, 6.0], 0.1)
    search = FleetSearch(simulate, parse_slo("queue_mean<0.1s"), (1, 1), (80, 80), 3)
    search.run((1, 1))
    assert len(search.points) == 3 and search.stopped == "stopped at the budget of 3 simulated fleets"


def test_tier_shares_follow_capability_and_escalation(tmp_path):
    """routing-tiered.yaml: uniform difficulty, small tier capable up to 0.6 (fail_p 0.1, 0.7 beyond): cheapest
    capable starts 60% on small, 40% on large, and 10% of small's escalate; a cascade starts everything on small
    and escalates 0.6 x 0.1 + 0.4 x 0.7 of it."""
    from simfactory.paths import SCENARIOS_DIR

    rs = load_and_resolve(SCENARIOS_DIR / "routing-tiered.yaml")
    loads = offered_load(rs).loads
    assert loads[0].attempts == pytest.approx(0.6, abs=1e-9) and loads[1].attempts == pytest.approx(0.46, abs=1e-9)
    doc = yaml.safe_load((SCENARIOS_DIR / "routing-tiered.yaml").read_text())
    doc["routing"]["routes"][0]["policy"] = "cascade"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    loads = offered_load(load_and_resolve(tmp_path / "s.yaml")).loads
    assert loads[0].attempts == pytest.approx(1.0) and loads[1].attempts == pytest.approx(0.6 * 0.1 + 0.4 * 0.7)
