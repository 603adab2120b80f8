"""One self-contained HTML file: tables (sortable by clicking a header) and images embedded as data URIs,
so it opens offline in any browser and can be mailed as a single attachment."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import pandas as pd

from simfactory.inputs import MAX_SUMMARY_BYTES, read_input_bytes
from simfactory.outputs import GENERATOR, stamp_text
from simfactory.report.money import format_cell, money_flags

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}h3{font-size:1.05rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right;vertical-align:top}
th{background:#f4f4f4;cursor:pointer;user-select:none}th.sorted-asc::after{content:" \\25B2"}th.sorted-desc::after{content:" \\25BC"}
td.text{text-align:left}p.note{color:#555;font-size:.85rem;margin-top:-.5rem}img{max-width:100%;border:1px solid #eee}
.lead{font-size:1.05rem;background:#f7f9fc;border-left:4px solid #4a78c2;padding:.5rem 1rem}
"""

_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th){th.addEventListener('click',function(){
var table=th.closest('table'),idx=Array.prototype.indexOf.call(th.parentNode.children,th),body=table.tBodies[0];
var asc=!th.classList.contains('sorted-asc');table.querySelectorAll('th').forEach(function(h){h.classList.remove('sorted-asc','sorted-desc')});
th.classList.add(asc?'sorted-asc':'sorted-desc');var rows=Array.prototype.slice.call(body.rows);
rows.sort(function(a,b){var x=a.cells[idx].dataset.v,y=b.cells[idx].dataset.v;var nx=parseFloat(x),ny=parseFloat(y);
var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:String(x).localeCompare(String(y));return asc?c:-c});rows.forEach(function(r){body.appendChild(r)})})});
"""


def _cell(v: Any, money: bool = False) -> tuple[str, str, bool]:
    """(shown text, sort key, is text); money as $1,234 (simfactory.report.money), sorted by its number."""
    if v is None or (isinstance(v, float) and v != v):
        return "-", "", True
    if isinstance(v, bool):
        return str(v), str(int(v)), True
    if isinstance(v, (int, float)):
        return format_cell(v, money), repr(float(v)), False
    return str(v), str(v), True


class HtmlReport:
    """Collect sections, then write one file. Other modules add their own sections the same way."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []
        self._plotly_js = False

    def figure(self, fig: Any, title: str = "") -> None:
        """An interactive plotly figure (zoom, pan, hover); plotly.js is inlined once, so the file works offline."""
        if title:
            self.heading(title, 3)
        self.parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if not self._plotly_js else False,
                                      config={"displaylogo": False}))
        self._plotly_js = True

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str, cls: str = "") -> None:
        attr = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{attr}>{html.escape(text)}</p>")

    def table(self, df: pd.DataFrame, title: str = "", note: str = "", index: bool = False) -> None:
        if title:
            self.heading(title, 3)
        frame = df.reset_index() if index else df
        if index and frame.columns[0] == "index":  # an unnamed index holds the row labels: no "index" header
            frame = frame.rename(columns={"index": ""})
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
        columns = [str(c) for c in frame.columns]
        unit_at = columns.index("unit") if "unit" in columns else None
        rows = []
        for row in frame.itertuples(index=False):
            cells = []
            flags = money_flags(columns, row[unit_at] if unit_at is not None else None, row[0] if index else None)
            for v, money in zip(row, flags):
                text, key, is_text = _cell(v, money)
                cls = ' class="text"' if is_text else ""
                cells.append(f'<td{cls} data-v="{html.escape(key, quote=True)}">{html.escape(text)}</td>')
            rows.append("<tr>" + "".join(cells) + "</tr>")
        self.parts.append(f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')
        if note:
            self.paragraph(note, "note")

    def links(self, items: list[tuple[str, str]]) -> None:
        """A list of relative links (text, href), e.g. compare.html to each run's report.html."""
        li = "".join(f'<li><a href="{html.escape(href, quote=True)}">{html.escape(text)}</a></li>' for text, href in items)
        self.parts.append(f"<ul>{li}</ul>")

    def image(self, path: Path, alt: str) -> None:
        data = base64.b64encode(read_input_bytes(path, "", MAX_SUMMARY_BYTES, "plot")).decode("ascii")
        self.parts.append(f'<p><img alt="{html.escape(alt, quote=True)}" src="data:image/png;base64,{data}"></p>')

    def render(self) -> str:
        """The page, stamped (a comment after the doctype: stamp_text) so a later run can prove it wrote it."""
        return stamp_text(self._page(), "<!-- ", " -->", at_line=1)

    def _page(self) -> str:
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"generator\" content=\"{GENERATOR}\">"
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>{''.join(self.parts)}<script>{_SORT_JS}</script></body></html>\n"
        )

    def write(self, path: Path) -> Path:
        """Into a folder being built (simfactory.outputs swaps it into place); a lone file: write_text_output."""
        path = Path(path)
        path.write_text(self.render(), encoding="utf-8")
        return path
