"""RPS-only vs composite autoscaling on a day whose request mix shifts: the figures behind the README's
"Autoscaling on requests per second" section.

    python benchmarks/autoscale_mix.py                  # the three shipped scenarios, per period of the day
    python benchmarks/autoscale_mix.py --seeds 11 12 13 # the same over several seeds (mean of each figure)
    python benchmarks/autoscale_mix.py --capacity       # one static replica at the day's and the night's mix
    python benchmarks/autoscale_mix.py --rps-targets 6 8 10 12 16 20 24   # the RPS target sweep
    python benchmarks/autoscale_mix.py --flash 9 1.5 15  # the documents' flash moved: start hour, hours, multiplier

The shipped files (scenarios/autoscale-composite.yaml, autoscale-rps.yaml, autoscale-rps-conservative.yaml) share
one traffic day; the periods below are hours of that simulated day (one hour = the day's period / 24). `--capacity`
finds the request rate at which one replica stops holding the TTFT SLO for 99% of requests, at the day's average
mix and at the night's: the RPS targets in the files are 75% of those knees. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simfactory.config.scenario import DiurnalArrivals, Scenario
from simfactory.metrics.summary import compute_metrics
from simfactory.resolve import load_scenario, resolve
from simfactory.sim.run import simulate

ROOT = Path(__file__).resolve().parent.parent
FILES = ["autoscale-composite.yaml", "autoscale-rps.yaml", "autoscale-rps-conservative.yaml"]
PERIODS_H = {"night 0-6 (documents)": (0, 6), "day 6-13 (chat)": (6, 13), "13-15 (flash)": (13, 15),
             "day 15-20 (chat)": (15, 20), "evening 20-24": (20, 24)}
NIGHT_H = (0, 6)
ATTAINMENT_AT_KNEE = 0.99  # the share of requests within the TTFT SLO that `compare` asks of a run


@dataclass
class DayRun:
    name: str
    replica_hours: float
    usd_per_hour: float
    attainment: float
    ttft_p99_s: float
    periods: dict[str, tuple[float, float, float]]  # period -> (mean replicas, attainment, TTFT p99 s)


def hour_s(sc: Scenario) -> float:
    """Seconds of one simulated hour: the day's period (of the first diurnal class process) / 24."""
    for c in sc.traffic.classes:
        if isinstance(c.arrival, DiurnalArrivals):
            return c.arrival.period_s / 24.0
    raise ValueError(f"{sc.name}: no class has a diurnal arrival process")


def run_day(path: Path, seed: int | None = None, autoscaling: dict | None = None,
            flash: tuple[float, float, float] | None = None) -> DayRun:
    """The day under the file's autoscaler (or `autoscaling`), with its flash events (or one `flash`: start hour,
    hours, multiplier, on every class whose day has events)."""
    sc = load_scenario(path)
    if autoscaling is not None or flash is not None:
        doc = sc.model_dump(mode="json", exclude_unset=True)
        if autoscaling is not None:
            doc["deployments"][0]["autoscaling"] = autoscaling
        if flash is not None:
            h = hour_s(sc)
            for c in doc["traffic"]["classes"]:
                if c.get("arrival", {}).get("events"):
                    c["arrival"]["events"] = [{"start_s": flash[0] * h, "duration_s": flash[1] * h,
                                               "multiplier": flash[2]}]
        sc = Scenario.model_validate(doc)
    result = simulate(resolve(sc, path), seed=seed)
    m = compute_metrics(result)
    (dep, log), = result.autoscale.items()
    lr = m.logical[m.logical["measured"]]
    h = hour_s(sc)
    periods = {}
    for label, (a, b) in PERIODS_H.items():
        g = lr[(lr["arrival_s"] >= a * h) & (lr["arrival_s"] < b * h)]
        periods[label] = (log.provisioned_replica_s(a * h, b * h) / ((b - a) * h), float(g["slo_met"].mean()),
                          float(np.nanpercentile(g["ttft_s"], 99)))
    s = m.summary
    return DayRun(sc.name, s["autoscaling"][dep]["provisioned_replica_hours"], s["cost"]["usd_per_hour"],
                  s["service"]["slo_attainment"], s["latency_s"]["ttft"]["p99"], periods)


def mean_runs(runs: list[DayRun]) -> DayRun:
    return DayRun(runs[0].name, *(float(np.mean([getattr(r, f) for r in runs]))
                                  for f in ("replica_hours", "usd_per_hour", "attainment", "ttft_p99_s")),
                  {p: tuple(float(np.mean([r.periods[p][i] for r in runs])) for i in range(3))  # type: ignore[misc]
                   for p in PERIODS_H})


