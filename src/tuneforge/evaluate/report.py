"""The evaluation report: one self-contained `report.html` (inline PNGs) plus `report.json` and predictions.

`write_eval_report` takes one result, a list, or a dict such as {"before": r0, "after": r1} (what
`tuneforge train` writes at the end of a run) and always emits every section, saying so when one does not
apply, so readers find the same layout in every report.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

from tuneforge.evaluate import charts
from tuneforge.evaluate.api import EvalResult, _jsonable
from tuneforge.evaluate.metrics import LOWER_IS_BETTER

SECTIONS = ("summary", "loss-curves", "metrics", "calibration", "confusion", "bias", "examples")
Results = Union[EvalResult, Sequence[EvalResult], Mapping[str, EvalResult]]

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:top;font-size:13px}th{background:#f3f3f3}.best{font-weight:bold;background:#e8f6e8}
.warn{color:#b35900;font-weight:bold}.pass{color:#2a7d2a;font-weight:bold}.note{color:#777}
pre{white-space:pre-wrap;margin:0;font-size:12px;max-height:14em;overflow:auto}img{max-width:100%}"""


def as_list(results: Results) -> list[EvalResult]:
    if isinstance(results, EvalResult):
        return [results]
    if isinstance(results, Mapping):
        out = []
        for key, result in results.items():
            if result.name in ("model", ""):
                result.name = str(key)
            out.append(result)
        return out
    return list(results)


def rank(results: Sequence[EvalResult], metric: str | None = None) -> tuple[str | None, list[EvalResult]]:
    """Results ordered best first by `metric` (default: the first result's primary metric)."""
    metric = metric or (results[0].primary if results else None)
    if metric is None:
        return None, list(results)
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0

    def key(r: EvalResult) -> float:
        value = r.metrics.get(metric)
        return math.inf if value is None or math.isnan(value) else sign * value

    return metric, sorted(results, key=key)


