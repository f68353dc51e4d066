"""The HTML report over run directories, written to read like a results section a teacher could hand out.

Per experiment: what it reproduces and from which course or paper, its setup (seeds, config, data source), the
results over seeds as a table (mean ± std, the 95% interval, n), what the full budget gives (with the docs page),
and the figures with captions (sample grids folded, click to open); a glossary of the metrics used at the end.
The prose comes from the caller (scratchlab.experiments._about through the runner): this module only lays it out.
Figure captions are read from the run directory's figures.json ({file name: caption}, written by run/plots) when
present.
"""

from __future__ import annotations

import html
import json
import os
import re
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
    about: dict[str, Any] = field(default_factory=dict)  # reproduces, headline, expected, doc
    glossary: dict[str, str] = field(default_factory=dict)  # metric -> meaning, for the metrics shown


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
body { font-family: system-ui, sans-serif; max-width: 980px; margin: 2em auto; padding: 0 1em; color: #222;
       line-height: 1.45; }
h1 { margin-bottom: .2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2.2em; }
table { border-collapse: collapse; font-size: 0.88em; margin: .6em 0; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #fafafa; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
img { max-width: 100%; max-height: 360px; border: 1px solid #eee; }
.figs { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: .2em 1.2em; }
figure { margin: .6em 0; } figcaption { font-size: .82em; color: #555; }
details { margin: .5em 0; } summary { cursor: pointer; color: #245; }
.skipped { color: #a60; } .failed { color: #b00; } .ok { color: #070; }
.note { color: #555; font-size: .9em; }
.expected { background: #f3f7fb; padding: .4em .7em; border-left: 3px solid #9bd; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; font-size: .8em; }
"""
SAMPLE_GRIDS = ("sample", "grid", "per_class", "interpolation", "reconstruction")  # folded: click to open


def _short(text: str) -> str:
    """Paths as a reader can use them: the home folder as ~, an installed package's folder as site-packages/."""
    text = re.sub(r"(?:/[^\s/;,()]+)*/(?:site|dist)-packages/", "site-packages/", str(text))
    home = os.path.expanduser("~")
    return text.replace(home, "~") if home not in ("", "/") else text


def _num(v: float) -> str:
    return f"{v:.4g}"


def _stat(m: dict[str, Any] | None, interval: bool = True) -> str:
    """mean ± std (and the interval below), or the single value when there is no spread."""
    if m is None:
        return ""
    if m.get("std") is None:
        return _num(m["mean"])
    ci = f"<br><small>[{_num(m['ci95_low'])}, {_num(m['ci95_high'])}]</small>" if interval else ""
    return f"{_num(m['mean'])} ± {m['std']:.2g}{ci}"


def _metric_name(metric: str, glossary: dict[str, str]) -> str:
    tip = glossary.get(metric)
    return f'<abbr title="{html.escape(tip)}">{html.escape(metric)}</abbr>' if tip else html.escape(metric)


def _one_setting(variant: dict[str, Any], metrics: list[str], glossary: dict[str, str]) -> str:
    """One setting over seeds: a metric per row."""
    rows = ""
    for m in metrics:
        s = variant["metrics"].get(m)
        if s is None:
            continue
        ci = "" if s["std"] is None else f"[{_num(s['ci95_low'])}, {_num(s['ci95_high'])}]"
        rows += (f"<tr><th>{_metric_name(m, glossary)}</th><td class='num'>{_stat(s, interval=False)}</td>"
                 f"<td class='num'>{ci}</td><td class='num'>{_num(s['min'])} – {_num(s['max'])}</td>"
                 f"<td class='num'>{s['n']}</td></tr>")
    return ("<table><tr><th>metric</th><th>mean ± std</th><th>95% interval</th><th>min – max</th><th>n</th></tr>"
            f"{rows}</table>")


def _variants(summary: dict[str, Any], metrics: list[str], glossary: dict[str, str]) -> str:
    """Several settings: a variant per row, a metric per column (mean ± std, the interval below)."""
    head = "".join(f"<th>{_metric_name(m, glossary)}</th>" for m in metrics)
    rows = ""
    for v in summary["variants"]:
        failed = f' <span class="failed">({v["failed"]} failed)</span>' if v.get("failed") else ""
        cells = "".join(f"<td class='num'>{_stat(v.get('metrics', {}).get(m))}</td>" for m in metrics)
        rows += f"<tr><th>{html.escape(str(v['name']))}</th><td class='num'>{v['n']}{failed}</td>{cells}</tr>"
    return f"<table><tr><th>variant</th><th>n</th>{head}</tr>{rows}</table>"


def _every_number(summary: dict[str, Any]) -> str:
    """Every aggregated field, variants as columns (folded)."""
    variants = summary["variants"]
    fields: list[str] = []
    for v in variants:
        fields += [k for k in v.get("metrics", {}) if k not in fields]
    if not fields:
        return ""
    head = "".join(f"<th>{html.escape(v['name'])}</th>" for v in variants)
    rows = "".join(f"<tr><th>{html.escape(f)}</th>" + "".join(
        f"<td class='num'>{_stat(v.get('metrics', {}).get(f), interval=False)}</td>" for v in variants) + "</tr>"
        for f in fields)
    return (f"<details><summary>every number ({len(fields)} fields, mean ± std over seeds)</summary>"
            f"<table><tr><th>field</th>{head}</tr>{rows}</table></details>")


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _setup(e: Entry) -> str:
    """Seeds, the data source and the config (folded)."""
    run = Path(e.run_dir)
    variants = e.summary.get("variants") or []
    seeds = sorted({int(r.rsplit("seed", 1)[1]) for v in variants for r in v.get("runs", []) if "seed" in r})
    config = _read(run / "config.json") or _read(run / "sweep.json")
    if variants and len(variants) == 1 and variants[0].get("runs"):
        config = _read(run / variants[0]["runs"][0] / "config.json") or config
    parts = []
    if seeds:
        parts.append(f"{len(seeds)} seed{'s' * (len(seeds) > 1)} ({', '.join(map(str, seeds))})")
    fixed = e.summary.get("same_in_every_run", {})
    data = [f"{k}: {_short(v)}" for k, v in fixed.items() if "data" in k or "source" in k]
    text = f"<p><b>Setup.</b> {html.escape('; '.join(parts + data)) or 'one run'}.</p>"
    if config:
        text += (f"<details><summary>config</summary><pre>{html.escape(json.dumps(config, indent=1))}</pre>"
                 "</details>")
    return text


def _figures(e: Entry, root: Path) -> str:
    run = Path(e.run_dir)
    found = [(fig, run) for fig in sorted(run.glob("*.png"))]
    variants = e.summary.get("variants") or []
    if len(variants) == 1 and variants[0].get("runs"):  # one setting over seeds: its first run's figures too
        first = run / variants[0]["runs"][0]
        found += [(fig, first) for fig in sorted(first.glob("*.png"))]
    shown, folded = [], []
    for fig, folder in found:
        caption = (_read(folder / "figures.json") or {}).get(fig.name) or fig.stem.replace("_", " ")
        if folder != run:
            caption += f" ({os.path.relpath(folder, run)})"
        src = html.escape(os.path.relpath(fig, root))
        img = (f'<figure><a href="{src}"><img src="{src}" alt="{html.escape(fig.stem)}" loading="lazy"></a>'
               f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        if any(k in fig.stem for k in SAMPLE_GRIDS):
            folded.append(f"<details><summary>{html.escape(caption)} (click to open)</summary>{img}</details>")
        else:
            shown.append(img)
    return f"<div class='figs'>{''.join(shown)}</div>" + "".join(folded)


def _section(e: Entry, root: Path) -> str:
    about = e.about or {}
    parts = [f'<h2 id="{e.name}">{html.escape(e.name)} <small class="{e.status}">{e.status}</small></h2>',
             f"<p>{html.escape(about.get('reproduces') or e.help)}</p>"]
    if e.status == "skipped":
        parts.append(f"<p class='skipped'>Skipped: {html.escape(_short(e.detail))}</p>")
        return "\n".join(parts)
    if e.run_dir is None:
        parts.append(f"<pre>{html.escape(_short(e.detail))}</pre>")
        return "\n".join(parts)
    parts.append(_setup(e))
    variants = e.summary.get("variants")
    if isinstance(variants, list) and variants:
        metrics = [m for m in about.get("headline") or e.summary.get("headline") or []
                   if any(m in v.get("metrics", {}) for v in variants)]
        metrics = metrics or e.summary.get("headline") or []
        parts.append("<p><b>Results</b> (mean ± std over seeds; the 95% Student-t interval below).</p>")
        parts.append(_one_setting(variants[0], metrics, e.glossary) if len(variants) == 1
                     else _variants(e.summary, metrics, e.glossary))
        parts.append(_every_number(e.summary))
        extra = {k: v for k, v in e.summary.items() if k not in ("variants", "headline", "ci", "same_in_every_run",
                                                                 "experiment", "seeds", "executor")}
    else:
        extra = e.summary
    if extra:
        rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_short(_value(v)))}</td></tr>"
                       for k, v in extra.items())
        parts.append(f"<details><summary>run details</summary><table>{rows}</table></details>")
    if e.status == "failed" and e.detail:
        parts.append(f"<p class='failed'>Failed runs:</p><pre>{html.escape(_short(e.detail))}</pre>")
    if about.get("expected"):
        link = f' (<a href="{html.escape(about["doc"])}">{html.escape(about["doc"])}</a>)' if about.get("doc") else ""
        parts.append(f"<p class='expected'><b>At full budget:</b> {html.escape(about['expected'])}{link}</p>")
    parts.append(_figures(e, root))
    return "\n".join(parts)


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, dict | list):
        text = json.dumps(v)
        return text if len(text) < 300 else text[:300] + " ..."
    return str(v)


def _machine(entries: list[Entry]) -> str:
    for e in entries:
        if e.run_dir is None:
            continue
        meta = _read(Path(e.run_dir) / "meta.json")
        if meta:
            v = meta.get("versions", {})
            return (f"scratchlab {v.get('scratchlab', '?')}, torch {v.get('torch', '?')}, Python "
                    f"{v.get('python', '?')} on {v.get('platform', '?')} ({meta.get('cpu_count', '?')} CPUs)")
    return ""


def write(path: str | Path, entries: list[Entry], *, quick: bool = False, command: str = "") -> Path:
    path = Path(path)
    root = path.parent
    counts = {s: sum(e.status == s for e in entries) for s in ("ok", "skipped", "failed")}
    index = "".join(f'<li><a href="#{e.name}">{e.name}</a> <span class="{e.status}">{e.status}</span> '
                    f'<span class="note">{html.escape(e.help)}</span></li>' for e in entries)
    mode = ("--quick: tiny budgets over 2 seeds that check the pipeline end to end; the numbers are not the "
            "results (each section says what the full budget gives)" if quick else "full budgets")
    body = "\n".join(_section(e, root) for e in entries)
    terms: dict[str, str] = {}
    for e in entries:
        terms |= e.glossary
    glossary = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in sorted(terms.items()))
    how = f" Command: <code>{html.escape(command)}</code>." if command else ""
    doc = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>scratchlab report</title>"
           f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{_CSS}</style></head><body>"
           f"<h1>scratchlab report</h1><p class='note'>Generated {time.strftime('%Y-%m-%d %H:%M')}, "
           f"{html.escape(mode)}.{how} {html.escape(_machine(entries))}</p>"
           f"<p>{counts['ok']} ran, {counts['skipped']} skipped, {counts['failed']} failed. Every number is a mean "
           f"over seeds with its spread; hover a metric's name for its meaning, or see the "
           f"<a href='#glossary'>glossary</a>.</p>"
           f"<ul>{index}</ul>{body}"
           f"<h2 id='glossary'>Glossary</h2><table>{glossary}</table></body></html>")
    atomic_write_text(path, doc)
    return path
