"""Which capacity to commit to, month by month, before demand is known: a two-stage stochastic program.

First stage (decided today, the same in every future): n[c, t] units of `unit` accelerators starting in month t+1
on contract c, each contract a way to hold capacity ahead of demand: owned hardware (usable from its delivery, its
purchase paid then, its running costs every month after, its resale value credited at the horizon) or a cloud
reservation (1 or 3 years, every month of the term paid, used or not, also after the horizon). A contract has a
lead time (the first month it can start) and an availability (accelerators that can start in one month).

Second stage (per demand future s, month t, once demand D[s, t] is known): the committed accelerators put to use
(owned ones cost their energy above idle, e_c per accelerator-month), accelerators rented on demand (p_od) and on
spot (p_spot, at most a share of that month's demand), covering the demand:

    min  sum_{c,t} unit n[c,t] PV_c[t]  +  sum_s w_s sum_t v(t) (p_od od[s,t] + p_spot spot[s,t] + sum_c e_c use[c,s,t])
    s.t. sum_{c free} cap_c[t] + sum_{c costed} use[c,s,t] + od[s,t] + spot[s,t] >= D[s,t]
         use[c,s,t] <= cap_c[t],   spot[s,t] <= share D[s,t],   cap_c[t] = unit sum_{tau active at t} n[c,tau]

PV_c[t] is the present value of everything a committed accelerator costs over its life (cash_usd[t] . v); v(m) =
(1 + r)^-m the discount factor of month m's end (cost/decision.py). This is the extensive form of the recourse
model (Birge and Louveaux, Introduction to Stochastic Programming, 2nd ed., 2011, sections 1.1 and 3.1), solved
exactly (integer n) by scipy.optimize.milp (HiGHS branch and bound). Given the commitments the second stage is a
greedy fill, cheapest first (`recourse`), which is how each future's cost is reported.

Units: accelerators and accelerator-months (demand is the accelerators a month's load needs all month); money in
USD. Knows nothing of SimPy or of scenarios: simfactory/plan/growth.py builds the problem from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp


@dataclass(frozen=True)
class Contract:
    """One way to hold capacity ahead of demand (own, reserved_1y, reserved_3y)."""

    name: str
    cash_usd: np.ndarray  # (H, M + 1): USD paid at the end of month m (column m; 0 = today) per accelerator whose
    #                       capacity starts in month t + 1 (row t)
    active_months: int  # months of capacity from its start (cut at the horizon)
    earliest_month: int = 1  # the first month it can start: 1 + its lead time
    max_per_month: float | None = None  # accelerators that can start in one month; None: no stated limit
    use_usd_per_month: float = 0.0  # e_c: what an accelerator-month in use adds (owned: energy above idle)
    credit_usd: np.ndarray | None = None  # (H,): credited at the end of the horizon per accelerator starting in
    #                                       month t + 1 (owned hardware's resale value); None: nothing
    accrual_usd: np.ndarray | None = None  # (H, M + 1): the same cost as it is incurred, for reports (owned
    #                                        hardware: its loss of market value each month); None: cash less credit

    def credits(self, months: int) -> np.ndarray:
        return np.zeros(months) if self.credit_usd is None else np.asarray(self.credit_usd, dtype=float)

    def accrued(self, months: int) -> np.ndarray:
        """(H, M + 1): the cost by the month it is incurred; sums to the cash less the credit, row by row."""
        if self.accrual_usd is not None:
            return np.asarray(self.accrual_usd, dtype=float)
        out = np.array(self.cash_usd, dtype=float)
        out[:, months] -= self.credits(months)
        return out


@dataclass(frozen=True)
class Rental:
    """The second stage's rented capacity, paid per accelerator-month used."""

    on_demand_usd_per_month: float
    spot_usd_per_month: float | None = None  # None: no spot
    spot_max_share: float = 0.0  # spot serves at most this share of a month's demand


@dataclass(frozen=True)
class CommitmentProblem:
    """Everything the optimizer needs, in accelerators, months and USD."""

    demand: np.ndarray  # (S, H) accelerators needed, per demand future and month
    weights: np.ndarray  # (S,) probabilities, summing to 1
    discount: np.ndarray  # (M + 1,) v(m) for m = 0..M (M >= H: reservations may run past the horizon)
    contracts: tuple[Contract, ...]
    rental: Rental
    unit: int = 1  # commitments come in units of this many accelerators (8: an HGX node)

    @property
    def months(self) -> int:
        return int(self.demand.shape[1])

    def start_pv_usd(self) -> np.ndarray:
        """(C, H): present value of committing one accelerator starting in each month, per contract (payments less
        the credit at the horizon)."""
        v_end = self.discount[self.months]
        return np.array([c.cash_usd @ self.discount - c.credits(self.months) * v_end
                         for c in self.contracts]).reshape(len(self.contracts), self.months)

    def spot_allowed(self) -> bool:
        r = self.rental
        return r.spot_usd_per_month is not None and r.spot_max_share > 0.0