def write_eval_report(
    results: Results, out_dir: str | Path, run_dir: str | Path | None = None, rank_by: str | None = None
) -> Path:
    """Write report.html, report.json and predictions; returns the report.html path."""
    items = as_list(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metric, ranked = rank(items, rank_by)
    if len(items) == 1:
        items[0].save_predictions(out / "predictions.jsonl")
    else:
        for r in items:
            r.save_predictions(out / "predictions" / f"{_slug(r.name)}.jsonl")
    run_dir = run_dir or next((r.run_dir for r in items if r.run_dir), None)
    curves = read_loss_curves(run_dir) if run_dir else {}
    data = {
        "ranked_by": metric,
        "ranking": [r.name for r in ranked],
        "models": [r.to_dict() for r in ranked],
        "run_dir": str(run_dir) if run_dir else None,
        "loss_curves": curves,
    }
    (out / "report.json").write_text(json.dumps(data, indent=2, default=_jsonable), encoding="utf-8")
    page = _html(ranked, metric, curves, run_dir)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def read_loss_curves(run_dir: str | Path) -> dict[str, list[tuple[float, float]]]:
    """Every numeric `*loss*` key of the run's metrics.jsonl against its step (train and validation)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return {}
    series: dict[str, list[tuple[float, float]]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a half-written last line of a running job
        if not isinstance(row, dict):
            continue
        step = row.get("step", row.get("global_step", n))
        for key, value in row.items():
            if "loss" in key and isinstance(value, (int, float)) and math.isfinite(value):
                series.setdefault(key, []).append((float(step), float(value)))
    return series


def _html(results: list[EvalResult], metric: str | None, curves: dict, run_dir) -> str:
    e = html.escape
    title = "tuneforge evaluation" + (f" — {e(results[0].name)}" if len(results) == 1 else "")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>",
             f"<style>{_CSS}</style></head><body><h1>{title}</h1>"]
    parts.append(_section("summary", "Summary", _summary(results, metric)))
    if curves:
        body = _img(charts.loss_curves(curves), "loss curves") + f"<p class='note'>from {e(str(run_dir))}/metrics.jsonl</p>"
    else:
        body = "<p class='note'>No training run attached (no metrics.jsonl).</p>"
    parts.append(_section("loss-curves", "Loss curves", body))
    parts.append(_section("metrics", "Metrics per model", _metric_bars(results)))
    parts.append(_section("calibration", "Calibration (reliability diagram)", _calibration(results)))
    parts.append(_section("confusion", "Confusion matrix", _confusion(results)))
    parts.append(_section("bias", "Bias audit", _bias(results)))
    parts.append(_section("examples", "Best and worst examples", _examples(results)))
    parts.append("</body></html>")
    return "\n".join(parts)


def _section(anchor: str, heading: str, body: str) -> str:
    return f"<section id='{anchor}'><h2>{heading}</h2>\n{body}\n</section>"


def _img(b64: str, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{b64}'>"


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _summary(results: list[EvalResult], metric: str | None) -> str:
    names = list(dict.fromkeys(k for r in results for k in r.metrics))
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for i, r in enumerate(results, 1):
        cells = "".join(
            f"<td class='{'best' if n == metric and i == 1 and len(results) > 1 else ''}'>{_fmt(r.metrics.get(n))}</td>"
            for n in names
        )
        rows.append(f"<tr><td>{i}</td><td>{html.escape(r.name)}</td><td>{r.task}</td>"
                    f"<td>{len(r.examples)}</td>{cells}</tr>")
    ranked = f"<p>Ranked by <b>{html.escape(metric)}</b>.</p>" if metric and len(results) > 1 else ""
    return (f"{ranked}<table><tr><th>#</th><th>model</th><th>task</th><th>examples</th>{head}</tr>"
            + "".join(rows) + "</table>")


def _metric_bars(results: list[EvalResult]) -> str:
    names = [n for n in dict.fromkeys(k for r in results for k in r.metrics)]
    if not names:
        return "<p class='note'>No metrics.</p>"
    values = {n: [r.metrics.get(n) for r in results] for n in names}
    return _img(charts.metric_bars([r.name for r in results], values), "metric bars")


def _calibration(results: list[EvalResult]) -> str:
    parts = []
    for r in results:
        c = r.calibration
        if not c:
            continue
        after = f", after T={c['temperature']:.3g}: {c['ece_after']:.4f}" if c.get("ece_after") is not None else ""
        parts.append(f"<h3>{html.escape(r.name)}</h3><p>ECE before: {c['ece_before']:.4f}{after} "
                     f"(confidence from {c['source']}, fitted on {c['fitted_on']} validation examples)</p>")
        parts.append(_img(charts.reliability_diagram(c["reliability_before"], c.get("reliability_after"), r.name),
                          "reliability diagram"))
    return "".join(parts) or "<p class='note'>Not computed (label tasks with the `calibration` metric).</p>"


def _confusion(results: list[EvalResult]) -> str:
    parts = [
        f"<h3>{html.escape(r.name)}</h3>" + _img(
            charts.confusion_matrix(r.confusion["labels"], r.confusion["matrix"], r.name), "confusion matrix")
        for r in results if r.confusion
    ]
    return "".join(parts) or "<p class='note'>Not a label task.</p>"


def _bias(results: list[EvalResult]) -> str:
    parts = []
    for r in results:
        if not r.bias:
            continue
        parts.append(f"<h3>{html.escape(r.name)}: <span class='{r.bias['status']}'>{r.bias['status']}</span>"
                     f" (threshold {r.bias['threshold']})</h3>")
        for attribute, entry in r.bias["attributes"].items():
            groups = "".join(
                f"<tr><td>{html.escape(g)}</td>" + "".join(f"<td>{_fmt(v)}</td>" for v in vals.values()) + "</tr>"
                for g, vals in entry["by_group"].items()
            )
            cols = next(iter(entry["by_group"].values()), {})
            head = "".join(f"<th>{html.escape(k)}</th>" for k in cols)
            gaps = ", ".join(f"{k.replace('_', ' ')}: {_fmt(v)}" for k, v in entry.items()
                             if k.endswith("difference"))
            parts.append(f"<p><b>{html.escape(attribute)}</b> — {gaps} — "
                         f"<span class='{entry['status']}'>{entry['status']}</span></p>"
                         f"<table><tr><th>group</th>{head}</tr>{groups}</table>")
    return "".join(parts) or "<p class='note'>No group attributes in the test data.</p>"


def _examples(results: list[EvalResult], k: int = 3) -> str:
    parts = []
    for r in results:
        best, worst = r.best_and_worst(k)
        parts.append(f"<h3>{html.escape(r.name)}</h3><table><tr><th></th><th>prompt</th><th>reference</th>"
                     "<th>prediction</th><th>scores</th></tr>")
        for tag, rows in (("best", best), ("worst", worst)):
            for row in rows:
                scores = ", ".join(f"{k}={_fmt(v)}" for k, v in row["scores"].items())
                parts.append(f"<tr><td>{tag}</td><td><pre>{html.escape(row['prompt'])}</pre></td>"
                             f"<td><pre>{html.escape(row['reference'])}</pre></td>"
                             f"<td><pre>{html.escape(row['prediction'] or '')}</pre></td><td>{scores}</td></tr>")
        parts.append("</table>")
    return "".join(parts) or "<p class='note'>No examples.</p>"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"
