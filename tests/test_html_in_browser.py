"""report.html and compare.html in headless Chromium: the interactive charts render (plotly's SVG is in the DOM),
the page logs nothing to the console (no script error), and screenshots are kept (SIMFACTORY_ARTIFACTS_DIR, which
.ci/run sets, else the test's temp folder). Chromium comes from Debian's package (.ci/run installs it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simfactory.cli import app
from simfactory.paths import SCENARIOS_DIR

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (.ci/run installs Debian's chromium)")
# no network, no first-run, no background services: the machine's closed network refuses them noisily
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--log-level=0", "--virtual-time-budget=8000", "--window-size=1280,2400"]


def _chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    res = CliRunner().invoke(app, ["compare", str(SCENARIOS_DIR / "cache-on.yaml"), str(SCENARIOS_DIR / "cache-off.yaml"),
                                   "--out", str(root / "cmp")])
    assert res.exit_code == 0, res.output
    shots = Path(os.environ.get("SIMFACTORY_ARTIFACTS_DIR") or root / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    return root, shots


@pytest.mark.parametrize("page,charts", [("compare.html", 1), ("1-cache-on/report.html", 3)])
def test_page_renders_interactive_charts_without_console_errors(pages, page, charts):
    root, shots = pages
    path = root / "cmp" / page
    dom = _chromium(path, root / f"profile-{path.stem}-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert len(re.findall(r'class="main-svg"', dom.stdout)) >= charts, f"{page}: plotly charts did not render"
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, f"{page}: console messages {console[:5]}"
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="https?://', path.read_text())  # self-contained, offline
    shot = shots / f"{path.parent.name}-{path.stem}.png" if "/" in page else shots / f"{path.stem}.png"
    res = _chromium(path, root / f"profile-{path.stem}-shot", f"--screenshot={shot}")
    assert res.returncode == 0 and shot.stat().st_size > 20_000, res.stderr[-2000:]


def test_compare_page_links_to_each_runs_report(pages):
    root, _ = pages
    html = (root / "cmp" / "compare.html").read_text()
    for link in re.findall(r'<a href="([^"]+/report\.html)"', html):
        assert (root / "cmp" / link).is_file(), link
    assert len(re.findall(r'<a href="([^"]+/report\.html)"', html)) == 2
    assert "<th>index</th>" not in html