@dataclass
class CommitmentPlan:
    starts: np.ndarray  # (C, H) accelerators starting per contract and month
    expected_usd: float  # the objective: expected present value over the demand futures
    status: str  # "optimal", or what stopped the solver early
    mip_gap: float | None = None  # the solver's relative gap to its bound (0: proven optimal)


def activity(p: CommitmentProblem) -> np.ndarray:
    """(C, H, H) 0/1: a[c, t, tau] = 1 when contract c started in month tau + 1 still serves month t + 1."""
    h = p.months
    t = np.arange(h)[:, None]
    tau = np.arange(h)[None, :]
    return np.stack([((tau <= t) & (t < tau + c.active_months)).astype(float) for c in p.contracts]) \
        if p.contracts else np.zeros((0, h, h))


def capacity(p: CommitmentProblem, starts: np.ndarray) -> np.ndarray:
    """(C, H): committed accelerators serving each month, per contract."""
    if not p.contracts:
        return np.zeros((0, p.months))
    return np.einsum("cth,ch->ct", activity(p), starts)


def upper_bounds(p: CommitmentProblem) -> np.ndarray:
    """(C, H): the most units that can start per contract and month: none before its lead time, at most its
    availability, and never more than the peak demand needs."""
    peak_units = float(np.ceil(p.demand.max(initial=0.0) / p.unit - 1e-9))
    ub = np.zeros((len(p.contracts), p.months))
    for i, c in enumerate(p.contracts):
        cap = peak_units if c.max_per_month is None else min(peak_units, np.floor(c.max_per_month / p.unit + 1e-9))
        ub[i, max(0, c.earliest_month - 1):] = cap
    return ub


def _blocks(p: CommitmentProblem) -> tuple[list[int], list[int]]:
    """Contracts whose committed accelerators serve for free once paid (reservations), and those whose use costs
    something (owned: energy above idle), which get a use variable per future and month."""
    free = [i for i, c in enumerate(p.contracts) if c.use_usd_per_month <= 0.0]
    costed = [i for i, c in enumerate(p.contracts) if c.use_usd_per_month > 0.0]
    return free, costed


def milp_matrices(p: CommitmentProblem) -> tuple[np.ndarray, LinearConstraint, Bounds, np.ndarray]:
    """(objective, constraints, bounds, integrality) of the extensive form. Variables, in order: n[c, t] (units);
    then per future s and month t: od, spot (when allowed), use[c] for each costed contract."""
    s_n, h = p.demand.shape
    n_c = len(p.contracts)
    free, costed = _blocks(p)
    spot = p.spot_allowed()
    per = 1 + int(spot) + len(costed)  # recourse variables per (s, t)
    first = n_c * h
    n_vars = first + s_n * h * per
    act = activity(p) * p.unit  # accelerators per unit started
    cost = np.zeros(n_vars)
    cost[:first] = (p.start_pv_usd() * p.unit).ravel()
    v = p.discount[1:h + 1]
    w_v = (p.weights[:, None] * v[None, :]).ravel()  # (S*H,)
    base = first + np.arange(s_n * h) * per
    cost[base] = w_v * p.rental.on_demand_usd_per_month
    if spot:
        cost[base + 1] = w_v * float(p.rental.spot_usd_per_month)  # type: ignore[arg-type]
    for k, i in enumerate(costed):
        cost[base + 1 + int(spot) + k] = w_v * p.contracts[i].use_usd_per_month
    rows = _rows(p, act, free, costed, spot, per, first)
    lo = np.zeros(n_vars)
    hi = np.full(n_vars, np.inf)
    hi[:first] = upper_bounds(p).ravel()
    if spot:
        hi[base + 1] = p.rental.spot_max_share * p.demand.ravel()
    integrality = np.zeros(n_vars)
    integrality[:first] = 1
    return cost, rows, Bounds(lo, hi), integrality


