"""Pools: each one's hardware profile and price, and how many accelerators the deployments, training jobs
and fault models ask of it."""

from __future__ import annotations

from pathlib import Path

from simfactory.config.loader import load_model_file
from simfactory.config.prices import PriceBook
from simfactory.config.profile import HardwareProfile
from simfactory.config.scenario import Scenario
from simfactory.errors import InputError
from simfactory.inputs import MAX_YAML_BYTES, check_input_file
from simfactory.resolve.files import Lookup, find_file, load_profile

FAULT_KINDS_WITH_POOL = ("replica_failures", "outages", "spot_reclamations", "rolling_restarts")


def pool_profiles(scenario: Scenario, lk: Lookup, errors: list[InputError]) -> dict[str, HardwareProfile]:
    """Pool name -> its SKU's hardware profile; a pool whose profile is missing is left out, with its error."""
    profiles: dict[str, HardwareProfile] = {}
    for i, p in enumerate(scenario.pools):
        try:
            profile = load_profile(lk.profile_dirs, p.sku, lk.fname, f"pools[{i}].sku")
        except InputError as e:
            errors.append(e)
            continue
        if p.scale_out_gb_s is not None:  # the pool's own fabric
            spec = profile.spec.model_copy(update={"scale_out_gb_s": p.scale_out_gb_s})
            profile = profile.model_copy(update={"spec": spec})
        profiles[p.name] = profile
    return profiles


def priced_book(scenario: Scenario, profiles: dict[str, HardwareProfile], lk: Lookup,
                errors: list[InputError], warnings: list[str] | None = None) -> PriceBook | None:
    """The price book, with every pool checked against it; None (and its error) when there is none to read.
    Warns (into `warnings`) of a cloud pool priced by default and of region pairs a configured network leaves out."""
    price_book: PriceBook | None = None
    try:
        price_book = load_price_book(lk.profile_dirs, lk.path, scenario.finance.price_book, lk.fname)
        check_pool_prices(scenario, profiles, price_book, lk.fname, errors)
        if warnings is not None:
            warnings += provider_warnings(scenario, profiles, price_book, lk.fname)
    except InputError as e:
        errors.append(e)
    if warnings is not None:
        warnings += network_warnings(scenario, lk.fname)
    return price_book


def default_cloud_price(book: PriceBook, sku: str, usd_per_accel_hour: float) -> str:
    """Whose price a cloud pool that names no provider gets: its profile's, the cheapest on-demand row for the SKU
    in the shipped book (e.g. "runpod on-demand $2.69/GPU-h"); a profile price no row matches is said to be so."""
    row = book.row_priced_at(sku, usd_per_accel_hour)
    if row is None:
        return f"the {sku} profile's on-demand price ${usd_per_accel_hour:.2f}/GPU-h (no price-book row has it)"
    return f"{row.provider} on-demand ${usd_per_accel_hour:.2f}/GPU-h (the {sku} profile's default)"


def provider_warnings(scenario: Scenario, profiles: dict[str, HardwareProfile], book: PriceBook,
                      fname: str) -> list[str]:
    """A cloud pool with neither a provider nor a price of its own silently took its profile's price: say whose,
    and what the price book's providers charge for the SKU."""
    out: list[str] = []
    for i, p in enumerate(scenario.pools):
        if p.location != "cloud" or p.provider is not None or p.cloud_usd_per_accel_hour is not None:
            continue
        usd = profiles[p.name].price.cloud_usd_per_accel_hour if p.name in profiles else None
        if usd is None:
            continue  # no price at all: check_pool_prices reported it
        offers = ", ".join(f"{c.provider} ${c.usd_per_accel_hour:.2f}" for c in book.on_demand_offers(p.sku))
        out.append(f"{fname}: pools[{i}]: pool {p.name!r} names no provider: priced at "
                   f"{default_cloud_price(book, p.sku, usd)}; set provider: to choose"
                   + (f" (on-demand {p.sku} in the price book: {offers})" if offers else ""))
    return out


def network_warnings(scenario: Scenario, fname: str) -> list[str]:
    """Regions cost latency and egress only as `network` configures them. Where a scenario configures some (links
    or defaults) but leaves a pair of caller and pool regions out, requests between them cross for free: say so."""
    net = scenario.network
    if not net.links and net.default_latency_s is None and net.default_usd_per_gb is None:
        return []  # no network model: regions are labels (price lookup), by design, not worth a warning each run
    linked = {frozenset((link.a, link.b)) for link in net.links}
    out: list[str] = []
    callers = sorted({c.region for c in scenario.traffic.classes})
    for pool_region in sorted({p.region for p in scenario.pools}):
        for caller in callers:
            if caller == pool_region or frozenset((caller, pool_region)) in linked:
                continue
            missing = [(what, field) for what, field, v in (("latency", "default_latency_s", net.default_latency_s),
                                                             ("egress", "default_usd_per_gb", net.default_usd_per_gb))
                       if v is None]
            if missing:
                out.append(f"{fname}: network: regions {caller!r} (callers) and {pool_region!r} (pools) have no "
                           f"network.links entry and no network.{' / '.join(f for _, f in missing)}: requests "
                           f"between them pay no {' or '.join(w for w, _ in missing)}")
    return out


