"""Write a run's outputs to a directory atomically: build in a temp dir beside it, then rename."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from pathlib import Path

from simfactory.errors import InputError
from simfactory.metrics.summary import RunMetrics
from simfactory.report.finance import write_finance
from simfactory.report.markdown import render
from simfactory.report.plots import write_plots

REQUEST_COLUMNS = [
    "request_id", "class", "deployment", "replica", "outcome", "arrival_s", "first_scheduled_s", "first_token_s",
    "completion_s", "input_tokens", "output_tokens", "generated_tokens", "preemptions", "queue_s", "ttft_s",
    "tpot_s", "e2e_s", "measured", "task_id", "step", "replica_s", "usd",
]


# what a run directory may hold (its own outputs, a report built from it, a trace written beside them): a
# directory holding only these is an earlier output and may be replaced whole; anything else is the user's
RUN_FILES = ("summary.json", "summary.md", "requests.csv", "tasks.csv", "timeline_*.csv", "*.png", "finance_*.csv",
             "finance.xlsx", "report.html", "report.md", "*.json")


def _foreign(folder: Path) -> list[str]:
    """Entries of `folder` that are not run outputs."""
    out = []
    for entry in folder.iterdir():
        if entry.name.startswith("."):
            continue  # our own temporaries from an interrupted write
        if entry.is_file() and any(fnmatch.fnmatchcase(entry.name, n) for n in RUN_FILES):
            continue
        out.append(entry.name)
    return out


def check_output_dir(path: Path, flag: str = "--out", kind: str = "run") -> Path:
    """An output directory that may be replaced (kind "run": absent, empty, or holding only earlier outputs) or
    written into (kind "compare": its run folders are checked one by one). A file, the working directory or a
    folder above it, or a run folder with other files in it is refused, never deleted."""
    path = Path(path)
    resolved = path.resolve()
    if resolved.exists() and not resolved.is_dir():
        raise InputError(str(path), flag, "is a file, not a directory; name a directory for the outputs")
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise InputError(str(path), flag, "holds the working directory; name a new or earlier output directory")
    if resolved.is_dir() and kind == "run":  # compare writes its files and run folders into it, replacing nothing else
        foreign = _foreign(resolved)
        if foreign:
            raise InputError(str(path), flag, f"holds files that are not run outputs ({', '.join(sorted(foreign)[:3])}"
                                              f"{', ...' if len(foreign) > 3 else ''}): they would be lost; name a new "
                                              "directory or an earlier output directory")
    return path


def check_output_file(path: Path, flag: str) -> Path:
    """An output file path: not an existing directory."""
    if Path(path).is_dir():
        raise InputError(str(path), flag, "is a directory; name a file")
    return Path(path)


def write_trace(m: RunMetrics, path: Path) -> None:
    """Chrome / Perfetto trace-event JSON (open it in ui.perfetto.dev)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"traceEvents": m.trace_events, "displayTimeUnit": "ms"}))
    os.replace(tmp, path)


def write_run(m: RunMetrics, out_dir: Path, plots: bool = True) -> list[Path]:
    """Write summary.json, summary.md, requests.csv (+ tasks.csv), timelines CSVs and PNG plots."""
    out_dir = check_output_dir(Path(out_dir)).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (tmp / "summary.json").write_text(json.dumps(m.summary, indent=2, sort_keys=False) + "\n")
        m.requests[REQUEST_COLUMNS].to_csv(tmp / "requests.csv", index=False)
        if len(m.tasks):
            m.tasks.to_csv(tmp / "tasks.csv", index=False)
        m.replica_timelines.to_csv(tmp / "timeline_replicas.csv", index=False)
        m.system_timeline.to_csv(tmp / "timeline_system.csv", index=False)
        plot_files = [p.name for p in write_plots(m, tmp)] if plots else []
        plot_files += [p.name for p in write_finance(m.summary, tmp, plots) if p.suffix == ".png"]
        (tmp / "summary.md").write_text(render(m, plot_files))
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
            os.replace(out_dir, old / out_dir.name)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(out_dir.iterdir())