def _first_stage_coo(act: np.ndarray, contracts: list[int], h: int, s_n: int, sign: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, value) of the committed capacity cap_c[t] = sum_tau act[c, t, tau] n[c, tau], repeated for
    every future s (row s * H + t), for the contracts listed."""
    rows, cols, vals = [], [], []
    for i in contracts:
        t, tau = np.nonzero(act[i])
        for s in range(s_n):
            rows.append(s * h + t)
            cols.append(i * h + tau)
            vals.append(sign * act[i][t, tau])
    if not rows:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def _rows(p: CommitmentProblem, act: np.ndarray, free: list[int], costed: list[int], spot: bool, per: int,
          first: int) -> LinearConstraint:
    """Coverage rows (>= demand) for every (s, t), then a use <= capacity row per costed contract and (s, t)."""
    s_n, h = p.demand.shape
    n_vars = first + s_n * h * per
    r = np.arange(s_n * h)
    fr, fc, fv = _first_stage_coo(act, free, h, s_n, 1.0)
    rec_r = np.repeat(r, per)
    rec_c = first + np.arange(s_n * h * per)  # every recourse variable covers one accelerator-month
    cover = sparse.csr_matrix((np.concatenate([fv, np.ones(len(rec_c))]),
                               (np.concatenate([fr, rec_r]), np.concatenate([fc, rec_c]))), shape=(s_n * h, n_vars))
    blocks, lower, upper = [cover], [p.demand.ravel()], [np.full(s_n * h, np.inf)]
    for k, i in enumerate(costed):
        cr, cc, cv = _first_stage_coo(act, [i], h, s_n, -1.0)
        use_c = first + r * per + 1 + int(spot) + k
        blocks.append(sparse.csr_matrix((np.concatenate([cv, np.ones(len(r))]),
                                         (np.concatenate([cr, r]), np.concatenate([cc, use_c]))),
                                        shape=(s_n * h, n_vars)))
        lower.append(np.full(s_n * h, -np.inf))
        upper.append(np.zeros(s_n * h))
    return LinearConstraint(sparse.vstack(blocks, format="csr"), np.concatenate(lower), np.concatenate(upper))


def solve(p: CommitmentProblem, time_limit_s: float = 120.0, mip_rel_gap: float = 1e-7) -> CommitmentPlan:
    """The commitments of least expected cost (integer units), by branch and bound on the extensive form. With no
    contract, or no demand, nothing is committed and the expected cost is renting what the demand needs."""
    n_c, h = len(p.contracts), p.months
    if n_c == 0 or not float(p.demand.max(initial=0.0)) > 0.0:
        starts = np.zeros((n_c, h))
        return CommitmentPlan(starts, expected_cost_usd(p, starts), "optimal", 0.0)
    cost, rows, bounds, integrality = milp_matrices(p)
    res = milp(cost, constraints=rows, bounds=bounds, integrality=integrality,
               options={"time_limit": float(time_limit_s), "mip_rel_gap": mip_rel_gap, "presolve": True})
    if res.x is None:  # renting on demand always covers the demand: only a solver failure gets here
        raise RuntimeError(f"the commitment solver found no plan: {res.message}")
    starts = np.abs(np.round(res.x[:n_c * h])).reshape(n_c, h) * p.unit  # abs: no -0.0 from a tiny negative
    status = "optimal" if res.status == 0 else f"stopped early ({res.message.strip()})"
    gap = getattr(res, "mip_gap", None)
    return CommitmentPlan(starts, expected_cost_usd(p, starts), status, None if gap is None else float(gap))


@dataclass(frozen=True)
class Recourse:
    """The second stage for given commitments, per future and month (S, H) in accelerators."""

    committed: np.ndarray  # committed accelerators serving (the same in every future)
    committed_used: np.ndarray  # of those, in use
    use_by_contract: np.ndarray  # (C, S, H) committed accelerators in use, per contract
    on_demand: np.ndarray
    spot: np.ndarray
    usd: np.ndarray  # what the month's second stage costs (rent + use), undiscounted

    @property
    def stranded(self) -> np.ndarray:
        """Committed accelerators standing idle: paid for, not needed."""
        return self.committed - self.committed_used


def recourse(p: CommitmentProblem, starts: np.ndarray, demand: np.ndarray | None = None) -> Recourse:
    """Given the commitments, each month's demand is served cheapest first: reserved (already paid), then in price
    order owned accelerators (their use cost), spot (up to its share of demand) and on-demand. This greedy fill is
    the second stage's optimum: a covering problem with one row per month and capped sources."""
    d = p.demand if demand is None else np.asarray(demand, dtype=float)
    cap = capacity(p, starts)  # (C, H)
    free, costed = _blocks(p)
    free_cap = cap[free].sum(axis=0) if free else np.zeros(p.months)
    use = np.zeros((len(p.contracts), *d.shape))
    for i in free:  # reservations serve first (in listed order), their use costs nothing more
        left = np.maximum(d - use.sum(axis=0), 0.0)
        use[i] = np.minimum(cap[i][None, :], left)
    left = np.maximum(d - np.minimum(free_cap[None, :], d), 0.0)
    r = p.rental
    sources = [(p.contracts[i].use_usd_per_month, 0, i) for i in costed]
    if p.spot_allowed():
        sources.append((float(r.spot_usd_per_month), 1, -1))  # type: ignore[arg-type]
    sources.append((r.on_demand_usd_per_month, 2, -2))
    spot = np.zeros_like(d)
    od = np.zeros_like(d)
    usd = np.zeros_like(d)
    for price, _rank, who in sorted(sources):
        limit = cap[who][None, :] if who >= 0 else (r.spot_max_share * d if who == -1 else np.full_like(d, np.inf))
        take = np.minimum(left, limit)
        left = left - take
        usd += price * take
        if who >= 0:
            use[who] = take
        elif who == -1:
            spot = take
        else:
            od = take
    committed = cap.sum(axis=0)[None, :] * np.ones_like(d)
    return Recourse(committed, use.sum(axis=0), use, od, spot, usd)


