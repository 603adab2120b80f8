"""Interactive (plotly) figures of a run for the HTML report: latency CDFs, utilization / KV / queue timelines,
the task latency breakdown, replicas over time. Built from the run directory's CSV files only."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from simfactory.errors import InputError
from simfactory.inputs import MAX_TABLE_BYTES, is_input_file, read_input_bytes

MAX_POINTS = 2000  # per CDF curve: evenly spaced quantiles keep the file small and the shape exact enough


def _cdf(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    v = np.sort(values.dropna().to_numpy(dtype=float))
    if len(v) > MAX_POINTS:
        q = np.linspace(0, 1, MAX_POINTS)
        return np.quantile(v, q), q
    return v, np.arange(1, len(v) + 1) / len(v)


def latency_cdfs(req: pd.DataFrame) -> go.Figure:
    done = req[(req["outcome"] == "completed") & req["measured"]]
    fig = make_subplots(rows=1, cols=3, subplot_titles=("TTFT", "TPOT", "E2E"))
    for col, (name, _) in enumerate([("ttft_s", ""), ("tpot_s", ""), ("e2e_s", "")], start=1):
        for dep, g in done.groupby("deployment"):
            x, y = _cdf(g[name])
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"{dep} {name}", legendgroup=str(dep)), row=1, col=col)
        fig.update_xaxes(type="log", title_text="seconds (log)", row=1, col=col)
    fig.update_yaxes(title_text="fraction of requests", row=1, col=1)
    fig.update_layout(height=420, title="Latency CDFs (measured, completed requests)")
    return fig


def timelines(rtl: pd.DataFrame, stl: pd.DataFrame) -> go.Figure:
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True,
                        subplot_titles=("busy fraction (mean over replicas)", "KV use (mean over replicas)", "queue depth"))
    for dep, g in rtl.groupby("deployment"):
        m = g.groupby("time_s")[["busy_frac", "kv_used_frac"]].mean()
        fig.add_trace(go.Scatter(x=m.index, y=m["busy_frac"], name=f"{dep} busy"), row=1, col=1)
        fig.add_trace(go.Scatter(x=m.index, y=m["kv_used_frac"], name=f"{dep} KV"), row=2, col=1)
    for c in [c for c in stl.columns if c.startswith("queue_depth.")]:
        fig.add_trace(go.Scatter(x=stl["time_s"], y=stl[c], name=c), row=3, col=1)
    for c in [c for c in stl.columns if c.startswith("replicas.")]:
        fig.add_trace(go.Scatter(x=stl["time_s"], y=stl[c], name=c, line_shape="hv"), row=3, col=1)
    fig.update_xaxes(title_text="time (s)", row=3, col=1)
    fig.update_layout(height=700, title="Over time")
    return fig


def task_breakdown(tasks: pd.DataFrame, categories: list[str]) -> go.Figure:
    done = tasks[(tasks["outcome"] == "completed") & tasks["measured"]]
    means = done.groupby("class")[categories].mean()
    fig = go.Figure([go.Bar(name=c, x=[str(i) for i in means.index], y=means[c]) for c in categories])
    fig.update_layout(barmode="stack", height=420, title="Where task time goes (mean s on the critical path)",
                      yaxis_title="seconds")
    return fig


def _table(path: Path) -> pd.DataFrame:
    """A run folder's CSV, read as a bounded regular file (never a pipe or device); a broken one is one line."""
    try:
        return pd.read_csv(io.BytesIO(read_input_bytes(path, "", MAX_TABLE_BYTES, "run table")))
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(str(path), "", f"unreadable: {exc}") from None


REQUEST_COLUMNS = ["outcome", "measured", "deployment", "ttft_s", "tpot_s", "e2e_s"]
REPLICA_COLUMNS = ["deployment", "time_s", "busy_frac", "kv_used_frac"]
SYSTEM_COLUMNS = ["time_s"]
TASK_COLUMNS = ["outcome", "measured", "class"]


def _columns(frame: pd.DataFrame, path: Path, needed: list[str]) -> pd.DataFrame:
    """The table when it has the columns a figure reads, else one InputError naming the first one missing."""
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InputError(str(path), missing[0], "missing column (the run tables `simfactory run` writes have it; "
                                                "run the scenario again)")
    return frame


def _figure(path: Path, build: Any, *args: Any) -> Any:
    """build(*args), a table in a shape the figure cannot plot (text where numbers go, ...) being one InputError
    naming the table, never a traceback."""
    try:
        return build(*args)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        raise InputError(str(path), "", f"cannot be plotted ({exc.__class__.__name__}: {str(exc)[:200]}); "
                                        "run the scenario again") from None


def figures(run_dir: Path, summary: dict[str, Any]) -> list[tuple[str, Any]]:
    """(title, figure) for what the run directory holds."""
    run_dir = Path(run_dir)
    out: list[tuple[str, Any]] = []
    req_path = run_dir / "requests.csv"
    if is_input_file(req_path):
        req = _columns(_table(req_path), req_path, REQUEST_COLUMNS)
        out.append(("Latency CDFs (zoom: drag; reset: double-click)", _figure(req_path, latency_cdfs, req)))
    rtl, stl = run_dir / "timeline_replicas.csv", run_dir / "timeline_system.csv"
    if is_input_file(rtl) and is_input_file(stl):
        replicas = _columns(_table(rtl), rtl, REPLICA_COLUMNS)
        system = _columns(_table(stl), stl, SYSTEM_COLUMNS)
        out.append(("Utilization, KV use and queues over time", _figure(rtl, timelines, replicas, system)))
    tasks_path = run_dir / "tasks.csv"
    if is_input_file(tasks_path):
        tasks = _table(tasks_path)
        first = next(iter((summary.get("tasks") or {}).values()), {})
        cats = [c for c in first.get("breakdown_mean_s", {}) if c in tasks.columns]
        if cats:
            tasks = _columns(tasks, tasks_path, TASK_COLUMNS)
            out.append(("Task latency breakdown", _figure(tasks_path, task_breakdown, tasks, cats)))
    return out
