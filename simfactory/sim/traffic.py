"""Generate the offered load up front: arrival times, request classes and token lengths (vectorised)."""

from __future__ import annotations

import numpy as np

from simfactory.config.distributions import sample_tokens
from simfactory.config.scenario import Arrivals, ConstantArrivals, GammaArrivals, PoissonArrivals
from simfactory.resolve import ResolvedClass, ResolvedScenario
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


def arrival_schedule(rs: ResolvedScenario, streams: RandomStreams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrival times in [0, horizon), the class of each, and for trace classes the trace row each replays
    (-1 otherwise). Classes replaying a timestamped trace arrive at its (windowed, sped-up, sampled) times;
    the others share the arrival process by weight, and trace classes among them cycle through their rows."""
    sc = rs.scenario
    horizon = sc.sim.horizon_s
    parts_t: list[np.ndarray] = []
    parts_c: list[np.ndarray] = []
    parts_r: list[np.ndarray] = []
    timed = [c for c in rs.classes if c.trace is not None and c.trace.arrival_s is not None]
    others = [c for c in rs.classes if c not in timed]
    for c in timed:
        assert c.trace is not None and c.trace.arrival_s is not None
        t = c.trace.arrival_s
        keep = t < horizon
        if c.trace.sample < 1.0:
            keep &= streams.get(f"class/{c.config.name}/trace_sample").random(len(t)) < c.trace.sample
        rows = np.flatnonzero(keep)
        parts_t.append(t[rows])
        parts_c.append(np.full(len(rows), c.index, dtype=np.int32))
        parts_r.append(rows)
    if others:
        assert sc.traffic.arrival is not None  # checked by resolve
        times = arrival_times(sc.traffic.arrival, horizon, streams.get("arrivals"))
        if len(others) == 1:
            cls = np.full(len(times), others[0].index, dtype=np.int32)
        else:
            w = np.array([c.config.weight for c in others], dtype=float)
            pick = streams.get("class_mix").choice(len(others), size=len(times), p=w / w.sum())
            cls = np.array([c.index for c in others], dtype=np.int32)[pick]
        rows = np.full(len(times), -1, dtype=np.int64)
        for c in others:
            if c.trace is not None:
                mine = np.flatnonzero(cls == c.index)
                rows[mine] = np.arange(len(mine)) % len(c.trace.input_tokens)
        parts_t.append(times)
        parts_c.append(cls)
        parts_r.append(rows)
    times = np.concatenate(parts_t) if parts_t else np.zeros(0)
    class_id = np.concatenate(parts_c) if parts_c else np.zeros(0, dtype=np.int32)
    row = np.concatenate(parts_r) if parts_r else np.zeros(0, dtype=np.int64)
    order = np.argsort(times, kind="stable")
    return times[order], class_id[order], row[order]


def add_plain_requests(
    rs: ResolvedScenario, streams: RandomStreams, times: np.ndarray, class_id: np.ndarray, table: RequestTable,
    trace_row: np.ndarray | None = None,
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
    hashed: list[tuple[np.ndarray, np.ndarray, ResolvedClass]] = []  # (positions, trace rows, class)
    for c in rs.classes:
        if c.agent is not None:
            continue
        k = np.flatnonzero(sub_class == c.index)
        cfg = c.config
        name = cfg.name
        if c.trace is not None:
            assert trace_row is not None
            rows = trace_row[idx][k]
            cols["input_tokens"][k] = c.trace.input_tokens[rows]
            cols["output_tokens"][k] = c.trace.output_tokens[rows]
            if c.trace.hash_ids is not None:
                hashed.append((k, rows, c))
        else:
            assert c.input_tokens is not None and c.output_tokens is not None
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
    for k, rows, c in hashed:  # the prompt's block hashes drive the replica prefix cache
        assert c.trace is not None and c.trace.hash_ids is not None
        for pos, row in zip(k.tolist(), rows.tolist()):
            table.block_hashes[first + pos] = (c.trace.hash_block_tokens, c.trace.hash_ids[row])
    return rid
