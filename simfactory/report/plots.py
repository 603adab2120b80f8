"""PNG plots of a run: latency CDFs, utilization and KV use over time, queue depth over time."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from simfactory.report.backend import use_headless_backend

use_headless_backend()
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import ticker  # noqa: E402

from simfactory.metrics.summary import RunMetrics  # noqa: E402


def _finish(fig: Any, path: Path | None, **savefig: Any) -> Any:
    """Save and close (reports), or hand the figure back (notebooks: `result.plot_*()`)."""
    if path is None:
        return fig
    fig.savefig(path, **savefig)
    plt.close(fig)
    return None


def _shade_window(ax: plt.Axes, m: RunMetrics) -> None:
    w = m.summary["window"]
    if w["warmup_s"] > 0:
        ax.axvspan(0, w["warmup_s"], color="0.9", label="warm-up (not measured)")
    if w["end_s"] > w["horizon_s"]:
        ax.axvspan(w["horizon_s"], w["end_s"], color="0.95", label="drain (not measured)")


NARROW_DECADES = 0.1  # data spanning less than this (max / min under 1.26) gets a linear axis: log shows nothing


def _log_x(ax: Any) -> bool:
    """A log x axis labelled in plain numbers (0.05, not 5x10^-2): the decades, and within them as many minor
    ticks as the view leaves room for (all under 0.7 decades, 2, 3 and 5 under 1.2 - so that a view from 0.021 to
    0.125 s labels 0.03 as well as 0.05 and 0.1 -, 2 and 5 under two, none wider; matplotlib's own minor labels
    crowd and overlap). Data narrower than NARROW_DECADES (every request alike, say) keep a linear axis
    around them instead, where a log one collapses or crowds its labels. True when the axis is logarithmic."""
    lo, hi = ax.dataLim.intervalx
    if not (np.isfinite(lo) and np.isfinite(hi) and lo > 0) or np.log10(hi / lo) < NARROW_DECADES:
        if np.isfinite(lo) and np.isfinite(hi) and hi - lo < 1e-9 * max(abs(hi), 1e-300):
            pad = max(abs(lo) * 0.05, 1e-12)  # all alike: a window around the one value
            ax.set_xlim(lo - pad, hi + pad)
        return False
    ax.set_xscale("log")

    def minor(x: float, _: Any) -> str:
        lo, hi = ax.get_xlim()
        span = np.log10(hi / lo) if lo > 0 and hi > lo else 99.0
        mantissa = round(x / 10 ** np.floor(np.log10(x)), 6)
        shown = (2.0, 3.0, 5.0) if span < 1.2 else (2.0, 5.0) if span < 2.0 else ()
        return f"{x:g}" if span < 0.7 or mantissa in shown else ""

    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(ticker.FuncFormatter(minor))
    return True


def latency_cdf(m: RunMetrics, path: Path | None = None) -> Any:
    req = m.requests
    done = req[req["measured"] & (req["outcome"] == "completed")]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, (col, title) in zip(axes, [("ttft_s", "Time to first token"), ("tpot_s", "Time per output token"), ("e2e_s", "End-to-end latency")]):
        for dep, g in done.groupby("deployment"):
            v = np.sort(g[col].dropna().to_numpy())
            if len(v):
                ax.plot(v, np.arange(1, len(v) + 1) / len(v), label=str(dep))
        ax.set_xlabel(f"{title} (s{', log scale' if _log_x(ax) else ''})")
        ax.set_ylabel("fraction of requests")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{m.summary['scenario']}: latency CDF ({len(done)} measured requests)")
    fig.tight_layout()
    return _finish(fig, path, dpi=110)


def utilization(m: RunMetrics, path: Path | None = None) -> Any:
    tl = m.replica_timelines
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    for rep, g in tl.groupby("replica"):
        label = f"{g['deployment'].iloc[0]}#{rep}"
        ax1.plot(g["time_s"], g["busy_frac"], lw=0.8, label=label)
        ax2.plot(g["time_s"], g["kv_used_frac"], lw=0.8, label=label)
    for ax in (ax1, ax2):
        _shade_window(ax, m)
        ax.set_ylim(0, 1.05)
        ax.grid(True, alpha=0.3)
    ax1.set_ylabel("busy fraction")
    ax1.set_title("Replica busy fraction (time spent executing steps)")
    ax2.set_ylabel("KV cache used (fraction of blocks)")
    ax2.set_title("KV-cache occupancy")
    ax2.set_xlabel("simulated time (s)")
    if tl["replica"].nunique() <= 12:
        ax1.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    return _finish(fig, path, dpi=110)


def queue_depth(m: RunMetrics, path: Path | None = None) -> Any:
    stl = m.system_timeline
    fig, ax = plt.subplots(figsize=(12, 4))
    for col in [c for c in stl.columns if c.startswith("queue_depth.")]:
        ax.step(stl["time_s"], stl[col], where="post", lw=0.8, label=f"waiting: {col.split('.', 1)[1]}")
    ax.plot(stl["time_s"], stl["in_system"], lw=0.8, color="0.3", label="in system (waiting + running)")
    _shade_window(ax, m)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("requests")
    ax.set_title("Queue depth and requests in system")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _finish(fig, path, dpi=110)


BREAKDOWN_COLORS = {"network": "#17becf", "front_end": "#e377c2", "cache": "#bcbd22", "queue": "#9e9e9e",
                    "prefill": "#1f77b4", "decode": "#aec7e8", "tool": "#ff7f0e", "retrieval": "#2ca02c",
                    "human": "#d62728", "backoff": "#9467bd", "wait": "#8c564b"}


def task_latency_cdf(m: RunMetrics, path: Path | None = None) -> Any:
    tasks = m.tasks[m.tasks["measured"] & (m.tasks["outcome"] == "completed")]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for cls, g in tasks.groupby("class"):
        v = np.sort(g["e2e_s"].to_numpy())
        ax.plot(v, np.arange(1, len(v) + 1) / len(v), label=f"{cls} ({len(v)} tasks)")
    ax.set_xlabel(f"task end-to-end latency (s{', log scale' if _log_x(ax) else ''})")
    ax.set_ylabel("fraction of completed tasks")
    ax.set_title("Compound (task) latency CDF")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _finish(fig, path, dpi=110)


def task_breakdown(m: RunMetrics, path: Path | None = None) -> Any:
    blocks = m.summary["tasks"]
    classes = list(blocks)
    fig, ax = plt.subplots(figsize=(9, 2.0 + 0.6 * len(classes)))
    left = np.zeros(len(classes))
    for cat, color in BREAKDOWN_COLORS.items():
        vals = np.array([blocks[c]["breakdown_mean_s"][cat] or 0.0 for c in classes])
        if vals.any():
            ax.barh(classes, vals, left=left, color=color, label=cat)
            left += vals
    ax.set_xlabel("mean time on the critical path of completed tasks (s)")
    ax.set_title("Where task latency goes")
    ax.legend(fontsize=8, ncol=8, loc="upper center", bbox_to_anchor=(0.5, -0.35), frameon=False)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path, dpi=110, bbox_inches="tight")


PLOTS = {"latency_cdf.png": latency_cdf, "utilization.png": utilization, "queue_depth.png": queue_depth}
TASK_PLOTS = {"task_latency_cdf.png": task_latency_cdf, "task_breakdown.png": task_breakdown}


def autoscaling(m: RunMetrics, path: Path | None = None) -> Any:
    """Provisioned replicas over time (step) above the TTFT p99 of requests arriving in each bin."""
    stl, req = m.system_timeline, m.requests
    cols = [c for c in stl.columns if c.startswith("replicas.")]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    for c in cols:
        top.step(stl["time_s"], stl[c], where="post", label=c.removeprefix("replicas.") + " (provisioned)")
    top.set_ylabel("replicas")
    top.set_title(f"{m.summary['scenario']}: autoscaling")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    done = req[req["outcome"] == "completed"]
    if len(done):
        bins = np.linspace(0, float(done["arrival_s"].max()) + 1e-9, 60)
        idx = np.digitize(done["arrival_s"], bins)
        p99 = done.groupby(idx)["ttft_s"].quantile(0.99)
        centers = [(bins[i - 1] + bins[i]) / 2 for i in p99.index if 0 < i < len(bins)]
        bottom.plot(centers, [p99[i] for i in p99.index if 0 < i < len(bins)], marker=".")
    bottom.set_yscale("log")
    bottom.set_ylabel("TTFT p99 (s, by arrival time)")
    bottom.set_xlabel("time (s)")
    bottom.grid(alpha=0.3)
    _shade_window(bottom, m)
    fig.tight_layout()
    return _finish(fig, path, dpi=100)


def faults(m: RunMetrics, path: Path | None = None) -> Any:
    """Requests in the system and TTFT p99 over time, with every fault window shaded."""
    stl, req = m.system_timeline, m.requests
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    top.plot(stl["time_s"], stl["in_system"], lw=1)
    top.set_ylabel("requests in the system")
    top.set_title(f"{m.summary['scenario']}: faults (shaded: a replica or pool down)")
    done = req[req["outcome"] == "completed"]
    if len(done):
        bins = np.linspace(0, float(done["arrival_s"].max()) + 1e-9, 80)
        idx = np.digitize(done["arrival_s"], bins)
        p99 = done.groupby(idx)["ttft_s"].quantile(0.99)
        keep = [i for i in p99.index if 0 < i < len(bins)]
        bottom.plot([(bins[i - 1] + bins[i]) / 2 for i in keep], [p99[i] for i in keep], marker=".")
    bottom.set_yscale("log")
    bottom.set_ylabel("TTFT p99 (s, by arrival time)")
    bottom.set_xlabel("time (s)")
    for _, a, b in m.summary["resilience"]["windows"]:
        for ax in (top, bottom):
            ax.axvspan(a, b, color="tab:red", alpha=0.08)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path, dpi=100)


def write_plots(m: RunMetrics, out_dir: Path) -> list[Path]:
    plots = dict(PLOTS)
    if m.summary["tasks"]:
        plots.update(TASK_PLOTS)
    if m.summary.get("autoscaling"):
        plots["autoscaling.png"] = autoscaling
    if m.summary.get("resilience"):
        plots["faults.png"] = faults
    paths = []
    with warnings.catch_warnings(action="ignore"):  # an empty run plots empty axes: matplotlib's notes are noise
        for name, fn in plots.items():
            p = out_dir / name
            fn(m, p)
            paths.append(p)
    return paths