def load_price_book(dirs: list[Path], scenario_file: Path | None, override: str | None, fname: str) -> PriceBook:
    """The scenario's own price book (finance.price_book), else prices.yaml beside it, else the shipped one."""
    if override is not None:
        base = scenario_file.resolve().parent if scenario_file is not None else Path.cwd()
        path = base / override
        try:
            path = path.resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte: check_input_file says which
            pass
        try:
            check_input_file(path, "", MAX_YAML_BYTES, "price book")
        except InputError as e:
            raise InputError(fname, "finance.price_book", f"{e.reason}: {e.file}") from None
        return load_model_file(PriceBook, path)
    path = find_file(dirs, "prices")
    if path is None:
        raise InputError(fname, "finance.price_book", "no prices.yaml in " + ", ".join(map(str, dirs)))
    return load_model_file(PriceBook, path)


def check_pool_prices(scenario: Scenario, profiles: dict[str, HardwareProfile], book: PriceBook, fname: str,
                      errors: list[InputError]) -> None:
    """Every pool can be priced: a known provider with a price for its SKU and contract, or a profile price."""
    for i, p in enumerate(scenario.pools):
        if p.name not in profiles:
            continue
        price = profiles[p.name].price
        spec = profiles[p.name].spec
        idle = book.idle_w(p.sku)
        if spec.idle_w is None and idle is not None and idle.idle_w > spec.tdp_w:
            errors.append(InputError(fname, f"pools[{i}].sku", f"the price book's idle power for {p.sku!r} "
                                     f"({idle.idle_w:g} W) exceeds the profile's tdp_w ({spec.tdp_w:g} W)"))
        if p.location == "cloud":
            if p.cloud_usd_per_accel_hour is not None:
                continue
            if p.provider is not None:
                if p.provider not in book.providers:
                    errors.append(InputError(fname, f"pools[{i}].provider",
                                             f"unknown provider {p.provider!r} (price book: {', '.join(book.providers)})"))
                elif book.cloud_price(p.provider, p.sku, p.pricing, p.region) is None:
                    offered = sorted({f"{c.sku}/{c.pricing}" for c in book.cloud if c.provider == p.provider})
                    errors.append(InputError(fname, f"pools[{i}].pricing",
                                             f"price book has no {p.pricing} price for {p.sku!r} at {p.provider} "
                                             f"(it has: {', '.join(offered) or 'none'}); set cloud_usd_per_accel_hour"))
            elif price.cloud_usd_per_accel_hour is None:
                errors.append(InputError(fname, f"pools[{i}].cloud_usd_per_accel_hour",
                                         f"profile {p.sku!r} has no cloud price; set one for this pool or a provider"))
        elif p.server_usd_per_accel is None and price.server_usd_per_accel is None and book.server_price(p.sku) is None:
            errors.append(InputError(fname, f"pools[{i}].server_usd_per_accel",
                                     f"neither the price book nor profile {p.sku!r} has a server price; set one for this pool"))


def check_training(scenario: Scenario, used: dict[str, int], fname: str, errors: list[InputError]) -> None:
    """A dedicated training job takes accelerators beside the deployments (added to `used`); an idle-priority
    one borrows the inference replicas' idle time, so needs at least that many serving."""
    pools = {p.name: p for p in scenario.pools}
    for i, job in enumerate(scenario.training):
        at = f"training[{i}]"
        pool = pools.get(job.pool)
        if pool is None:
            errors.append(InputError(fname, f"{at}.pool", f"unknown pool {job.pool!r} (pools: {sorted(pools)})"))
            continue
        inference = used.get(job.pool, 0)
        if job.priority == "dedicated":
            used[job.pool] = inference + job.accelerators
            if used[job.pool] > pool.count:
                errors.append(InputError(fname, f"{at}.accelerators",
                                         f"pool {job.pool!r} has {pool.count} accelerators; deployments and dedicated "
                                         f"training need {used[job.pool]}"))
        elif job.accelerators > inference:
            errors.append(InputError(fname, f"{at}.accelerators",
                                     f"priority idle runs on the inference replicas' idle time, but pool {job.pool!r} "
                                     f"serves on only {inference} accelerators"))


def check_pool_counts(scenario: Scenario, used: dict[str, int], fname: str, errors: list[InputError]) -> None:
    """No pool is asked for more accelerators than it has (`used`: pool -> accelerators its deployments need)."""
    pools = {p.name: p for p in scenario.pools}
    for name, n in used.items():
        i = [p.name for p in scenario.pools].index(name)
        if n > pools[name].count:
            errors.append(
                InputError(
                    fname,
                    f"pools[{i}].count",
                    f"pool {name!r} has {pools[name].count} accelerators but its deployments need {n} (replicas x tp x pp)",
                )
            )


def check_fault_pools(scenario: Scenario, fname: str, errors: list[InputError]) -> None:
    """Every fault model that strikes a pool names one the scenario declares."""
    pools = {p.name: p for p in scenario.pools}
    for kind in FAULT_KINDS_WITH_POOL:
        for i, f in enumerate(getattr(scenario.faults, kind)):
            if f.pool not in pools:
                errors.append(InputError(fname, f"faults.{kind}[{i}].pool", f"unknown pool {f.pool!r} (pools: {sorted(pools)})"))
