"""Run a sweep: every point x replication of a SweepSpec, on this process, local worker processes or a Ray
cluster; rows are streamed to sweep.jsonl as they finish (so `resume` skips what is done) and gathered into
results.parquet and results.csv, one row per point and replication.

Each run's seed derives from (base seed, point, replication) alone, so the table is the same whichever
executor runs it and in whatever order runs finish."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from simfactory.config.loader import validate
from simfactory.config.scenario import Scenario, scenario_document
from simfactory.errors import InputError, InputErrors
from simfactory.inputs import (
    MAX_SUMMARY_BYTES,
    MAX_TABLE_BYTES,
    parse_json,
    read_input_bytes,
    read_input_text,
)
from simfactory.fidelity_record import most_optimistic
from simfactory.outputs import OutputFolder, json_with_generator, output_folder, restore_set_aside
from simfactory.plan.grid import SweepSpec, points
from simfactory.plan.overrides import apply_overrides, check_paths
from simfactory.ray_cluster import joined_ray
from simfactory.regress.flatten import flatten
from simfactory.worker_pool import worker_pool

HEADLINE_PREFIXES = (
    "latency_s.", "throughput.", "outcomes.", "service.slo_attainment", "service.goodput_per_s", "cost.usd_per_hour",
    "cost.usd_per_request", "cost.usd_per_1m_output_tokens", "finance.unit_economics.", "finance.tco.tco_usd",
    "finance.tco.upfront_capex_usd", "finance.cost_stack.total_usd", "finance.cost_stack.usd_per_1m_tokens",
)
ROWS_FILE = "sweep.jsonl"
SPEC_FILE = "sweep_spec.json"


@dataclass(frozen=True)
class PointJob:
    scenario_doc: dict[str, Any]
    scenario_file: str
    point: int
    replication: int
    seed: int
    params: dict[str, Any]


def run_seed(base: int, point: int, replication: int) -> int:
    """A run's seed from (base, point, replication) only: independent of executor and order."""
    return int(np.random.SeedSequence(base, spawn_key=(point, replication)).generate_state(1)[0])


HEADLINE_EXCLUDED = ("finance.unit_economics.by_",)  # per-group breakdowns: a column per group and figure


def headline(summary: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in flatten(summary, HEADLINE_PREFIXES).items() if not k.startswith(HEADLINE_EXCLUDED)}


def run_point(job: PointJob) -> dict[str, Any]:
    """Simulate one point once (in whatever process runs it) and return its table row."""
    from simfactory.metrics.summary import compute_metrics
    from simfactory.resolve import resolve
    from simfactory.sim.run import simulate

    row: dict[str, Any] = {"point": job.point, "replication": job.replication, "seed": job.seed,
                           **{f"param.{k}": v for k, v in job.params.items()}}
    try:
        doc = apply_overrides(job.scenario_doc, job.params, job.scenario_file)
        rs = resolve(validate(Scenario, doc, job.scenario_file), job.scenario_file)
    except (InputError, InputErrors) as e:  # a point the scenario cannot take: recorded, not dropped
        return {**row, "error": str(e).splitlines()[0]}
    summary = compute_metrics(simulate(rs, seed=job.seed, keep_logs=0), trace_tasks=0).summary
    worst = most_optimistic(summary)  # a grid over SKUs can cross kinds of forecast: the roofline runs optimistic
    return {**row, "error": "", **headline(summary),
            "forecast.optimism_max": worst["optimism"] if worst is not None else float("nan")}


def plan_jobs(scenario: Scenario, scenario_file: str, spec: SweepSpec, spec_file: str) -> list[PointJob]:
    """Every (point, replication), after checking each point's overrides make a valid scenario."""
    doc = scenario_document(scenario)
    check_paths(doc, list(spec.parameters), spec_file)
    base = scenario.seed if spec.seed is None else spec.seed
    jobs = []
    for i, p in enumerate(points(spec, base)):
        try:
            validate(Scenario, apply_overrides(doc, p, spec_file), scenario_file)
        except (InputError, InputErrors) as e:
            raise InputError(spec_file, f"parameters (point {i}: {p})", str(e).splitlines()[0]) from None
        jobs += [PointJob(doc, scenario_file, i, r, run_seed(base, i, r), p) for r in range(spec.replications)]
    return jobs


