"""Does one adapter learn two tasks as well as a single-task adapter learns one? `examples/multitask.yaml`
(triage JSON + identity, temperature mixing) against a control with the same splits and the same number of
triage examples per epoch but no identity examples (its weight -> 0.001, i.e. 0 rows drawn per epoch).

    python bench/multitask_control.py        # writes bench/results/multitask_control-<date>.json

Both runs score the same test rows of both tasks before and after training.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEEP = ("json_exact_match", "json_field_accuracy", "json_valid", "rougeL", "exact_match", "loss")


def run(overrides: list[str]) -> dict:
    from tuneforge.config import load_recipe
    from tuneforge.train import train

    started = time.perf_counter()
    result = train(load_recipe(str(ROOT / "examples" / "multitask.yaml"), overrides), quiet=True)
    stats = result.stats

    def pick(metrics: dict) -> dict:
        return {task: {k: round(v, 4) for k, v in m.items() if k in KEEP} for task, m in metrics.items()}

    return {"run": str(result.run_dir), "steps": result.steps, "wall_s": round(time.perf_counter() - started, 1),
            "task_mixture": stats.get("task_mixture"), "task_train_examples": stats.get("task_train_examples"),
            "test_before": pick(stats["test_before"]),
            "test_after": pick(stats["test_after"]),
            "test_rows": {task: len(v) for task, v in _test_rows(result.run_dir).items()}}


def _test_rows(run_dir: Path) -> dict:
    rows = {}
    for path in sorted((run_dir / "eval").glob("*/predictions/after.jsonl")):
        rows[path.parent.parent.name] = path.read_text().splitlines()
    return rows


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load_before = os.getloadavg()
    multitask = run([])
    weight = multitask["task_mixture"]["triage"] / multitask["task_train_examples"]["triage"]
    control = run(["name=multitask-control", "method.options.temperature=null",
                   f"data.sources.0.weight={weight:.4f}", "data.sources.1.weight=0.001"])
    report = {"date": str(dt.date.today()), "load_average_before": load_before, "load_average_after": os.getloadavg(),
              "multitask": multitask, "triage_only_control": control}
    out = ROOT / "bench" / "results" / f"multitask_control-{dt.date.today()}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
