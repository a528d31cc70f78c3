"""`make demo`: data -> base-model evaluation -> LoRA fine-tune -> evaluation, on the embedded SmolLM2.

Every step is a library call a notebook can make the same way; the printed table is the proof.
Extra arguments are recipe overrides, e.g. `python -m tuneforge.demo hparams.epochs=2`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from rich.table import Table

from tuneforge.ui.console import console

REPO = Path(__file__).resolve().parents[3]
RECIPE = REPO / "examples" / "demo.yaml"
DATA = REPO / "examples" / "data" / "support_tickets.jsonl"


def main(overrides: list[str]) -> int:
    from tuneforge.config import load_recipe
    from tuneforge.data.prepare.pipeline import prepare_recipe
    from tuneforge.demo.support_tickets import write
    from tuneforge.train import train

    started = time.perf_counter()
    if not DATA.exists():
        write(DATA)
    recipe = load_recipe(RECIPE, overrides)
    console.rule("1. data: normalize, anonymize, dedup, split without leakage")
    prepared = prepare_recipe(recipe, Path(recipe.output_dir) / f"{recipe.name}-prepared")
    counts = {k: len(v) for k, v in prepared.splits.items()}
    console.print(f"{prepared.counts.get('rows')} rows -> {counts}; report: {prepared.out_dir / 'report.html'}")

    console.rule("2. fine-tune with LoRA; the base and the tuned model are scored on the held-out test split")
    train_recipe = recipe.model_copy(deep=True)
    source = type(recipe.data.sources[0])
    train_recipe.data.sources = [
        source(path=str(prepared.paths[split]), split=split) for split in ("train", "val", "test")
    ]
    result = train(train_recipe)
    before, after = result.stats.get("test_before", {}), result.stats.get("test_after", {})
    elapsed = time.perf_counter() - started
    _print_summary(before, after, result, elapsed)
    summary = {
        "before": before, "after": after, "run_dir": str(result.run_dir),
        "report": str(Path(result.run_dir) / "eval" / "report.html"), "wall_seconds": round(elapsed, 1),
        "split_sizes": counts, "train_seconds": result.stats.get("train_seconds"),
    }
    (Path(result.run_dir) / "demo_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0


def _print_summary(before: dict, after: dict, result, elapsed: float) -> None:
    table = Table(title="support-message triage -> JSON: before vs after")
    table.add_column("metric")
    table.add_column("base model", justify="right")
    table.add_column("fine-tuned", justify="right")
    for metric in after:
        table.add_row(metric, _pct(before.get(metric)), _pct(after[metric]))
    console.print(table)
    console.print(f"run folder: {result.run_dir}")
    console.print(f"report:     {Path(result.run_dir) / 'eval' / 'report.html'}")
    console.print(f"talk to it: tuneforge chat --run {result.run_dir} \"My router is dead, fix it ASAP!\"")
    console.print(f"wall time:  {elapsed / 60:.1f} min (training {result.stats.get('train_seconds', 0):.0f} s)")


def _pct(value) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as exc:  # user errors get one line, like the CLI
        from tuneforge.errors import TuneforgeError
        from tuneforge.ui.console import print_error

        if not isinstance(exc, TuneforgeError):
            raise
        print_error(str(exc))
        sys.exit(exc.exit_code)