def print_day(runs: list[DayRun]) -> None:
    print("| scenario | replica-hours | USD/hour | SLO attainment | TTFT p99 (s) |")
    print("|---|---|---|---|---|")
    for r in runs:
        print(f"| {r.name} | {r.replica_hours:.3f} | ${r.usd_per_hour:.2f} | {r.attainment:.1%} | {r.ttft_p99_s:.2f} |")
    print("\nper period: mean replicas / SLO attainment / TTFT p99 (s)\n")
    print("| scenario | " + " | ".join(PERIODS_H) + " |")
    print("|---|" + "---|" * len(PERIODS_H))
    for r in runs:
        cells = [f"{n:.2f} / {a:.1%} / {p:.2f}" for n, a, p in r.periods.values()]
        print(f"| {r.name} | " + " | ".join(cells) + " |")


def mix_shares(path: Path) -> dict[str, float]:
    """Each class's share of the day's arrivals and of the night's (hours 0-6), from one run of the day."""
    sc = load_scenario(path)
    m = compute_metrics(simulate(resolve(sc, path)))
    req = m.requests
    h = hour_s(sc)
    night = req[(req["arrival_s"] >= NIGHT_H[0] * h) & (req["arrival_s"] < NIGHT_H[1] * h)]
    return {"day": req["class"].value_counts(normalize=True).to_dict(),  # type: ignore[dict-item]
            "night": night["class"].value_counts(normalize=True).to_dict()}


def one_replica(path: Path, weights: dict[str, float], rate_per_s: float, horizon_s: float = 200.0) -> pd.Series:
    """One static replica of the file's deployment under Poisson arrivals at this mix: its logical requests."""
    doc = load_scenario(path).model_dump(mode="json", exclude_unset=True)
    dep = doc["deployments"][0]
    dep.pop("autoscaling")
    dep["replicas"] = 1
    doc["pools"][0]["count"] = 1
    doc["traffic"]["arrival"] = {"process": "poisson", "rate_per_s": rate_per_s}
    for c in doc["traffic"]["classes"]:
        c.pop("arrival")
        c["weight"] = max(weights.get(c["name"], 0.0), 1e-9)
    doc["sim"] = {"horizon_s": horizon_s, "warmup_s": 30.0}
    m = compute_metrics(simulate(resolve(Scenario.model_validate(doc), path)))
    lr = m.logical[m.logical["measured"]]
    return pd.Series({"attainment": float(lr["slo_met"].mean()), "ttft_p99_s": float(np.nanpercentile(lr["ttft_s"], 99)),
                      "kv_used_mean": m.summary["replicas"][0]["kv_used_frac_mean"]})


def capacity(path: Path, rates: list[float]) -> None:
    shares = mix_shares(path)
    for label, w in shares.items():
        print(f"\n{label} mix: " + ", ".join(f"{k} {v:.1%}" for k, v in sorted(w.items())))
        print("| req/s | SLO attainment | TTFT p99 (s) | KV used (mean) |")
        print("|---|---|---|---|")
        knee = 0.0
        for r in rates:
            s = one_replica(path, w, r)
            print(f"| {r:g} | {s['attainment']:.1%} | {s['ttft_p99_s']:.2f} | {s['kv_used_mean']:.2f} |")
            if s["attainment"] >= ATTAINMENT_AT_KNEE:
                knee = max(knee, r)
        print(f"knee (highest rate tried with >= {ATTAINMENT_AT_KNEE:.0%} within the SLO): {knee:g} req/s per replica")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="*", default=None, help="seeds to average (default: each file's own)")
    ap.add_argument("--capacity", action="store_true", help="one static replica at the day's and the night's mix")
    ap.add_argument("--rates", type=float, nargs="*", default=[8, 10, 11, 12, 20, 25, 26, 27, 28],
                    help="--capacity: request rates to try")
    ap.add_argument("--rps-targets", type=float, nargs="*", default=None, help="sweep the RPS target")
    ap.add_argument("--flash", type=float, nargs=3, default=None, metavar=("START_H", "HOURS", "MULTIPLIER"),
                    help="replace the documents' flash (hours of the simulated day)")
    args = ap.parse_args()
    scenarios = ROOT / "scenarios"
    if args.capacity:
        capacity(scenarios / FILES[0], args.rates)
        return
    seeds = args.seeds or [None]
    if args.rps_targets:
        base = load_scenario(scenarios / FILES[1]).deployments[0].autoscaling
        assert base is not None
        runs = []
        for t in args.rps_targets:
            auto = base.model_dump(mode="json", exclude_unset=True) | {"target": t}
            r = mean_runs([run_day(scenarios / FILES[1], s, auto, args.flash) for s in seeds])
            r.name = f"rps target {t:g}"
            runs.append(r)
        runs.append(mean_runs([run_day(scenarios / FILES[0], s, flash=args.flash) for s in seeds]))
        print_day(runs)
        return
    print_day([mean_runs([run_day(scenarios / f, s, flash=args.flash) for s in seeds]) for f in FILES])


if __name__ == "__main__":
    main()
