"""HTML pieces of the self-contained report: embedded figures, paged tables, CSV downloads."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

ROWS_PER_PAGE = 25

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:auto;padding:0 1em 2em;color:#222}
h1{font-size:1.5em;margin:.6em 0 .2em}h2{font-size:1.15em;margin:1.2em 0 .4em;border-bottom:1px solid #ddd}
.lead{font-size:1.05em;background:#f4f7fb;border-left:4px solid #2a6ebb;padding:.5em .8em;margin:.5em 0}
.row{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}.row figure{flex:1 1 360px;margin:0}
table{border-collapse:collapse;font-size:12px;margin:.3em 0}td,th{border:1px solid #ccc;padding:2px 6px}
th{background:#f2f2f2}img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:12px;color:#555}details{border:1px solid #ddd;border-radius:4px;margin:.4em 0;padding:.2em .6em}
details>summary{cursor:pointer;font-size:13px}details.wrong>summary{color:#b00020}.muted{color:#666;font-size:12px}
details.ood{border-color:#d98e04}.ood b.ood,b.ood{color:#a05a00}.stability{font-size:13px}
.pager button{font-size:12px;margin-right:.3em}
"""

#: Shows ROWS_PER_PAGE rows of every ``table.paged`` with previous/next buttons.
PAGER_SCRIPT = """
document.querySelectorAll('table.paged').forEach(function (table) {
  var rows = Array.prototype.slice.call(table.tBodies[0].rows), size = ROWS, page = 0;
  var pages = Math.max(1, Math.ceil(rows.length / size));
  var bar = document.createElement('div'); bar.className = 'pager';
  var prev = document.createElement('button'), next = document.createElement('button');
  var label = document.createElement('span');
  prev.textContent = 'previous'; next.textContent = 'next';
  function show() {
    rows.forEach(function (row, i) { row.style.display = Math.floor(i / size) === page ? '' : 'none'; });
    label.textContent = ' page ' + (page + 1) + ' of ' + pages + ' (' + rows.length + ' rows) ';
    prev.disabled = page === 0; next.disabled = page === pages - 1;
  }
  prev.onclick = function () { page = Math.max(0, page - 1); show(); };
  next.onclick = function () { page = Math.min(pages - 1, page + 1); show(); };
  bar.appendChild(prev); bar.appendChild(next); bar.appendChild(label);
  table.parentNode.insertBefore(bar, table.nextSibling);
  show();
});
""".replace("ROWS", str(ROWS_PER_PAGE))

esc = html.escape


def figure(path: Path, caption: str, alt: str | None = None) -> str:
    """A ``<figure>`` with the PNG at ``path`` embedded as base64 (the page needs no other file)."""
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img alt='{esc(alt or path.stem)}' src='data:image/png;base64,{encoded}'>"
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def csv_link(frame: pd.DataFrame, file: str, text: str, index: bool = False) -> str:
    """A download link carrying the CSV itself (a data URI), named like the file written beside
    the page."""
    encoded = base64.b64encode(frame.to_csv(index=index).encode("utf-8")).decode("ascii")
    return f"<a download='{esc(file)}' href='data:text/csv;base64,{encoded}'>{esc(text)}</a>"


def table(frame: pd.DataFrame, *, index: bool = False, digits: int = 3) -> str:
    """A small table; one longer than a page is paged by :data:`PAGER_SCRIPT`."""
    classes = "paged" if len(frame) > ROWS_PER_PAGE else ""
    return frame.round(digits).to_html(index=index, border=0, classes=classes, escape=True)


def page(title: str, body: list[str]) -> str:
    """The whole document."""
    return "\n".join([
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
        *body,
        f"<script>{PAGER_SCRIPT}</script></body></html>",
    ])