def commitment_cash_usd(p: CommitmentProblem, starts: np.ndarray, credits: bool = True) -> np.ndarray:
    """(M + 1,): what the commitments pay at the end of each month m (0 = today), the same in every future;
    `credits`: less what is credited at the horizon (resale), in month H."""
    out = np.zeros(len(p.discount))
    for c, n in zip(p.contracts, starts):
        out += n @ c.cash_usd
        if credits:
            out[p.months] -= n @ c.credits(p.months)
    return out


def credit_usd(p: CommitmentProblem, starts: np.ndarray) -> float:
    """What the commitments are credited at the end of the horizon (owned hardware's resale value), nominal."""
    return float(sum(n @ c.credits(p.months) for c, n in zip(p.contracts, starts)))


def cash_usd(p: CommitmentProblem, starts: np.ndarray, demand: np.ndarray | None = None,
             credits: bool = True) -> np.ndarray:
    """(S, M + 1): every future's cash flow per month: the commitments' payments plus its second stage (less the
    credit at the horizon when `credits`)."""
    rec = recourse(p, starts, demand)
    out = np.tile(commitment_cash_usd(p, starts, credits), (rec.usd.shape[0], 1))
    out[:, 1:p.months + 1] += rec.usd
    return out


def accrued_usd(p: CommitmentProblem, starts: np.ndarray, demand: np.ndarray | None = None) -> np.ndarray:
    """(S, M + 1): every future's cost by the month it is incurred (owned hardware: its loss of market value
    each month, not its purchase on delivery); each row sums to the cash flows less the credit at the horizon."""
    rec = recourse(p, starts, demand)
    committed = sum((n @ c.accrued(p.months) for c, n in zip(p.contracts, starts)), np.zeros(len(p.discount)))
    out = np.tile(committed, (rec.usd.shape[0], 1))
    out[:, 1:p.months + 1] += rec.usd
    return out


def future_costs_usd(p: CommitmentProblem, starts: np.ndarray, demand: np.ndarray | None = None) -> np.ndarray:
    """(S,): each future's total cost, present value."""
    return cash_usd(p, starts, demand) @ p.discount


def expected_cost_usd(p: CommitmentProblem, starts: np.ndarray) -> float:
    return float(p.weights @ future_costs_usd(p, starts))


def weighted_quantile(x: np.ndarray, weights: np.ndarray, q: float, axis: int = 0) -> np.ndarray:
    """The q-quantile of weighted samples along `axis` (the inverse of the weighted empirical distribution
    function, the smallest x whose cumulative weight reaches q: with equal weights, numpy's 'inverted_cdf')."""
    x = np.moveaxis(np.asarray(x, dtype=float), axis, 0)
    order = np.argsort(x, axis=0, kind="stable")
    xs = np.take_along_axis(x, order, axis=0)
    cw = np.cumsum(np.asarray(weights, dtype=float)[order], axis=0)
    cw /= cw[-1:]
    k = np.argmax(cw >= q - 1e-12, axis=0)
    return np.take_along_axis(xs, k[None, ...], axis=0)[0]
