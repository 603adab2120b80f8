"""Money as a finance reader expects it, in every output (terminal, Markdown, HTML, Excel): a currency sign,
thousands separators, sensible decimals and never scientific notation.

- `format_usd(x)`: >= $100 no cents ($585,426), $1-100 two decimals ($20.75), under $1 four significant digits
  ($0.09485, $0.0002749); negative amounts lead with a minus (-$1,234); None, NaN or infinity: "n/a".
- `usd_number_format(x)`: the same decimals as an Excel number format ('"$"#,##0.00'), so an xlsx cell keeps its
  number and shows the same text; `style_money_cells` sets it on the money cells of a sheet pandas wrote.
- `is_money(label)`: a column, row or unit name that holds amounts of money (`*_usd`, `usd_per_*`, "USD/hour",
  "TCO over horizon USD"; not "tokens/USD" or "tokens_per_usd").
- `format_number(x)`: any other number, up to 4 significant digits, thousands separators, no scientific notation.
"""

from __future__ import annotations

import math
import re
from typing import Any

USD_NUMBER_FORMAT = '"$"#,##0.00'  # $1-100; whole dollars: '"$"#,##0'; under $1: as many decimals as 4 digits need
MAX_DECIMALS = 12  # amounts under a trillionth of a dollar show as $0.000000000000

_MONEY = re.compile(r"(?<![a-z])usd(?![a-z])|\$", re.IGNORECASE)
_PER_MONEY = re.compile(r"((?<![a-z])per|/)[\s_]*(usd|dollar|\$)", re.IGNORECASE)  # tokens/USD, tokens per dollar: not money


def is_money(label: Any) -> bool:
    """Whether a column, row or unit name names an amount of money."""
    text = str(label)
    return bool(_MONEY.search(text)) and not _PER_MONEY.search(text)


def _is_bool(x: Any) -> bool:
    return isinstance(x, bool) or getattr(getattr(x, "dtype", None), "kind", "") == "b"  # numpy's too


def _number(x: Any) -> float | None:
    """x as a finite float, or None (None, text, bool, NaN, infinity)."""
    if x is None or isinstance(x, str) or _is_bool(x):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def usd_decimals(x: float) -> int:
    """Decimals an amount is shown with: 0 from $100, 2 from $1, else enough for 4 significant digits."""
    a = abs(x)
    if a >= 100 or round(a, 2) >= 100:
        return 0
    if a >= 1 or a == 0:
        return 2
    d = min(MAX_DECIMALS, 3 - math.floor(math.log10(a)))
    r = round(a, d)
    if r >= 1:
        return 2
    return min(MAX_DECIMALS, 3 - math.floor(math.log10(r))) if r > 0 else d


def format_usd(x: Any) -> str:
    """$585,426 / $20.75 / $0.0002749 / -$1,234; "n/a" where there is no amount."""
    v = _number(x)
    if v is None:
        return "n/a" if not isinstance(x, str) else x
    d = usd_decimals(v)
    text = f"{abs(v):,.{d}f}"
    negative = v < 0 and text.strip("0.,") != ""
    return f"{'-' if negative else ''}${text}"


def usd_number_format(x: Any) -> str:
    """The Excel number format that shows x as `format_usd` does (the cell keeps its number)."""
    v = _number(x)
    d = 2 if v is None else usd_decimals(v)
    return '"$"#,##0' + ("." + "0" * d if d else "")


def format_number(x: Any) -> str:
    """A number that is not money: whole numbers with separators (38,450), else up to 4 significant digits
    (159.7, 0.01648, 0.00002749), never scientific notation; None and NaN: "n/a"."""
    if x is None or isinstance(x, str):
        return "n/a" if x is None else x
    if _is_bool(x):
        return str(bool(x))
    if isinstance(x, int):
        return f"{x:,}" if abs(x) >= 10_000 else str(x)  # a year or a count under 10,000 reads as it is
    v = _number(x)
    if v is None:
        return "n/a" if x != x else str(x)  # NaN: n/a; infinity: inf
    if abs(v) >= 9999.5:
        return f"{v:,.0f}"
    text = f"{v:,.4g}"
    if "e" in text:  # under 1e-4: fixed point with 4 significant digits, trailing zeros dropped
        d = min(MAX_DECIMALS, 3 - math.floor(math.log10(abs(v))))
        text = f"{v:.{d}f}".rstrip("0").rstrip(".")
    return text


def format_cell(x: Any, money: bool) -> str:
    """One table cell: money as `format_usd`, other numbers as `format_number`, text as it is."""
    if money and _number(x) is not None:
        return format_usd(x)
    return format_number(x)


def money_flags(columns: list[Any], unit: Any = None, label: Any = None) -> list[bool]:
    """For one table row: which of its cells hold money, by column name, the row's unit (a "unit" column: then
    its "value" column) or its label (a frame indexed by metric: then every column)."""
    by_unit = unit is not None and is_money(unit)
    by_label = label is not None and is_money(label)
    return [by_label or is_money(c) or (by_unit and str(c) == "value") for c in columns]


def style_money_cells(ws: Any, frame: Any, index: bool = False) -> int:
    """Give the money cells of a sheet that pandas wrote from `frame` (header in row 1; the index in column A
    when `index`) a currency number format; their values stay numbers. Returns how many cells it set."""
    columns = list(frame.columns)
    unit_at = columns.index("unit") if "unit" in columns else None
    offset = 2 if index else 1
    done = 0
    for r, (label, row) in enumerate(zip(frame.index, frame.itertuples(index=False)), start=2):
        flags = money_flags(columns, row[unit_at] if unit_at is not None else None, label if index else None)
        for c, money in enumerate(flags):
            cell = ws.cell(row=r, column=c + offset)
            if money and _number(cell.value) is not None:
                cell.number_format = usd_number_format(cell.value)
                done += 1
    return done


def number_format(x: float) -> str:
    """An Excel format with the decimals format_number would show: whole numbers with thousands separators, others
    with 4 significant digits (never General's 0.01623089091619079)."""
    if float(x).is_integer():
        return "#,##0"
    magnitude = abs(x)
    return "#,##0.0" if magnitude >= 100 else "#,##0.00" if magnitude >= 1 else "0.0000" if magnitude >= 0.001 else "0.00E+00"


def finish_sheet(ws: Any, frame: Any, index: bool = False) -> None:
    """A sheet pandas wrote, made readable: money cells in a currency format, other numbers with sensible decimals
    (values stay numbers), columns as wide as their longest entry (up to 60 characters)."""
    style_money_cells(ws, frame, index)
    for row in ws.iter_rows(min_row=2):
        for cell in row:
            if cell.number_format == "General" and _number(cell.value) is not None and not isinstance(cell.value, bool):
                cell.number_format = number_format(cell.value)
    for col in ws.columns:
        longest = max((len(str(c.value)) for c in col if c.value is not None), default=8)
        ws.column_dimensions[col[0].column_letter].width = min(60, max(10, longest + 2))


def usd_axis(axis: Any) -> None:
    """Tick labels of a matplotlib axis (ax.yaxis, ax.xaxis) as `format_usd` shows money."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _pos: _tick(v)))


def _tick(v: float) -> str:
    """An axis tick: as `format_usd`, trailing zeros of amounts under $1 dropped ($0.08, $0)."""
    text = format_usd(v)
    return text.rstrip("0").rstrip(".") if abs(v) < 1 and "." in text else text
