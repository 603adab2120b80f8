"""Money reads the same everywhere a finance reader looks (terminal, Markdown, HTML, Excel): a currency sign,
thousands separators, sensible decimals, never scientific notation; xlsx money cells stay numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from simfactory.cli import app
from simfactory.paths import SCENARIOS_DIR
from simfactory.report.money import format_number, format_usd, is_money, usd_number_format

runner = CliRunner()
SCIENTIFIC = re.compile(r"\d[eE][+-]?\d")
MONEY_TEXT = re.compile(r"^-?\$\d{1,3}(,\d{3})*(\.\d+)?$")


@pytest.mark.parametrize("x, text", [
    (585426.3, "$585,426"), (395000, "$395,000"), (100.0, "$100"), (99.999, "$100"), (20.746, "$20.75"),
    (1.0, "$1.00"), (0.09839, "$0.09839"), (0.0002749, "$0.0002749"), (3.608e-05, "$0.00003608"), (0.0, "$0.00"),
    (-1234.6, "-$1,235"), (None, "n/a"), (float("nan"), "n/a"), (float("inf"), "n/a"),
])
def test_format_usd(x, text):
    assert format_usd(x) == text


def test_excel_formats_and_other_numbers():
    assert usd_number_format(1234.5) == '"$"#,##0'
    assert usd_number_format(20.75) == '"$"#,##0.00'
    assert usd_number_format(0.0002749) == '"$"#,##0.0000000'
    assert format_number(38450.0) == "38,450" and format_number(3.7e-05) == "0.000037" and format_number(2026) == "2026"
    assert is_money("usd_per_1m_tokens") and is_money("egress_usd") and is_money("TCO over horizon USD")
    assert is_money("USD/hour") and not is_money("tokens/USD") and not is_money("tokens_per_usd")


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> Path:
    """`compare` of the on-prem and cloud TCO scenarios, and `report` of the on-prem run."""
    out = tmp_path_factory.mktemp("money") / "cmp"
    res = runner.invoke(app, ["compare", str(SCENARIOS_DIR / "tco-onprem.yaml"), str(SCENARIOS_DIR / "tco-cloud.yaml"),
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    (out / "terminal.txt").write_text(res.output)
    res = runner.invoke(app, ["report", str(out / "1-tco-onprem")])
    assert res.exit_code == 0, res.output
    return out


def _money_cells(md: str) -> list[str]:
    """Every cell of a Markdown table in a money column, a money row (its label) or with a money unit."""
    cells: list[str] = []
    header: list[str] = []
    for line in md.splitlines():
        if not line.startswith("|"):
            header = []
            continue
        row = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header:
            header = row
            continue
        if set(line) <= set("|-"):
            continue
        unit = row[header.index("unit")] if "unit" in header and len(row) == len(header) else None
        for i, (col, cell) in enumerate(zip(header, row)):
            if i > 0 and (is_money(col) or is_money(row[0]) or (unit is not None and is_money(unit) and col == "value")):
                cells.append(cell)
    return cells


@pytest.mark.parametrize("name", ["compare.md", "1-tco-onprem/summary.md", "1-tco-onprem/report.md"])
def test_markdown_money_cells_are_currency(compared, name):
    md = (compared / name).read_text()
    cells = [c for c in _money_cells(md) if re.fullmatch(r"-?\$?\d[\d.,eE+-]*", c)]  # amounts, not text
    assert len(cells) > 10
    bad = [c for c in cells if not MONEY_TEXT.match(c)]
    assert not bad, bad
    assert not SCIENTIFIC.search(md), SCIENTIFIC.search(md)


def test_terminal_and_html_show_currency(compared):
    text = (compared / "terminal.txt").read_text()
    assert not SCIENTIFIC.search(text)
    assert re.search(r"\$\d{3},\d{3}", text)  # TCO with thousands separators
    for name in ("compare.html", "1-tco-onprem/report.html"):
        html = (compared / name).read_text()
        shown = re.findall(r'<td data-v="[^"]*">([^<]*)</td>', html)  # numeric cells (text cells have class="text")
        assert not [t for t in shown if SCIENTIFIC.search(t)]
        assert re.search(r'<td data-v="[0-9.e+-]+">\$\d{1,3},\d{3}</td>', html)  # sorted by its number


def test_xlsx_money_cells_are_numbers_with_a_currency_format(compared):
    wb = load_workbook(compared / "compare.xlsx")
    ws = wb["comparison"]
    rows = {r[0].value: r[1:] for r in ws.iter_rows(min_row=2)}
    for label in ("TCO over horizon USD", "USD per 1M tokens (in+out)", "USD per request"):
        for cell in rows[label]:
            assert isinstance(cell.value, float) and "$" in cell.number_format, (label, cell.value, cell.number_format)
    assert "$" not in rows["fleet load (demand / provisioned)"][0].number_format
    fin = load_workbook(compared / "1-tco-onprem" / "finance.xlsx")
    header = [c.value for c in fin["tco"][1]]
    tco = fin["tco"].cell(row=2, column=header.index("TCO as configured USD") + 1)
    assert isinstance(tco.value, float) and tco.number_format == '"$"#,##0'
    units = {r[0].value: r for r in fin["unit_economics"].iter_rows(min_row=2)}
    per_m = units["cost per 1M tokens (input + output)"][1]
    assert isinstance(per_m.value, float) and per_m.number_format.startswith('"$"#,##0.0')
    assert "$" not in units["tokens per dollar"][1].number_format


def test_xlsx_numbers_get_readable_formats_and_columns_fit_their_labels(tmp_path):
    """Not General's 0.01623089091619079 in a 13-wide column: numbers keep their value with sensible decimals."""
    import openpyxl
    import pandas as pd

    from simfactory.report.money import finish_sheet

    frame = pd.DataFrame({"metric": ["a long label for a ratio that needs width", "count", "cost USD"],
                          "value": [0.01623089091619079, 6250, 10.76]})
    with pd.ExcelWriter(tmp_path / "x.xlsx", engine="openpyxl") as w:
        frame.to_excel(w, sheet_name="s", index=False)
        finish_sheet(w.sheets["s"], frame)
    ws = openpyxl.load_workbook(tmp_path / "x.xlsx")["s"]
    assert [ws.cell(row=r, column=2).number_format for r in (2, 3)] == ["0.0000", "#,##0"]
    assert ws.cell(row=2, column=2).value == 0.01623089091619079  # still the number
    assert ws.column_dimensions["A"].width >= len("a long label for a ratio that needs width")
