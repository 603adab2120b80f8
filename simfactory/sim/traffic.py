"""Generate the offered load up front: arrival times, request classes and token lengths (vectorised)."""

from __future__ import annotations

import numpy as np

from simfactory.config.distributions import sample_tokens
from simfactory.config.scenario import Arrivals, ConstantArrivals, GammaArrivals, PoissonArrivals
from simfactory.resolve import ResolvedScenario
from simfactory.sim.requests import RequestTable
from simfactory.sim.streams import RandomStreams


def arrival_times(process: Arrivals, horizon_s: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival instants in [0, horizon_s) of a renewal process with the given rate."""
    rate = process.rate_per_s
    if isinstance(process, ConstantArrivals):
        return np.arange(0.0, horizon_s, 1.0 / rate)
    expected = rate * horizon_s
    chunk = int(expected + 6 * np.sqrt(expected) + 16)
    times: list[np.ndarray] = []
    last = 0.0
    while True:
        if isinstance(process, PoissonArrivals):
            gaps = rng.exponential(1.0 / rate, chunk)
        elif isinstance(process, GammaArrivals):
            shape = 1.0 / process.cv**2
            gaps = rng.gamma(shape, 1.0 / (rate * shape), chunk)
        else:  # pragma: no cover - the schema admits only the kinds above
            raise TypeError(process)
        t = last + np.cumsum(gaps)
        times.append(t[t < horizon_s])
        if t[-1] >= horizon_s:
            break
        last = float(t[-1])
    return np.concatenate(times)


def generate_traffic(rs: ResolvedScenario, streams: RandomStreams) -> RequestTable:
    sc = rs.scenario
    arrivals = arrival_times(sc.traffic.arrival, sc.sim.horizon_s, streams.get("arrivals"))
    n = len(arrivals)
    weights = np.array([c.config.weight for c in rs.classes], dtype=float)
    if len(rs.classes) == 1:
        class_id = np.zeros(n, dtype=np.int32)
    else:
        class_id = streams.get("class_mix").choice(len(rs.classes), size=n, p=weights / weights.sum()).astype(np.int32)
    input_tokens = np.zeros(n, dtype=np.int64)
    output_tokens = np.zeros(n, dtype=np.int64)
    deployment_id = np.zeros(n, dtype=np.int32)
    for c in rs.classes:
        idx = np.flatnonzero(class_id == c.index)
        name = c.config.name
        input_tokens[idx] = sample_tokens(c.input_tokens, streams.get(f"class/{name}/input_tokens"), len(idx))
        output_tokens[idx] = sample_tokens(c.output_tokens, streams.get(f"class/{name}/output_tokens"), len(idx))
        deployment_id[idx] = c.deployment_index
    return RequestTable(arrivals, class_id, deployment_id, input_tokens, output_tokens)
