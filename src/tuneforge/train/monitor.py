"""Watching a run: metrics.jsonl, a loss-curve PNG, a rich progress bar, optional TensorBoard/MLflow.

    mon = Monitor(run, total_steps)
    with mon:
        mon.log({"step": 1, "train_loss": 2.3, "lr": 1e-4})
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tuneforge.errors import TuneforgeError, UnsupportedHere
from tuneforge.train.runfolder import RunContext

PLOT_NAME = "loss.png"
_PLOT_EVERY_S = 15.0  # redraw at most this often during training (a redraw costs ~0.1-0.5 s)
_PLOT_EVAL_EVERY_S = 3.0  # evaluations redraw sooner, and the end of the run always does


class TrainingDiverged(TuneforgeError):
    """The loss became NaN or infinite."""


def check_finite(loss: float, step: int, lr: float) -> None:
    if math.isfinite(loss):
        return
    raise TrainingDiverged(
        f"training stopped at step {step}: the loss is {loss} (diverged). Try a lower learning rate "
        f"(now {lr:.3g}, e.g. hparams.learning_rate={lr / 10:.3g}), hparams.max_grad_norm=1.0, "
        "or check the data for empty/garbled examples; the last good checkpoint is kept"
    )


def read_metrics(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill
    return rows


def truncate_metrics(path: Path, after_step: int) -> None:
    """On resume, drop rows logged after the checkpoint so the log matches an uninterrupted run."""
    rows = [r for r in read_metrics(path) if r.get("step", 0) <= after_step]
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


class Monitor:
    """Only process 0 of a run writes (metrics, plot, trackers, progress); elsewhere every call does nothing."""

    def __init__(self, run: RunContext, total_steps: int, start_step: int = 0) -> None:
        self.run = run
        self.total_steps = total_steps
        self.start_step = start_step
        self.writes = run.is_main
        self.rows: list[dict[str, Any]] = read_metrics(run.metrics_path) if self.writes else []
        self._fh = open(run.metrics_path, "a", encoding="utf-8") if self.writes else None
        self._trackers = open_trackers(run) if self.writes else []
        self._last_plot = time.monotonic()
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> "Monitor":
        if self.writes and not self.run.console.quiet:
            self._progress = Progress(
                TextColumn("step {task.completed}/{task.total}"),
                BarColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.run.console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "train", total=self.total_steps, completed=self.start_step, info=""
            )
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._fh is not None and not self._fh.closed:
            self._fh.close()
            self.plot()
        for tracker in self._trackers:
            tracker.close()
        self._trackers = []

    def log(self, row: dict[str, Any]) -> None:
        if not self.writes:
            return
        row = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}
        self.rows.append(row)
        self._fh.write(json.dumps(row) + "\n")
        self._fh.flush()
        for tracker in self._trackers:
            tracker.log(row)
        since = time.monotonic() - self._last_plot
        if since > _PLOT_EVERY_S or ("val_loss" in row and since > _PLOT_EVAL_EVERY_S):
            self.plot()

    def advance(self, step: int, loss: float, lr: float, tokens_per_s: float) -> None:
        if self._progress is not None:
            info = f"loss {loss:.4f}  lr {lr:.2e}  {tokens_per_s:,.0f} tok/s"
            self._progress.update(self._task, completed=step, info=info)

    def print(self, message: str) -> None:
        if self.writes:
            self.run.console.print(message)

    def plot(self) -> Path | None:
        self._last_plot = time.monotonic()
        return plot_losses(self.rows, self.run.run_dir / PLOT_NAME)


def plot_losses(rows: list[dict[str, Any]], path: Path) -> Path | None:
    train = [(r["step"], r["train_loss"]) for r in rows if "train_loss" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    if not train and not val:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss", linewidth=1)
    if val:
        ax.plot(*zip(*val), "o-", label="val loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


class _TensorBoard:
    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UnsupportedHere(
                "hparams.report_to: tensorboard needs the tensorboard package: pip install 'tuneforge[track]'"
            ) from None
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, row: dict[str, Any]) -> None:
        step = row.get("step", 0)
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


class _MLflow:
    def __init__(self, run: RunContext) -> None:
        try:
            import mlflow
        except ImportError:
            raise UnsupportedHere("hparams.report_to: mlflow needs the mlflow package: pip install mlflow") from None
        self.mlflow = mlflow
        mlflow.start_run(run_name=run.run_dir.name)
        mlflow.log_params({"learning_rate": run.recipe.hparams.learning_rate, "method": run.recipe.method.type})

    def log(self, row: dict[str, Any]) -> None:
        metrics = {k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))}
        self.mlflow.log_metrics(metrics, step=int(row.get("step", 0)))

    def close(self) -> None:
        self.mlflow.end_run()


def check_trackers(report_to: list[str]) -> None:
    """Fail before any loading when a requested tracker is not installed."""
    import importlib.util

    needs = {"tensorboard": ("tensorboard", "pip install 'tuneforge[track]'"), "mlflow": ("mlflow", "pip install mlflow")}
    for name in report_to:
        module, hint = needs[name]
        if importlib.util.find_spec(module) is None:
            raise UnsupportedHere(f"hparams.report_to: {name} needs the {module} package: {hint}")


def open_trackers(run: RunContext) -> list[Any]:
    trackers: list[Any] = []
    for name in run.recipe.hparams.report_to:
        if name == "tensorboard":
            trackers.append(_TensorBoard(run.run_dir / "tensorboard"))
        elif name == "mlflow":
            trackers.append(_MLflow(run))
    return trackers
