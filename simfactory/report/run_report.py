"""`simfactory report RUN_DIR`: a finished run's numbers for readers who do not run simfactory — one
self-contained report.html (interactive, zoomable charts; sortable tables; plotly.js inlined), the same as report.md, and the finance CSV tables and finance.xlsx workbook,
all rebuilt from summary.json (and the PNG plots the run wrote)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from simfactory.errors import InputError
from simfactory.inputs import (
    MAX_SUMMARY_BYTES,
    is_input_file,
    parse_json,
    path_problem,
    read_input_text,
    shown_name,
)
from simfactory.outputs import (
    GENERATOR_TAG,
    check_output_file,
    check_owned_dir,
    clean_stale_temporaries,
    distinct_outputs,
    foreign_entry,
    output_folder,
    read_marker,
    restore_set_aside,
    write_text_output,
)
from simfactory.report.finance import finance_tables, frame_markdown, write_finance
from simfactory.report.html import HtmlReport
from simfactory.report.interactive import figures
from simfactory.report.markdown import (ACCURACY_HEADER, ACCURACY_METRIC_HEADER, ACCURACY_METRIC_NOTE, ACCURACY_NOTE,
                                        accuracy_metric_rows, accuracy_rows)
from simfactory.report.money import format_usd
from simfactory.report.tenants import fairness_note, tenant_rows

PLOTS = [
    ("latency_cdf.png", "Latency CDFs"), ("utilization.png", "Utilization and KV use over time"),
    ("queue_depth.png", "Queue depth over time"), ("task_latency_cdf.png", "Task latency CDF"),
    ("task_breakdown.png", "Where task time goes"), ("cost_sensitivity.png", "Sensitivity (tornado)"),
    ("break_even.png", "Own vs rent: break-even load"),
]


def read_summary(run_dir: Path, required: tuple[str, ...] = ("scenario", "finance", "cost", "latency_s")) -> dict[str, Any]:
    """A run directory's summary.json, or one clear InputError (missing, unreadable, or lacking a section)."""
    path = Path(run_dir) / "summary.json"
    restore_set_aside(Path(run_dir))  # a run a killed rewrite set aside is read where it was
    try:
        is_dir = stat.S_ISDIR(os.stat(run_dir).st_mode)
    except (OSError, ValueError) as exc:
        raise InputError(shown_name(run_dir), "", path_problem(exc)) from None
    if not is_dir:
        raise InputError(str(run_dir), "", "not a directory (give a directory written by `simfactory run`)")
    if not is_input_file(path):
        raise InputError(str(path), "", "not found: a run directory holds summary.json")
    text = read_input_text(path, "", MAX_SUMMARY_BYTES, "run summary")
    try:
        summary = parse_json(text, str(path))
    except ValueError as exc:
        raise InputError(str(path), "", f"unreadable: {exc}") from None
    if not isinstance(summary, dict):
        raise InputError(str(path), "", "unreadable: expected a JSON object")
    for key in required:
        if key not in summary:
            raise InputError(str(path), key, "missing (written by an older simfactory? run the scenario again)")
    return summary


@contextmanager
def summary_shape(path: Path) -> Iterator[None]:
    """Reading a summary.json's sections for a report: a summary edited (or written by another tool) into a shape
    `simfactory run` does not write is one InputError naming the file and the key, never a traceback."""
    try:
        yield
    except KeyError as exc:
        key = exc.args[0] if exc.args else ""
        raise InputError(str(path), str(key)[:80], "missing, or not where `simfactory run` writes it (an edited or "
                                                   "older summary? run the scenario again)") from None
    except (TypeError, AttributeError, ValueError, IndexError, ZeroDivisionError, OverflowError) as exc:
        raise InputError(str(path), "", f"not the shape `simfactory run` writes ({exc.__class__.__name__}: "
                                        f"{str(exc)[:200]}); run the scenario again") from None


def headline(s: dict[str, Any]) -> pd.DataFrame:
    f = s["finance"]
    ue, tco = f["unit_economics"], f["tco"]
    cur = f["currency"]
    rows = [
        ("cost per successful agent task (fully loaded)", ue.get("usd_per_successful_task"), cur),
        ("cost per 1M tokens (input + output)", ue.get("usd_per_1m_tokens"), cur),
        ("cost per request", ue.get("usd_per_request"), cur),
        ("fleet cost per hour", ue.get("fleet_usd_per_hour"), f"{cur}/hour"),
        (f"TCO over {tco['horizon_years']:g} years", tco.get("tco_usd"), cur),
        (f"same service priced the other way (own <-> rent what the load needs), {tco['horizon_years']:g} years",
         tco.get("alternative_tco_usd"), cur),
        ("upfront capex", tco.get("upfront_capex_usd"), cur),
        ("fleet busy fraction (not billed)", ue.get("fleet_utilization"), "fraction"),
        ("SLO attainment", s.get("service", {}).get("slo_attainment"), "fraction"),
        ("TTFT p99", s["latency_s"]["ttft"].get("p99"), "s"),
        ("E2E p99", s["latency_s"]["e2e"].get("p99"), "s"),
    ]
    return pd.DataFrame([r for r in rows if r[1] is not None], columns=["metric", "value", "unit"])


def accuracy_frame(s: dict[str, Any]) -> pd.DataFrame:
    """The run's Forecast accuracy table (summary.md's, report.md's and report.html's)."""
    return pd.DataFrame(accuracy_rows(s["deployments"]), columns=ACCURACY_HEADER)


def accuracy_metric_frame(s: dict[str, Any]) -> pd.DataFrame | None:
    """The same kinds per metric (summary.md's second Forecast accuracy table); None where no deployment has them."""
    rows = accuracy_metric_rows(s["deployments"])
    return pd.DataFrame(rows, columns=ACCURACY_METRIC_HEADER) if rows else None


