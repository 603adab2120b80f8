"""Regression results for CI systems: a Markdown table, JUnit XML and a JSON diff."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from simfactory.regress.diff import MetricDiff

FAILING = ("regression", "removed")


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.6g}"


def markdown(diffs: list[MetricDiff]) -> str:
    scenarios = sorted({d.scenario for d in diffs})
    lines = ["# simfactory regress", "", "| scenario | metrics | regressions | improved | result |", "|---|---|---|---|---|"]
    for s in scenarios:
        mine = [d for d in diffs if d.scenario == s]
        bad = sum(d.status in FAILING for d in mine)
        good = sum(d.status == "improved" for d in mine)
        lines.append(f"| {s} | {len(mine)} | {bad} | {good} | {'FAIL' if bad else 'pass'} |")
    moved = [d for d in diffs if d.status != "ok"]
    lines += ["", "Metrics that moved past their tolerance:" if moved else "No metric moved past its tolerance.", ""]
    if moved:
        lines += ["| scenario | metric | baseline | current | change | allowed | rule | status |",
                  "|---|---|---|---|---|---|---|---|"]
        for d in moved:
            change = "" if d.rel_delta is None else f"{_num(d.delta)} ({d.rel_delta:+.2%})"
            lines.append(f"| {d.scenario} | `{d.metric}` | {_num(d.baseline)} | {_num(d.current)} | {change} | "
                         f"{_num(d.allowed)} | {d.rule} ({d.direction}) | **{d.status}** |")
    return "\n".join(lines) + "\n"


def junit_xml(diffs: list[MetricDiff]) -> str:
    """One <testsuite> per scenario, one <testcase> per metric; regressions are <failure>s."""
    root = ET.Element("testsuites", name="simfactory regress", tests=str(len(diffs)),
                      failures=str(sum(d.status in FAILING for d in diffs)))
    for s in sorted({d.scenario for d in diffs}):
        mine = [d for d in diffs if d.scenario == s]
        suite = ET.SubElement(root, "testsuite", name=s, tests=str(len(mine)),
                              failures=str(sum(d.status in FAILING for d in mine)), errors="0", skipped="0")
        for d in mine:
            case = ET.SubElement(suite, "testcase", classname=s, name=d.metric)
            if d.status in FAILING:
                msg = (f"{d.metric}: {d.status}: baseline {_num(d.baseline)}, current {_num(d.current)}, "
                       f"allowed change {_num(d.allowed)} ({d.rule}, {d.direction})")
                ET.SubElement(case, "failure", message=msg, type=d.status).text = msg
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def json_diff(diffs: list[MetricDiff]) -> str:
    return json.dumps({"regression": any(d.status in FAILING for d in diffs),
                       "diffs": [d.as_dict() for d in diffs if d.status != "ok"],
                       "compared": len(diffs)}, indent=1) + "\n"


def write_reports(diffs: list[MetricDiff], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"regress.md": markdown(diffs), "regress.junit.xml": junit_xml(diffs), "regress.json": json_diff(diffs)}
    for name, text in files.items():
        (out_dir / name).write_text(text)
    return [out_dir / n for n in files]
