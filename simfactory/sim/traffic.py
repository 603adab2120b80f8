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


def arrival_schedule(rs: ResolvedScenario, streams: RandomStreams) -> tuple[np.ndarray, np.ndarray]:
    """Arrival times in [0, horizon) and the class of each arrival (a request or an agent task)."""
    sc = rs.scenario
    times = arrival_times(sc.traffic.arrival, sc.sim.horizon_s, streams.get("arrivals"))
    n = len(times)
    weights = np.array([c.config.weight for c in rs.classes], dtype=float)
    if len(rs.classes) == 1:
        class_id = np.zeros(n, dtype=np.int32)
    else:
        class_id = streams.get("class_mix").choice(len(rs.classes), size=n, p=weights / weights.sum()).astype(np.int32)
    return times, class_id


def add_plain_requests(
    rs: ResolvedScenario, streams: RandomStreams, times: np.ndarray, class_id: np.ndarray, table: RequestTable
) -> np.ndarray:
    """Add the arrivals of plain-request classes to the table (lengths, sessions and difficulty drawn per
    class, vectorised). Returns, per arrival, its request id (-1 for agent-task arrivals)."""
    plain = np.array([c.agent is None for c in rs.classes], dtype=bool)
    is_plain = plain[class_id] if len(class_id) else np.zeros(0, dtype=bool)
    idx = np.flatnonzero(is_plain)
    n = len(idx)
    cols = {
        "input_tokens": np.zeros(n, dtype=np.int64),
        "output_tokens": np.zeros(n, dtype=np.int64),
        "deployment_id": np.full(n, -1, dtype=np.int32),
        "priority": np.zeros(n, dtype=np.int8),
        "service_class": np.full(n, -1, dtype=np.int16),
        "tenant": np.full(n, -1, dtype=np.int16),
        "session": np.full(n, -1, dtype=np.int64),
        "difficulty": np.zeros(n, dtype=np.float32),
        "prefix_key": np.full(n, -1, dtype=np.int64),
        "prefix_tokens": np.zeros(n, dtype=np.int64),
    }
    sub_class = class_id[idx]
    for c in rs.classes:
        if c.agent is not None:
            continue
        assert c.input_tokens is not None and c.output_tokens is not None
        k = np.flatnonzero(sub_class == c.index)
        cfg = c.config
        name = cfg.name
        cols["input_tokens"][k] = sample_tokens(c.input_tokens, streams.get(f"class/{name}/input_tokens"), len(k))
        cols["output_tokens"][k] = sample_tokens(c.output_tokens, streams.get(f"class/{name}/output_tokens"), len(k))
        cols["deployment_id"][k] = c.deployment_index
        cols["priority"][k] = c.priority
        cols["service_class"][k] = c.service_class
        cols["tenant"][k] = c.tenant
        if cfg.sessions is not None:
            # session ids are unique across classes: class index in the high bits
            local = streams.get(f"class/{name}/sessions").integers(cfg.sessions, size=len(k))
            cols["session"][k] = (c.index << 40) + local
        if cfg.shared_prefix_tokens:
            variant = streams.get(f"class/{name}/prefix_variant").integers(cfg.prefix_variants, size=len(k))
            cols["prefix_key"][k] = (c.index << 20) + variant
            cols["prefix_tokens"][k] = cfg.shared_prefix_tokens
            cols["input_tokens"][k] += cfg.shared_prefix_tokens
        if cfg.difficulty is not None:
            d = cfg.difficulty.sample(streams.get(f"class/{name}/difficulty"), len(k))
            cols["difficulty"][k] = np.clip(d, 0.0, 1.0)
    first = len(table)
    dep = cols.pop("deployment_id")
    table.add_many(times[idx], sub_class, dep, cols.pop("input_tokens"), cols.pop("output_tokens"), **cols)
    rid = np.full(len(times), -1, dtype=np.int64)
    rid[idx] = np.arange(first, first + n)
    return rid