def lead_line(s: dict[str, Any]) -> str:
    ue, tco = s["finance"]["unit_economics"], s["finance"]["tco"]
    usd = format_usd  # the price book's currency (finance.currency) is USD
    unit = (f"{usd(ue['usd_per_successful_task'])} per successful task" if ue.get("usd_per_successful_task")
            else f"{usd(ue['usd_per_1m_tokens'])} per 1M tokens" if ue.get("usd_per_1m_tokens") else "no completed work")
    return (f"{s['scenario']}: {unit}; fleet {usd(ue['fleet_usd_per_hour'])}/hour; TCO {usd(tco['tco_usd'])} "
            f"over {tco['horizon_years']:g} years.")


def build_report(run_dir: Path, out: Path | None = None, force: bool = False) -> list[Path]:
    """Write report.html, report.md, finance_*.csv and finance.xlsx into the run folder (which simfactory must
    have written: only its own files are added or replaced). With `out`, the HTML goes there instead; the other
    files are added to the run folder only when simfactory wrote it."""
    run_dir = Path(run_dir)
    s = read_summary(run_dir)
    if run_dir.is_dir() and not run_dir.is_symlink():
        clean_stale_temporaries(run_dir, inside=True)  # a killed earlier report's temporary in it is ours, not foreign
    owned = read_marker(run_dir) is not None and foreign_entry(run_dir) is None and not run_dir.is_symlink()
    if out is not None:  # checked before anything is written
        if Path(out).suffix.lower() not in (".html", ".htm"):
            raise InputError(str(out), "--out", "the report is one HTML file: name it *.html (the run's own files "
                                                "are never overwritten)")
        distinct_outputs({"--out": out}, {"RUN_DIR": run_dir})  # report RUN_DIR writes into it; --out elsewhere
        check_output_file(out, "--out", force)
    elif not owned:
        check_owned_dir(run_dir, "RUN_DIR")  # raises, naming why; --out writes the HTML elsewhere
    written: list[Path] = []
    summary_path = run_dir / "summary.json"
    with summary_shape(summary_path):  # before anything is written: a summary in another shape writes nothing
        page = _page(s, run_dir)
        finance_tables(s)
    if owned:
        with output_folder(run_dir, "report", "RUN_DIR", existing=True) as folder, summary_shape(summary_path):
            written = folder.add(lambda tmp: _companions(s, tmp, run_dir))
    if out is not None:
        html_path = write_text_output(Path(out), page.render(), "--out", force)
    else:
        with output_folder(run_dir, "report", "RUN_DIR", existing=True) as folder:
            html_path = folder.add(lambda tmp: page.write(tmp / "report.html"))[0]
    return [html_path, *written]


def write_report_html(folder: Path) -> Path:
    """report.html of a run folder being built (compare writes one per run, to link to from compare.html)."""
    s = read_summary(folder)
    with summary_shape(folder / "summary.json"):
        page = _page(s, folder)
    return page.write(folder / "report.html")


def _companions(s: dict[str, Any], folder: Path, run_dir: Path) -> None:
    """report.md and the finance tables, workbook and charts."""
    write_finance(s, folder, plots=True)
    head = headline(s)
    md = [f"<!-- {GENERATOR_TAG} -->", f"# simfactory report: {s['scenario']}", "", lead_line(s), "", "## Headline", "",
          *frame_markdown(head), "", "## Cost and finance", ""]
    for t in finance_tables(s):
        md += [f"### {t.title}", "", *frame_markdown(t.frame), "", t.note, ""]
    if s.get("deployments"):
        md += ["## Forecast accuracy", "", ACCURACY_NOTE, "", *frame_markdown(accuracy_frame(s)), ""]
        if (by_metric := accuracy_metric_frame(s)) is not None:
            md += [ACCURACY_METRIC_NOTE, "", *frame_markdown(by_metric), ""]
    md += ["## Plots", ""] + [f"![{title}]({name})" for name, title in PLOTS
                              if (run_dir / name).exists() or (folder / name).exists()] + [""]
    (folder / "report.md").write_text("\n".join(md))


def _page(s: dict[str, Any], run_dir: Path) -> HtmlReport:
    page = HtmlReport(f"simfactory report: {s['scenario']}")
    page.paragraph(lead_line(s), "lead")
    if s.get("description"):
        page.paragraph(s["description"])
    page.heading("Headline")
    page.table(headline(s))
    page.heading("Cost and finance")
    for t in finance_tables(s):
        page.table(t.frame, t.title, t.note)
    page.heading("Interactive charts")
    for title, fig in figures(run_dir, s):
        page.figure(fig, title)
    page.heading("Plots")
    for name, title in PLOTS:
        if (run_dir / name).exists():
            page.heading(title, 3)
            page.image(run_dir / name, title)
    page.heading("Latency percentiles (s)")
    lat = pd.DataFrame({k: v for k, v in s["latency_s"].items()}).T
    page.table(lat, index=True)
    if s.get("deployments"):
        page.heading("Forecast accuracy")
        page.table(accuracy_frame(s), note=ACCURACY_NOTE)
        if (by_metric := accuracy_metric_frame(s)) is not None:
            page.table(by_metric, note=ACCURACY_METRIC_NOTE)
    if s.get("tenants"):
        header, rows = tenant_rows(s["tenants"])
        page.heading(f"Tenants (admission policy {s['tenants']['policy']})")
        page.table(pd.DataFrame(rows, columns=header), note=fairness_note(s["tenants"]))
    prov = s.get("provenance", {})
    page.heading("Provenance")
    page.table(pd.DataFrame([(k, json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in prov.items()],
                            columns=["field", "value"]))
    return page