def _spec_key(scenario: Scenario, spec: SweepSpec, scenario_file: str = "") -> str:
    """What a resumed sweep must share with the rows on disk: the scenario, the grid, every file the scenario
    reads (workloads, profiles, price book: their hashes) and the simulator's version."""
    from simfactory.version import __version__
    from simfactory.resolve import resolve

    try:
        inputs = json.dumps(sorted(resolve(scenario, scenario_file or None).input_hashes.items()))
    except (InputError, InputErrors):
        inputs = ""  # plan_jobs reports a scenario that does not resolve
    blob = scenario.model_dump_json() + spec.model_dump_json() + inputs + __version__
    return hashlib.sha256(blob.encode()).hexdigest()


def _write_spec(folder: Path, key: str) -> None:
    (folder / SPEC_FILE).write_text(json.dumps(json_with_generator({"key": key})))


def _start(folder: OutputFolder, key: str, resume: bool) -> list[dict[str, Any]]:
    """The rows already done (resume), or none after (re)creating the sweep folder with its spec and an empty row file. A resumed
    folder must be a sweep simfactory wrote for the same inputs."""
    rows_path, spec_path = folder.path / ROWS_FILE, folder.path / SPEC_FILE
    if not resume or not rows_path.is_file():
        def fresh(tmp: Path) -> None:
            (tmp / ROWS_FILE).write_text("")
            _write_spec(tmp, key)

        folder.replace(fresh, streamed=(ROWS_FILE,))  # rows are appended as they finish (OutputFolder.stream_file)
        return []
    try:
        same = parse_json(read_input_text(spec_path, "--resume", MAX_SUMMARY_BYTES, "sweep spec"),
                          str(spec_path)).get("key") == key
    except (ValueError, AttributeError):
        same = False
    if not same:
        raise InputError(str(folder.path), "--resume", "this directory holds a different sweep (the scenario, the "
                                                       "grid, a file they read or the simfactory version changed; a "
                                                       "new sweep run over it without --resume and interrupted leaves "
                                                       "the earlier one as it was): run without --resume, or into a "
                                                       "new folder")
    rows = []  # every line is a whole row: the marker proved the file is as the sweep left it (stream_file)
    lines = read_input_bytes(rows_path, "--resume", MAX_TABLE_BYTES, "sweep rows").splitlines()
    for number, line in enumerate(lines, start=1):
        try:
            rows.append(parse_json(line, str(rows_path), "--resume"))
        except json.JSONDecodeError:
            raise InputError(str(rows_path), f"line {number}", "not a row this sweep wrote: --resume keeps its rows as "
                                                               "they are; run the sweep into a new folder") from None
        _check_row(rows[-1], rows_path, number)
    return rows


def _check_row(row: Any, rows_path: Path, number: int) -> None:
    """A row read back for --resume is an object with a whole point and replication, as the sweep writes it (a
    list, or a row without them, ended the resumed sweep in a TypeError or KeyError traceback)."""
    if not (isinstance(row, dict) and all(isinstance(row.get(k), int) and not isinstance(row.get(k), bool)
                                          and row[k] >= 0 for k in ("point", "replication"))):
        raise InputError(str(rows_path), f"line {number}", "not a row this sweep wrote (an object with a whole "
                                                           "point and replication): --resume reads only its own rows; "
                                                           "run the sweep into a new folder")


def _execute(jobs: list[PointJob], executor: str, workers: int, ray_address: str | None) -> Iterable[dict[str, Any]]:
    if executor == "ray":
        ray = joined_ray(ray_address)
        remote = ray.remote(run_point)
        pending = [remote.remote(j) for j in jobs]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    elif workers > 1:  # forked workers let go of the output's lock (outputs) and end with the sweep (worker_pool)
        with worker_pool(workers) as pool:
            futures = [pool.submit(run_point, j) for j in jobs]
            for f in as_completed(futures):
                yield f.result()
    else:
        for j in jobs:
            yield run_point(j)


