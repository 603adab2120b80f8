"""Generate the offered load up front: arrival times, request classes and token lengths (vectorised)."""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from scipy.special import gamma as gamma_fn

from simfactory.config.distributions import sample_joint_tokens, sample_tokens
from simfactory.config.scenario import (
    Arrivals,
    ClosedArrivals,
    ConstantArrivals,
    DiurnalArrivals,
    GammaArrivals,
    MmppArrivals,
    PoissonArrivals,
    ScheduleArrivals,
    WeibullArrivals,
)
from simfactory.resolve import ResolvedClass, ResolvedScenario
from simfactory.sim.requests import RequestTable
from simfactory.sim.streams import RandomStreams
from simfactory.traces.stats import spread_batches


def hour_of_day(process: DiurnalArrivals, t: np.ndarray) -> np.ndarray:
    """Hour of the simulated day (0-24) at each time."""
    return (process.start_hour + 24.0 * np.asarray(t, dtype=float) / process.period_s) % 24.0


def diurnal_multiplier(process: DiurnalArrivals, t: np.ndarray) -> np.ndarray:
    """m(t): the day's shape x weekday x flash events (rate(t) = mean_rate_per_s x m(t))."""
    t = np.asarray(t, dtype=float)
    h = hour_of_day(process, t)
    if process.hourly_multipliers is not None:
        m = np.asarray(process.hourly_multipliers)[np.minimum(h.astype(int), 23)]
    else:
        assert process.peak_to_trough is not None
        a = (process.peak_to_trough - 1.0) / (process.peak_to_trough + 1.0)
        m = 1.0 + a * np.cos(2.0 * np.pi * (h - process.peak_hour) / 24.0)
    if process.weekday_multipliers is not None:
        day = ((process.start_hour / 24.0 + t / process.period_s) // 1).astype(int) % 7
        m = m * np.asarray(process.weekday_multipliers)[day]
    for e in process.events:
        m = np.where((t >= e.start_s) & (t < e.start_s + e.duration_s), m * e.multiplier, m)
    return m


def _thinned(process: DiurnalArrivals, horizon_s: float, rng: np.random.Generator) -> np.ndarray:
    """Lewis-Shedler thinning: Poisson at the peak rate, each arrival kept with probability rate(t) / peak.
    (The peak bounds m(t): overlapping events multiply. resolve bounds peak x horizon, the candidates drawn.)"""
    peak = process.mean_rate_per_s * process.peak_multiplier()
    if peak <= 0:
        return np.zeros(0)
    candidates = arrival_times(PoissonArrivals(rate_per_s=peak), horizon_s, rng)
    keep = rng.random(len(candidates)) * peak < process.mean_rate_per_s * diurnal_multiplier(process, candidates)
    return candidates[keep]


def _mmpp(process: MmppArrivals, horizon_s: float, rng: np.random.Generator) -> np.ndarray:
    """Alternate exponential sojourns between states (next state uniform among the others); Poisson within."""
    n = len(process.states)
    state = int(rng.integers(n))
    t = 0.0
    parts: list[np.ndarray] = []
    while t < horizon_s:
        st = process.states[state]
        end = min(horizon_s, t + rng.exponential(st.mean_sojourn_s))
        if st.rate_per_s > 0:
            k = rng.poisson(st.rate_per_s * (end - t))
            parts.append(np.sort(rng.uniform(t, end, k)))
        t = end
        state = (state + 1 + int(rng.integers(n - 1))) % n
    return np.concatenate(parts) if parts else np.zeros(0)


def mmpp_mean_rate(process: MmppArrivals) -> float:
    """Long-run rate: with uniform jumps the embedded chain is uniform, so time shares are sojourn shares."""
    total = sum(s.mean_sojourn_s for s in process.states)
    return sum(s.rate_per_s * s.mean_sojourn_s for s in process.states) / total


def weibull_shape_for_cv(cv: float) -> float:
    """The Weibull shape k whose gaps have this coefficient of variation (cv^2 = G(1+2/k) / G(1+1/k)^2 - 1,
    decreasing in k; solved on k in [0.05, 500], which spans cv ~ 0.003 to ~10^6)."""
    if abs(cv - 1.0) < 1e-12:
        return 1.0

    def excess(log_k: float) -> float:
        k = math.exp(log_k)
        return 0.5 * (math.lgamma(1 + 2 / k) - 2 * math.lgamma(1 + 1 / k)) - 0.5 * math.log1p(cv * cv)

    return math.exp(brentq(excess, math.log(0.05), math.log(500.0)))


def weibull_unit_gaps(shape: float, rng: np.random.Generator, n: int) -> np.ndarray:
    """n Weibull gaps of the given shape, scaled to mean 1 (the mean of a unit-scale Weibull is G(1 + 1/k))."""
    return rng.weibull(shape, n) / gamma_fn(1.0 + 1.0 / shape)


def unit_gaps(family: str, cv: float, rng: np.random.Generator, n: int) -> np.ndarray:
    """n renewal gaps of mean 1 and the given cv: gamma (shape 1/cv^2) or Weibull (shape from the cv)."""
    if family == "weibull":
        return weibull_unit_gaps(weibull_shape_for_cv(cv), rng, n)
    shape = 1.0 / (cv * cv)
    return rng.gamma(shape, 1.0 / shape, n)


def _schedule(process: ScheduleArrivals, horizon_s: float, rng: np.random.Generator) -> np.ndarray:
    """A unit-rate renewal process in operational time, stretched window by window by each window's rate: the
    k-th window holds its rate x window_s of operational time, and a gap drawn in a window takes its cv."""
    w_s = process.window_s
    rates, cvs = process.rates_per_s, process.cvs()
    n_windows = math.ceil(horizon_s / w_s)
    if not process.repeat:
        n_windows = min(n_windows, len(rates))
    parts: list[np.ndarray] = []
    next_op = None  # operational time of the next arrival, from the window's start
    for w in range(n_windows):
        i = w % len(rates)
        start = w * w_s
        span = rates[i] * (min(w_s, horizon_s - start))
        if span <= 0:
            continue
        if next_op is None:
            next_op = float(unit_gaps(process.gaps, cvs[i], rng, 1)[0])
        while next_op < span:
            k = int((span - next_op) + 6 * math.sqrt(span - next_op) + 16)
            gaps = unit_gaps(process.gaps, cvs[i], rng, k)
            ops = next_op + np.concatenate(([0.0], np.cumsum(gaps[:-1])))
            inside = ops < span
            parts.append(start + ops[inside] / rates[i])
            next_op = float(ops[-1] + gaps[-1]) if inside.all() else float(ops[~inside][0])
        next_op -= span
    return np.concatenate(parts) if parts else np.zeros(0)


def arrival_times(process: Arrivals, horizon_s: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival instants in [0, horizon_s): renewal processes with a constant rate, a diurnal non-homogeneous
    Poisson process, a Markov-modulated Poisson process, or a rate schedule with renewal gaps inside."""
    if isinstance(process, DiurnalArrivals):
        return _thinned(process, horizon_s, rng)
    if isinstance(process, MmppArrivals):
        return _mmpp(process, horizon_s, rng)
    if isinstance(process, ScheduleArrivals):
        return _schedule(process, horizon_s, rng)
    if isinstance(process, ClosedArrivals):
        raise TypeError("a closed loop has no arrival times drawn up front (see sim/clients.py)")
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
        elif isinstance(process, WeibullArrivals):
            gaps = weibull_unit_gaps(process.shape, rng, chunk) / rate
        else:  # pragma: no cover - the schema admits only the kinds above
            raise TypeError(process)
        t = last + np.cumsum(gaps)
        times.append(t[t < horizon_s])
        if t[-1] >= horizon_s:
            break
        last = float(t[-1])
    return np.concatenate(times)


def process_classes(rs: ResolvedScenario) -> list[ResolvedClass]:
    """The classes that traffic.arrival drives: all but those replaying a timestamped trace or with their own
    arrival process."""
    return [c for c in rs.classes if c.follows_arrival_process]


def own_arrival_times(c: ResolvedClass, horizon_s: float, streams: RandomStreams) -> np.ndarray:
    """A class's own arrival process, run rate_scale times faster: the process over rate_scale x the horizon,
    its times divided by rate_scale (the same swings and bursts, compressed in time)."""
    assert c.arrival is not None
    scale = c.config.rate_scale
    return arrival_times(c.arrival, horizon_s * scale, streams.get(f"class/{c.config.name}/arrivals")) / scale


def arrival_schedule(rs: ResolvedScenario, streams: RandomStreams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrival times in [0, horizon), the class of each, and for trace classes the trace row each replays
    (-1 otherwise). Classes replaying a timestamped trace arrive at its (windowed, sped-up, sampled) times;
    the others share the arrival process by weight, and trace classes among them cycle through their rows.
    A closed arrival process has no schedule: its clients send as they go (sim/clients.py)."""
    sc = rs.scenario
    horizon = sc.sim.horizon_s
    parts_t: list[np.ndarray] = []
    parts_c: list[np.ndarray] = []
    parts_r: list[np.ndarray] = []
    others = process_classes(rs)
    timed = [c for c in rs.classes if c not in others]
    if isinstance(sc.traffic.arrival, ClosedArrivals):
        others = []
    for c in [c for c in timed if c.arrival is not None]:
        own = own_arrival_times(c, horizon, streams)
        parts_t.append(own)
        parts_c.append(np.full(len(own), c.index, dtype=np.int32))
        # a trace class without timestamps (lengths only) cycles through its rows, as under traffic.arrival
        parts_r.append(np.arange(len(own)) % len(c.trace.input_tokens) if c.trace is not None
                       else np.full(len(own), -1, dtype=np.int64))
    for c in [c for c in timed if c.arrival is None]:
        assert c.trace is not None and c.trace.arrival_s is not None
        t = c.trace.arrival_s
        if c.config.trace is not None and c.config.trace.spread_batches:
            t = spread_batches(t, streams.get(f"class/{c.config.name}/trace_spread"))
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
        elif isinstance(sc.traffic.arrival, DiurnalArrivals) and any(c.config.weight_by_hour for c in others):
            cls = _hourly_mix(sc.traffic.arrival, others, times, streams.get("class_mix"))
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


def _hourly_mix(process: DiurnalArrivals, others: list[ResolvedClass], times: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """Each arrival's class drawn with the weights of its hour (classes without weight_by_hour keep `weight`)."""
    w = np.array([c.config.weight_by_hour or [c.config.weight] * 24 for c in others], dtype=float)  # classes x 24
    hours = np.minimum(hour_of_day(process, times).astype(int), 23)
    p = w[:, hours].T  # arrivals x classes
    totals = p.sum(axis=1, keepdims=True)
    p = np.where(totals > 0, p / np.where(totals > 0, totals, 1.0), 1.0 / len(others))
    u = rng.random(len(times))[:, None]
    pick = np.minimum((u > np.cumsum(p, axis=1)).sum(axis=1), len(others) - 1)
    return np.array([c.index for c in others], dtype=np.int32)[pick]


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
        elif c.length_correlation is not None:
            assert c.input_tokens is not None and c.output_tokens is not None
            cols["input_tokens"][k], cols["output_tokens"][k] = sample_joint_tokens(
                c.input_tokens, c.output_tokens, c.length_correlation, streams.get(f"class/{name}/input_tokens"),
                streams.get(f"class/{name}/output_tokens"), len(k))
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
