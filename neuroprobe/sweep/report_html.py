"""The sweep report as one self-contained HTML page.

No external files: figures are embedded as ``data:image/png;base64,...`` URIs, the style is inline,
no script. Every text from the sweep (names, values, error lines) is escaped with :func:`html.escape`.
The table shows the very cells of ``table.md`` (:func:`.report.table_cells`).
"""
from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .report import PointSummary, Sweep

__all__ = ["render_html"]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; } tr:nth-child(even) td { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: 600; } dd { margin: 0; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; }
code, pre { background: #f4f4f4; padding: 0.1em 0.3em; }
.caption, .note { font-size: 0.9em; color: #444; } li.failed { color: #a00; }
"""
_NUMERIC = ("point", "n", "failed", "pending", "wall s / run")


def _value(v: object) -> str:
    """A sweep.toml value as short text (lists and tables as JSON)."""
    return v if isinstance(v, str) else json.dumps(v)


def _description(sweep: Sweep) -> list[tuple[str, str]]:
    spec = sweep.spec
    items = [("config", _value(spec.get("config", "?"))),
             ("grid", "; ".join(f"{k} = {', '.join(v)}" for k, v in sweep.grid.items()) or "—")]
    if spec.get("points"):
        items.append(("extra points", "; ".join(
            ", ".join(f"{k}={_value(v)}" for k, v in p.items()) if isinstance(p, dict) else _value(p)
            for p in spec["points"])))
    items.append(("seeds", _value(spec.get("seeds", sorted({r.seed for r in sweep.rows})))))
    sets = spec.get("set", [])
    items.append(("set (every run)", ", ".join(map(_value, sets)) if isinstance(sets, list) and sets else "—"))
    if "batch_seeds" in spec:
        items.append(("batch seeds", _value(spec["batch_seeds"])))
    items.append(("date", sweep.date))
    items.append(("directory", str(sweep.path.absolute())))
    return items


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _figure(path: Path, cap: str) -> str:
    return (f'<figure><img src="{_png_data_uri(path)}" alt="{escape(path.stem)}">'
            f"<figcaption><b>{escape(path.name)}</b>: {escape(cap)}</figcaption></figure>")


def render_sections(sections: list[dict]) -> list[str]:
    """HTML of extra sections placed before the sweep (the demo's distal-reward results). Each section is
    ``{"title": str, "text": str, "table": [[header...], [cells...], ...] (optional), "figures":
    [(png path, caption), ...] (optional)}``; figures that do not exist are skipped."""
    out = []
    for sec in sections:
        out.append(f"<h2>{escape(str(sec['title']))}</h2>")
        if sec.get("text"):
            out.append(f"<p>{escape(str(sec['text']))}</p>")
        table = sec.get("table") or []
        if table:
            out += ["<table>", "<thead><tr>" + "".join(f"<th>{escape(str(h))}</th>" for h in table[0]) + "</tr></thead>",
                    "<tbody>"]
            out += ["<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in table[1:]]
            out.append("</tbody></table>")
        out += [_figure(Path(p), cap) for p, cap in sec.get("figures", []) if Path(p).is_file()]
    return out


def render_html(sweep: Sweep, points: list[PointSummary], caption: str, figures: list[tuple[Path, str]],
                notes: list[str], command: str, sections: list[dict] | None = None, title: str | None = None) -> str:
    """The page: title, description, table (+ its note), figures with captions, failed runs, notes, and
    the command that regenerates it; ``sections`` (see :func:`render_sections`) come first."""
    from .report import table_cells, table_note

    name = str(sweep.spec.get("name", sweep.path.name))
    header, rows = table_cells(sweep, points)
    title = title or f"Sweep report: {name}"
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{escape(title)}</title>", f"<style>{_CSS}</style></head><body>", f"<h1>{escape(title)}</h1>"]
    if sections:
        out += render_sections(sections) + [f"<h2>Sweep: {escape(name)}</h2>"]
    out.append("<dl>")
    out += [f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in _description(sweep)]
    out += ["</dl>", "<h2>Table</h2>", f'<p class="caption">{escape(caption)}</p>', "<table>",
            "<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr></thead>", "<tbody>"]
    for r in rows:
        out.append("<tr>" + "".join(('<td class="num">' if h in _NUMERIC else "<td>") + escape(c) + "</td>"
                                    for h, c in zip(header, r)) + "</tr>")
    out += ["</tbody></table>", f'<p class="note">{escape(table_note())}</p>', "<h2>Figures</h2>"]
    out += [_figure(path, cap) for path, cap in figures]
    failed = [r for r in sweep.rows if r.status == "failed"]
    out.append(f"<h2>Failed runs ({len(failed)})</h2>")
    if failed:
        out.append("<ul>")
        for r in failed:
            where = ", ".join(f"{k}={v}" for k, v in r.values.items() if v != "")
            out.append(f'<li class="failed">point {r.point} ({escape(where)}), seed {r.seed}, run '
                       f"<code>{escape(r.run)}</code>: {escape(r.error or '(no error line)')}</li>")
        out.append("</ul>")
    else:
        out.append("<p>None.</p>")
    pending = sum(r.status not in ("done", "failed") for r in sweep.rows)
    if pending:
        out.append(f"<p>{pending} run(s) still pending when this report was written.</p>")
    if notes:
        out += ["<h2>Notes</h2>", "<ul>"] + [f"<li>{escape(n)}</li>" for n in notes] + ["</ul>"]
    out += ["<h2>Regenerate</h2>", f"<pre>{escape(command)}</pre>", "</body></html>"]
    return "\n".join(out) + "\n"
