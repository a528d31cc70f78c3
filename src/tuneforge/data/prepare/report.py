"""Outputs of `prepare`: split files, quarantine/rejected JSONL, report.json and a self-contained report.html
(PNG plots inline as base64), plus the short terminal table."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.data.prepare.config import PrepareConfig
from tuneforge.data.issues import write_issues
from tuneforge.data.prepare.ledger import Ledger

SECTIONS = ("Summary", "Steps", "Token lengths", "PII", "Duplicate clusters", "Splits and labels", "Leakage",
            "Rejected rows", "Notes")


def histogram(lengths: list[int], bins: int = 20) -> dict[str, Any]:
    if not lengths:
        return {"n": 0}
    arr = np.asarray(lengths)
    counts, edges = np.histogram(arr, bins=bins)
    return {"n": int(arr.size), "min": int(arr.min()), "p50": float(np.percentile(arr, 50)),
            "p90": float(np.percentile(arr, 90)), "p99": float(np.percentile(arr, 99)), "max": int(arr.max()),
            "mean": round(float(arr.mean()), 2), "bin_edges": [round(float(e), 2) for e in edges],
            "counts": [int(c) for c in counts]}


def write_outputs(result, ledger: Ledger, rejected: list, cfg: PrepareConfig) -> dict[str, Path]:
    from tuneforge.data import write_records

    out = Path(result.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for split, records in result.splits.items():
        paths[split] = write_records(records, out / f"{split}.jsonl")
        kinds = sorted({type(r).__name__ for r in records})
        if len(kinds) > 1:
            result.report["notes"].append(f"{split}.jsonl mixes record kinds ({', '.join(kinds)}); the readers "
                                          "load one kind per file, so split the data by kind before training")
    paths["quarantine"] = ledger.write(out / "quarantine.jsonl")
    paths["rejected"] = write_issues(rejected, out / "rejected.jsonl")
    lengths = result.report.pop("token_lengths")
    result.report["token_length_histograms"] = {s: histogram(v) for s, v in lengths.items()}
    paths["report_json"] = out / "report.json"
    paths["report_json"].write_text(json.dumps(result.report, indent=2, ensure_ascii=False), encoding="utf-8")
    if cfg.report.html:
        paths["report_html"] = out / "report.html"
        plots = _plots(result.report, lengths) if cfg.report.plots else {}
        paths["report_html"].write_text(render_html(result.report, plots), encoding="utf-8")
    return paths


# ---------------------------------------------------------------- plots


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(report: dict, lengths: dict[str, list[int]]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")  # no display; the report embeds PNGs
    import matplotlib.pyplot as plt

    plots: dict[str, str] = {}
    fig, ax = plt.subplots(figsize=(7, 3))
    steps = report["step_counts"]
    ax.bar([s["step"] for s in steps], [s["out"] for s in steps], color="#4c72b0")
    ax.set_ylabel("examples after step")
    plots["steps"] = _png(fig)
    if any(lengths.values()):
        fig, ax = plt.subplots(figsize=(7, 3))
        for split, values in lengths.items():
            if values:
                ax.hist(values, bins=30, alpha=0.5, label=f"{split} ({len(values)})")
        ax.set_xlabel(f"tokens ({report['tokens_counted_with']})")
        ax.set_ylabel("examples")
        ax.legend()
        plots["tokens"] = _png(fig)
    balance = report["steps"].get("split", {}).get("label_balance") or {}
    if balance:
        labels = sorted({lab for per in balance.values() for lab in per})
        fig, ax = plt.subplots(figsize=(7, 3))
        width = 0.8 / max(1, len(balance))
        for n, (split, per) in enumerate(balance.items()):
            total = sum(per.values()) or 1
            ax.bar(np.arange(len(labels)) + n * width, [per.get(lab, 0) / total for lab in labels], width, label=split)
        ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=30)
        ax.set_ylabel("share of split")
        ax.legend()
        plots["labels"] = _png(fig)
    return plots


# ---------------------------------------------------------------- html

_CSS = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
        "margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}"
        "th{background:#f3f3f3}pre{white-space:pre-wrap;margin:0;font-size:12px}.muted{color:#777}")


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return "<p class='muted'>none</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(plots: dict[str, str], key: str) -> str:
    return f"<img alt='{key}' src='data:image/png;base64,{plots[key]}'>" if key in plots else ""


def _pre(text: str) -> str:
    return f"<pre>{_e(text)}</pre>"


def render_html(report: dict, plots: dict[str, str]) -> str:
    steps = report["steps"]
    parts = [f"<h1>tuneforge data prepare</h1><p class='muted'>seed {report['seed']}, "
             f"{report['wall_s']} s, sources: {_e(', '.join(report['sources']) or 'records')}</p>"]
    counts = report["counts"]
    parts.append(_section("Summary", _table(["count", "value"], [[_e(k), v] for k, v in counts.items()])))
    step_rows = [[s["step"], s["in"], s["out"], s["removed"], s["modified"],
                  _e(", ".join(f"{k} {v}" for k, v in {**s["removed_by_reason"], **s["modified_by_reason"]}.items())),
                  _e(s["skipped"] or "")] for s in report["step_counts"]]
    parts.append(_section("Steps", _table(["step", "in", "out", "removed", "modified", "reasons", "skipped"],
                                          step_rows) + _img(plots, "steps")))
    hists = report.get("token_length_histograms", {})
    hist_rows = [[s, h.get("n", 0), h.get("min", ""), h.get("p50", ""), h.get("p90", ""), h.get("max", "")]
                 for s, h in hists.items()]
    parts.append(_section("Token lengths", f"<p>counted with {_e(report['tokens_counted_with'])}</p>"
                          + _table(["split", "n", "min", "p50", "p90", "max"], hist_rows) + _img(plots, "tokens")))
    pii = steps.get("pii", {})
    pii_rows = [[_e(k), v] for k, v in sorted(pii.get("found_by_type", {}).items())]
    parts.append(_section("PII", f"<p>mode: {_e(pii.get('mode', 'off'))}; texts analyzed: "
                          f"{pii.get('texts_analyzed', 0)}</p>" + _table(["type", "found"], pii_rows)))
    dedup = steps.get("dedup", {})
    cluster_rows = [[c["cluster"], c["size"], c["kept_uid"], "".join(_pre(t) + "<hr>" for t in c["texts"])]
                    for c in dedup.get("biggest_clusters", [])]
    parts.append(_section("Duplicate clusters", f"<p>{dedup.get('clusters', 0)} clusters, "
                          f"threshold {dedup.get('threshold', '')}</p>"
                          + _table(["cluster", "size", "kept uid", "texts (first 5)"], cluster_rows)))
    split = steps.get("split", {})
    balance = split.get("label_balance", {})
    bal_rows = [[s, _e(", ".join(f"{k}: {v}" for k, v in sorted(per.items())))] for s, per in balance.items()]
    parts.append(_section("Splits and labels", _table(["split", "examples"], [[s, n] for s, n in split.get(
        "counts", {}).items()]) + _table(["split", "labels"], bal_rows) + _img(plots, "labels")))
    parts.append(_section("Leakage", _leakage_html(steps.get("leakage", {}))))
    rej = [[_e(k), v] for k, v in sorted(report.get("rejected_by_code", {}).items())]
    parts.append(_section("Rejected rows", "<p>rows the readers rejected (rejected.jsonl)</p>"
                          + _table(["code", "rows"], rej)))
    parts.append(_section("Notes", "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in report["notes"]) + "</ul>"))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>tuneforge data prepare</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")


def _section(title: str, body: str) -> str:
    anchor = title.lower().replace(" ", "-")
    return f"<section id='{anchor}'><h2>{_e(title)}</h2>{body}</section>"


def _leakage_html(leak: dict) -> str:
    if leak.get("skipped"):
        return f"<p class='muted'>skipped: {_e(leak['skipped'])}</p>"
    head = (f"<p>{leak.get('total', 0)} overlapping pair(s) at threshold {leak.get('threshold', '')}; "
            f"eval file: {_e(leak.get('eval_data') or 'none')}</p>")
    counts = _table(["split pair / kind", "pairs"], [[_e(k), v] for k, v in leak.get("counts", {}).items()])
    rows = [[_e(p["splits"]), p["kind"], p["similarity"], _pre(f"{p['a']['source']}:{p['a']['line']}\n{p['a']['text']}"),
             _pre(f"{p['b']['source']}:{p['b']['line']}\n{p['b']['text']}")]
            for pairs in leak.get("pairs", {}).values() for p in pairs]
    return head + counts + _table(["splits", "kind", "similarity", "a", "b"], rows)


def print_summary(result, console) -> None:
    """The short terminal table: counts through each step, then where the files are."""
    from rich.table import Table

    table = Table(title="data prepare", show_lines=False)
    for col in ("step", "in", "out", "removed", "modified", "note"):
        table.add_column(col, justify="right" if col in ("in", "out", "removed", "modified") else "left")
    for s in result.report["step_counts"]:
        reasons = {**s["removed_by_reason"], **s["modified_by_reason"]}
        note = s["skipped"] or ", ".join(f"{k} {v}" for k, v in reasons.items())
        table.add_row(s["step"], str(s["in"]), str(s["out"]), str(s["removed"]), str(s["modified"]), note)
    console.print(table)
    c = result.counts
    console.print(f"rows {c['rows']} = {c.get('valid_rows', c['records'])} valid + {c['rejected']} rejected by the "
                  f"reader; {c['records']} records; "
                  f"records {c['records']} = {c['out']} out + {c['removed']} quarantined  "
                  f"(train {c['train']}, val {c['val']}, test {c['test']})", markup=False)
    leak = result.report["steps"].get("leakage", {})
    if leak.get("total"):
        console.print(f"leakage: {leak['total']} overlapping pair(s): {leak['counts']}", markup=False)
    for note in result.report["notes"]:
        console.print(f"note: {note}", markup=False)
    for warning in result.report.get("reader_warnings", [])[:5]:
        console.print(f"warning: {warning}", markup=False, soft_wrap=True)
    if result.paths:
        console.print(f"wrote {result.out_dir}/ (train/val/test.jsonl, quarantine.jsonl, rejected.jsonl, "
                      "report.json, report.html)", markup=False)
