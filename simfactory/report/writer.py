"""Write a run's outputs: the files of a run folder (built in a temporary folder and swapped in by
simfactory.outputs, which replaces only what simfactory wrote) and the optional trace file."""

from __future__ import annotations

import json
from pathlib import Path

from simfactory.metrics.summary import RunMetrics
from simfactory.outputs import GENERATOR, output_folder, stamp_json, write_text_output
from simfactory.report.finance import write_finance
from simfactory.report.markdown import render
from simfactory.report.plots import write_plots

REQUEST_COLUMNS = [
    "request_id", "class", "deployment", "replica", "outcome", "arrival_s", "first_scheduled_s", "first_token_s",
    "completion_s", "input_tokens", "output_tokens", "generated_tokens", "preemptions", "queue_s", "network_s",
    "front_end_s", "ttft_s", "tpot_s", "e2e_s", "measured", "task_id", "step", "replica_s", "usd", "cached_tokens",
]


def write_trace(m: RunMetrics, path: Path, force: bool = False) -> Path:
    """Chrome / Perfetto trace-event JSON (open it in ui.perfetto.dev), stamped (stamp_json: viewers ignore the
    two keys) so a later run can prove it wrote it."""
    doc = {"otherData": {"generator": GENERATOR}, "traceEvents": m.trace_events, "displayTimeUnit": "ms"}
    return write_text_output(path, stamp_json(doc, indent=None), "--trace", force)


def build_run(m: RunMetrics, folder: Path, plots: bool = True) -> None:
    """Write summary.json, summary.md, requests.csv (+ tasks.csv), timeline CSVs and PNG plots into `folder`."""
    (folder / "summary.json").write_text(json.dumps(m.summary, indent=2, sort_keys=False) + "\n")
    m.requests[REQUEST_COLUMNS].to_csv(folder / "requests.csv", index=False)
    if len(m.tasks):
        m.tasks.to_csv(folder / "tasks.csv", index=False)
    m.replica_timelines.to_csv(folder / "timeline_replicas.csv", index=False)
    m.system_timeline.to_csv(folder / "timeline_system.csv", index=False)
    plot_files = [p.name for p in write_plots(m, folder)] if plots else []
    plot_files += [p.name for p in write_finance(m.summary, folder, plots) if p.suffix == ".png"]
    (folder / "summary.md").write_text(render(m, plot_files))


def write_run(m: RunMetrics, out_dir: Path, plots: bool = True, command: str = "run") -> list[Path]:
    """`build_run` into `out_dir`, replacing it atomically only if simfactory wrote it (see simfactory.outputs)."""
    with output_folder(Path(out_dir), command) as folder:
        return folder.replace(lambda tmp: build_run(m, tmp, plots))
