"""``report.html``: the runs table (sortable, best row highlighted) and the plots, in one file.

Self-contained (images embedded as data URIs, a few lines of inline script, nothing fetched),
so it opens from a cluster's disk or an e-mail attachment. Clicking a column header sorts the
rows by it (numbers numerically, blanks last); clicking again reverses. Runs that differ only in
their seed get a "Seed groups" table (mean ± 95% interval per metric, :mod:`rnnexp.reporting.seed_groups`).
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd

STYLE = """
body{font-family:sans-serif;margin:2em}
table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{cursor:pointer;background:#f4f4f4;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"} th[aria-sort=descending]::after{content:" \\25BC"}
tr.best td{background:#fff3b0;font-weight:bold}
tr.pruned td,tr.fail td,tr.unfinished td{color:#888}
td.missing{color:#bbb}
img{max-width:100%}
"""

# Sort by a column: numbers as numbers, text as text, empty cells always last.
SCRIPT = """
document.querySelectorAll("table.runs th").forEach(function (th, column) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0];
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    function key(row) {
      var text = row.cells[column].getAttribute("data-value");
      var number = Number(text);
      return text === "" ? null : (isNaN(number) ? text : number);
    }
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === null || y === null) { return x === y ? 0 : (x === null ? 1 : -1); }
      var order = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "<td class='missing' data-value=''>&ndash;</td>"
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    raw = repr(value) if isinstance(value, float) else str(value)
    return f"<td data-value='{html.escape(raw, quote=True)}'>{html.escape(shown)}</td>"


def table_html(table: pd.DataFrame, columns: Sequence[str], best: Optional[Any]) -> str:
    head = "".join(f"<th scope='col'>{html.escape(str(c))}</th>" for c in columns)
    rows = []
    for index, row in table.iterrows():
        classes = ["best"] if index == best else []
        if row.get("status") != "complete":
            classes.append(str(row.get("status")))
        cells = "".join(_cell(row.get(c)) for c in columns)
        rows.append(f"<tr class='{' '.join(classes)}'>{cells}</tr>")
    return f"<table class='runs'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def seed_groups_html(groups: pd.DataFrame) -> str:
    """The seed groups' display table (text cells, best group first), with what its numbers are."""
    from rnnexp.reporting.seed_groups import explanation

    head = "".join(f"<th scope='col'>{html.escape(str(c))}</th>" for c in groups.columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape('' if pd.isna(v) else str(v))}</td>" for v in row) + "</tr>"
                   for row in groups.itertuples(index=False))
    return (f"<h2>Seed groups</h2><p>{html.escape(explanation().replace('`', ''))}</p>"
            f"<table class='seed-groups'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")


def write_html(table: pd.DataFrame, columns: Sequence[str], best: Optional[Any], best_line: str,
               images: Sequence[Path], extra_images: Sequence[Path], out: Path, title: str,
               seed_groups: Optional[pd.DataFrame] = None) -> Path:
    counts = table["status"].value_counts()
    states = ", ".join(f"{n} {status}" for status, n in counts.items())
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p>{len(table)} runs ({html.escape(states)}). {html.escape(best_line)}</p>",
             "<p>Click a column header to sort. The best run is highlighted; runs that did not complete are grey "
             "and show their last logged values.</p>",
             table_html(table, columns, best)]
    if seed_groups is not None and not seed_groups.empty:
        parts.append(seed_groups_html(seed_groups))
    for image in [*images, *extra_images]:
        data = base64.b64encode(image.read_bytes()).decode()
        name = image.stem.replace("_", " ")
        parts.append(f"<h2>{html.escape(name)}</h2><img alt='{html.escape(name, quote=True)}' "
                     f"src='data:image/png;base64,{data}'>")
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path
