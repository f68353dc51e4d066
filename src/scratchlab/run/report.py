"""The HTML report over run directories: each experiment's figures and summary table."""

from __future__ import annotations

import html
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scratchlab.run.rundir import atomic_write_text


@dataclass
class Entry:
    name: str
    help: str
    status: str  # ok | skipped | failed
    run_dir: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    detail: str = ""


ENTRIES = "entries.json"  # beside report.html: what each experiment's last reproduction gave, for merging


def merge_entries(folder: Path, entries: list[Entry], *, quick: bool) -> list[Entry]:
    """The report's entries after this reproduction: the earlier ones kept (same mode, run directory still there),
    in their order, each replaced by a new one of the same name; new names last. Writes `folder/entries.json`."""
    path = folder / ENTRIES
    kept: list[Entry] = []
    try:
        saved = json.loads(path.read_text())
        if saved.get("quick") == quick:
            kept = [Entry(**{**e, "run_dir": Path(folder / e["run_dir"]) if e["run_dir"] else None})
                    for e in saved["entries"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        kept = []  # none yet, or unreadable: the report shows this reproduction only
    kept = [e for e in kept if e.status != "ok" or (e.run_dir and (e.run_dir / "summary.json").exists())]
    new = {e.name: e for e in entries}
    merged = [new.pop(e.name, e) for e in kept] + list(new.values())
    rows = [{**e.__dict__, "run_dir": os.path.relpath(e.run_dir, folder) if e.run_dir else None} for e in merged]
    atomic_write_text(path, json.dumps({"quick": quick, "entries": rows}, indent=1, default=str) + "\n")
    return merged


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
img { max-width: 100%; margin: .5em 0; border: 1px solid #eee; }
.skipped { color: #a60; } .failed { color: #b00; } .ok { color: #070; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; font-size: .85em; }
"""


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, dict | list):
        text = json.dumps(v)
        return html.escape(text if len(text) < 300 else text[:300] + " ...")
    return html.escape(str(v))


def _cell(m: dict[str, Any] | None) -> str:
    if m is None:
        return ""
    if m.get("std") is None:
        return f"{m['mean']:.4g}"
    return (f"{m['mean']:.4g} ± {m['std']:.2g}<br><small>[{m['ci95_low']:.4g}, {m['ci95_high']:.4g}]</small>")


def _sweep_table(summary: dict[str, Any]) -> str:
    """A sweep's variants as rows, its headline metrics as columns: mean ± std, the 95% interval below, n."""
    metrics = summary.get("headline") or sorted({k for v in summary["variants"] for k in v.get("metrics", {})})
    head = "".join(f"<th>{html.escape(m)}</th>" for m in metrics)
    rows = ""
    for v in summary["variants"]:
        failed = f' <span class="failed">{v["failed"]} failed</span>' if v.get("failed") else ""
        cells = "".join(f"<td>{_cell(v.get('metrics', {}).get(m))}</td>" for m in metrics)
        rows += f"<tr><th>{html.escape(str(v['name']))}</th><td>{v['n']}{failed}</td>{cells}</tr>"
    note = html.escape(summary.get("ci", ""))
    return (f"<table><tr><th>variant</th><th>n</th>{head}</tr>{rows}</table>"
            f"<p><small>mean ± std over seeds; in brackets the {note}.</small></p>")


def _section(e: Entry, root: Path) -> str:
    parts = [f'<h2 id="{e.name}">{html.escape(e.name)} <small class="{e.status}">{e.status}</small></h2>',
             f"<p>{html.escape(e.help)}</p>"]
    if e.status != "ok":
        parts.append(f"<pre>{html.escape(e.detail)}</pre>")
        return "\n".join(parts)
    rel = os.path.relpath(e.run_dir, root)
    parts.append(f'<p>Run directory: <code>{html.escape(rel)}</code></p>')
    if isinstance(e.summary.get("variants"), list):
        parts.append(_sweep_table(e.summary))
    skip = ("variants", "headline", "ci", "same_in_every_run")
    shown = {**e.summary.get("same_in_every_run", {}), **{k: v for k, v in e.summary.items() if k not in skip}}
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_value(v)}</td></tr>" for k, v in shown.items())
    parts.append(f"<table>{rows}</table>")
    figures = [(fig, fig.stem) for fig in sorted(Path(e.run_dir).glob("*.png"))]
    variants = e.summary.get("variants") or []
    if len(variants) == 1 and variants[0].get("runs"):  # one setting over seeds: its first run's figures too
        first = variants[0]["runs"][0]
        figures += [(fig, f"{fig.stem} ({first})") for fig in sorted((Path(e.run_dir) / first).glob("*.png"))]
    for fig, caption in figures:
        parts.append(f'<figure><img src="{html.escape(os.path.relpath(fig, root))}" alt="{fig.stem}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return "\n".join(parts)


def write(path: str | Path, entries: list[Entry], *, quick: bool = False) -> Path:
    path = Path(path)
    root = path.parent
    counts = {s: sum(e.status == s for e in entries) for s in ("ok", "skipped", "failed")}
    index = "".join(f'<li><a href="#{e.name}">{e.name}</a> <span class="{e.status}">{e.status}</span></li>'
                    for e in entries)
    mode = ("--quick: tiny budgets that check the pipeline end to end; the numbers are not the results"
            if quick else "full budgets")
    body = "\n".join(_section(e, root) for e in entries)
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>scratchlab report</title>"
           f"<style>{_CSS}</style></head><body><h1>scratchlab report</h1>"
           f"<p>Generated {time.strftime('%Y-%m-%d %H:%M')} ({html.escape(mode)}). "
           f"{counts['ok']} ran, {counts['skipped']} skipped, {counts['failed']} failed.</p>"
           f"<ul>{index}</ul>{body}</body></html>")
    atomic_write_text(path, doc)
    return path
