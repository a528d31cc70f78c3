"""Before/after on the test split: the base and the trained model scored with the evaluation engine.

Process 0 alone runs it (generation does not shard), on a model every process can hand it: the unwrapped model
under DDP, the saved final/ model when the weights were sharded.
"""

from __future__ import annotations

from typing import Any

from tuneforge.train.runfolder import RunContext


def compare_on_test(job) -> bool:
    objective = job.recipe.method.objective
    return (bool(job.test_records) and job.recipe.eval.before_after
            and objective in ("sft", "multitask", "distill"))


def evaluate_test(model, job, run: RunContext, name: str) -> dict[str, Any]:
    """Score the test split ({"all": result}, or one result per task for multitask runs)."""
    from tuneforge.evaluate.api import evaluate_model
    from tuneforge.train.multitask import test_by_task

    cfg = job.recipe.eval
    groups = test_by_task(job.test_records, job.plan.names) if job.plan.per_task else {"all": job.test_records}
    results = {}
    for task, records in groups.items():
        records = records[: cfg.max_examples] if cfg.max_examples else records
        where = "" if task == "all" else f" of task {task}"
        with run.console.status(f"evaluating the {name} model on {len(records)} test example(s){where}"):
            results[task] = evaluate_model(
                model, job.tokenizer, records, cfg.metrics, max_new_tokens=cfg.max_new_tokens,
                temperature=cfg.temperature, top_p=cfg.top_p, batch_size=cfg.batch_size, labels=cfg.labels,
                cutoff_len=job.recipe.hparams.cutoff_len, name=name, run_dir=run.run_dir,
            )
    job.stats[f"test_{name}"] = ({t: r.metrics for t, r in results.items()} if job.plan.per_task
                                 else results["all"].metrics)
    return results


def report_before_after(run: RunContext, job, before, after) -> None:
    """A before -> after table and an HTML report (one per task under eval/<task>/ for multitask runs)."""
    from rich.table import Table

    from tuneforge.evaluate.report import write_eval_report

    table = Table(title="test split: before -> after", title_justify="left")
    table.add_column("metric")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    for task, result in after.items():
        prior = (before or {}).get(task)
        results = [result] + ([prior] if prior is not None else [])
        out = run.run_dir / "eval" if task == "all" else run.run_dir / "eval" / task
        report = write_eval_report(results, out, run_dir=run.run_dir)
        prefix = "" if task == "all" else f"{task}: "
        for metric, value in result.metrics.items():
            old = f"{prior.metrics.get(metric, float('nan')):.4g}" if prior is not None else "-"
            table.add_row(prefix + metric, old, f"{value:.4g}")
        run.console.print(f"report: {report}")
    run.console.print(table)