def run_sweep(
    scenario: Scenario, scenario_file: str, spec: SweepSpec, spec_file: str, out_dir: Path, *, jobs: int = 1,
    executor: str = "local", ray_address: str | None = None, resume: bool = False,
    on_row: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Run what is not done yet and return the whole table (also written as results.parquet / results.csv). A sweep
    run again (no --resume) over an earlier one is built beside it and swapped in at the end: until then, and if it
    is interrupted, the earlier sweep stays as it was (a first sweep streams its rows into the folder itself, so an
    interrupted one can be resumed)."""
    todo = plan_jobs(scenario, scenario_file, spec, spec_file)
    key = _spec_key(scenario, spec, scenario_file)
    earlier = replaces_earlier(Path(out_dir), resume)
    existing = resume and (Path(out_dir) / ROWS_FILE).is_file()
    with output_folder(Path(out_dir), "sweep", existing=existing) as folder:
        if earlier:
            found: list[pd.DataFrame] = []

            def build(tmp: Path) -> None:
                _write_spec(tmp, key)
                with open(tmp / ROWS_FILE, "ab") as f:  # a folder of ours, not yet in place: appended to plainly
                    found.append(_rows_and_results(_appender(f), [], todo, executor, jobs, ray_address, on_row))
                _write_results(found[0], tmp)

            folder.replace(build)
            return found[0]
        rows = _start(folder, key, resume)
        _check_rows(rows, todo, folder.path / ROWS_FILE)
        with folder.stream_file(ROWS_FILE) as append:
            table = _rows_and_results(append, rows, todo, executor, jobs, ray_address, on_row)
        folder.add(lambda tmp: _write_results(table, tmp))
    return table


def replaces_earlier(out_dir: Path, resume: bool) -> bool:
    """Whether a sweep into out_dir is built beside an earlier sweep there and swapped in at the end (run without
    --resume over its rows), so that an interrupted one leaves the earlier as it was. An earlier sweep that a killed
    swap set aside is put back first and counts."""
    restore_set_aside(out_dir)
    return not resume and (out_dir / ROWS_FILE).is_file()


def _appender(f: Any) -> Callable[[bytes], None]:
    def append(line: bytes) -> None:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())

    return append


def _check_rows(rows: list[dict[str, Any]], todo: list[PointJob], rows_path: Path) -> None:
    """Each row read back (--resume) is a row of this sweep's plan, once: a stray or repeated row would join the
    results."""
    planned = {(j.point, j.replication) for j in todo}
    done: set[tuple[int, int]] = set()
    for r in rows:
        key = (r["point"], r["replication"])
        if key not in planned or key in done:
            raise InputError(str(rows_path), f"point {key[0]} replication {key[1]}",
                             ("repeated" if key in done else "not a point of this sweep's grid")
                             + ": --resume reads only the rows this sweep wrote; run it into a new folder")
        done.add(key)


def _rows_and_results(append: Callable[[bytes], None], rows: list[dict[str, Any]], todo: list[PointJob],
                      executor: str, jobs: int, ray_address: str | None,
                      on_row: Callable[[int, int], None] | None) -> pd.DataFrame:
    """Run the jobs not among `rows`, appending each row (a line of sweep.jsonl) as it finishes; the whole table, rows
    sorted (its columns then come in the same order whichever executor, job count or resume produced them)."""
    done = {(r["point"], r["replication"]) for r in rows}
    todo_left = [j for j in todo if (j.point, j.replication) not in done]
    if on_row:
        on_row(len(rows), len(todo))
    for row in _execute(todo_left, executor, jobs, ray_address):
        append((json.dumps(row) + "\n").encode())
        rows.append(row)
        if on_row:
            on_row(len(rows), len(todo))
    return pd.DataFrame(sorted(rows, key=lambda r: (r["point"], r["replication"])))


def _write_results(table: pd.DataFrame, folder: Path) -> None:
    """results.parquet and results.csv; a write the system refuses (a full disk) names the file it was writing:
    pyarrow's errors carry no file name, so the command's one error line named none."""
    for name, write in (("results.parquet", table.to_parquet), ("results.csv", table.to_csv)):
        try:
            write(folder / name, index=False)
        except OSError as exc:
            if exc.filename is not None:
                raise
            raise OSError(exc.errno, exc.strerror or str(exc), name) from exc


SUMMARY_METRICS = {  # results column -> (header with its unit, scale)
    "latency_s.ttft.p99": ("TTFT p99 ms", 1000.0),
    "latency_s.e2e.p99": ("E2E p99 s", 1.0),
    "throughput.requests_per_s": ("req/s", 1.0),
    "finance.unit_economics.usd_per_1m_tokens": ("$/1M tok", 1.0),
}


def point_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per point: its parameter values (by their last path segment) and the mean over replications of a
    few headline metrics, units in the headers (what `sweep` prints; every column is in results.csv)."""
    params = [c for c in table.columns if c.startswith("param.")]
    short = {c: c.rsplit(".", 1)[-1] for c in params}
    if len(set(short.values())) < len(short):  # two paths end alike: keep two segments
        short = {c: ".".join(c.split(".")[-2:]) for c in params}
    metrics = [m for m in SUMMARY_METRICS if m in table.columns]
    grouped = table.groupby("point", sort=True)
    out = grouped[params].first().rename(columns=short)
    for m in metrics:
        header, scale = SUMMARY_METRICS[m]
        out[header] = grouped[m].mean() * scale
    if "error" in table.columns:
        out["errors"] = grouped["error"].apply(lambda s: int((s.fillna("").astype(str) != "").sum()))
    return out.reset_index()
