"""Run folders: `<output_dir>/<name>-<timestamp>/` with recipe.yaml, manifest.json, status, metrics, final/.

    run = start_run(recipe, console)          # new folder, or the one being resumed
    run.set_status("finished")
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from tuneforge.config.recipe import Recipe, dump_recipe
from tuneforge.errors import ConfigError
from tuneforge.train import checkpoint as ckpt

STATUSES = ("running", "finished", "failed", "stopped")
STOP_REQUEST = "stop-request"  # a file in the run folder: stop after the current step, with a checkpoint
_PACKAGES = ("tuneforge", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "tokenizers",
             "safetensors", "numpy", "bitsandbytes")


@dataclass
class RunContext:
    """What every trainer (SFT, preference) shares about the current run."""

    recipe: Recipe
    run_dir: Path
    console: Console
    resume_from: Path | None = None  # a valid checkpoint folder when resuming
    extras: dict[str, Any] = field(default_factory=dict)
    is_main: bool = True  # process 0 of the run (the only one when alone): the one that writes the folder

    @property
    def final_dir(self) -> Path:
        return self.run_dir / "final"

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    def set_status(self, status: str) -> None:
        if self.is_main:
            write_status(self.run_dir, status)

    def supervise(self, body: Callable[[], "RunResult"]) -> "RunResult":
        """Run a trainer's body and record how it ended: status stopped on Ctrl-C, failed on any other
        exception (re-raised either way), else the result's status plus summary.json.

        A failure in any process marks the run failed (the launcher then ends the others, which could not
        record it); a Ctrl-C reaches every process, and process 0 records it."""
        try:
            result = body()
        except KeyboardInterrupt:
            self.set_status("stopped")
            raise
        except BaseException:
            write_status(self.run_dir, "failed")
            raise
        self.set_status(result.status)
        if self.is_main:
            result.write_summary()
        return result


@dataclass
class RunResult:
    """What `train()` returns: where everything went and how it ended."""

    run_dir: Path
    final_dir: Path | None  # HF-format adapter or model + tokenizer; None when the run did not finish
    status: str  # finished / stopped / failed
    best_val_loss: float | None = None
    best_step: int | None = None
    steps: int = 0
    train_loss: float | None = None  # the last step's
    val_loss: float | None = None  # the last evaluation's
    stats: dict[str, Any] = field(default_factory=dict)
    recipe: Recipe | None = None  # with every `auto` resolved

    def summary(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir), "final_dir": str(self.final_dir) if self.final_dir else None,
            "status": self.status, "best_val_loss": self.best_val_loss, "best_step": self.best_step,
            "steps": self.steps, "train_loss": self.train_loss, "val_loss": self.val_loss, "stats": self.stats,
        }

    def write_summary(self) -> Path:
        path = Path(self.run_dir) / "summary.json"
        path.write_text(json.dumps(self.summary(), indent=2, default=str), encoding="utf-8")
        return path


def write_status(run_dir: Path, status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}")
    tmp = Path(run_dir) / f".status-{os.getpid()}.tmp"  # processes of one run may each record a failure
    tmp.write_text(status + "\n", encoding="utf-8")
    os.replace(tmp, Path(run_dir) / "status")


def request_stop(run_dir: str | Path) -> str | None:
    """Ask a running run to stop cleanly (`tuneforge stop`, the web UI's Stop button). Returns None when
    the request was written, else the status of a run that is not running (nothing is written then).

    A file rather than a signal: any process that can write the folder can ask, and the trainer picks it
    up between optimizer steps (a checkpoint is saved, status `stopped`, `resume: auto` continues).
    """
    status = read_status(Path(run_dir))
    if status != "running":
        return status
    (Path(run_dir) / STOP_REQUEST).write_text(_dt.datetime.now().isoformat(timespec="seconds") + "\n",
                                              encoding="utf-8")
    return None


def stop_requested(run_dir: str | Path) -> bool:
    return (Path(run_dir) / STOP_REQUEST).is_file()


def with_stop_request(run_dir: Path, hook: Callable[[int], bool] | None) -> Callable[[int], bool]:
    """The trainer's stop hook: the caller's own `hook(step)` (always called: search reports to Optuna from
    it) or a stop-request file in the run folder."""

    def should_stop(step: int) -> bool:
        asked = hook is not None and bool(hook(step))
        return asked or stop_requested(run_dir)

    return should_stop


def read_status(run_dir: Path) -> str:
    """The run's status; a `running` run whose process is gone (killed) reads as `stopped`."""
    path = Path(run_dir) / "status"
    status = path.read_text(encoding="utf-8").strip() if path.is_file() else "unknown"
    if status == "running" and not _owner_alive(Path(run_dir)):
        return "stopped"
    return status


def read_owner(run_dir: str | Path) -> tuple[int, str] | None:
    """(pid, host) of the process that last opened the run (its `pid` file), or None without a readable one."""
    try:
        pid_text, _, host = (Path(run_dir) / "pid").read_text(encoding="utf-8").strip().partition("@")
        return int(pid_text), host
    except (OSError, ValueError):
        return None


def _owner_alive(run_dir: Path) -> bool:
    owner = read_owner(run_dir)
    if owner is None:
        return True  # no record: assume it is running
    pid, host = owner
    if host != platform.node():
        return True  # another machine's process: cannot tell
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_run_dir(output_dir: str | Path, name: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(output_dir) / f"{name}-{stamp}"
    path, n = base, 1
    while path.exists():  # two runs in the same second
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def find_resume_point(recipe: Recipe, console: Console | None = None) -> Path | None:
    """The checkpoint to continue from (see `_resume_point`), checked to have the recipe's method/shape."""
    from tuneforge.train.resume_check import check_resume_shape

    found = _resume_point(recipe, console or Console(stderr=True))
    if found is not None:
        check_resume_shape(recipe, found)
    return found


def _resume_point(recipe: Recipe, console: Console) -> Path | None:
    """The checkpoint `recipe.resume` points at, or None to start fresh.

    auto: newest valid checkpoint of the newest unfinished `<name>-*` run (none: start fresh);
    true: the same but it is an error when there is none; a path: a checkpoint or a run folder.
    """
    value = recipe.resume
    if value is False or value in ("false", "no", ""):
        return None
    if isinstance(value, str) and value not in ("auto", "true", "yes"):
        path = Path(value)
        if ckpt.is_valid(path):
            return path
        if path.is_dir() and ckpt.latest_checkpoint(path) is not None:
            _warn_skipped(path, console)
            return ckpt.latest_checkpoint(path)
        reason = ckpt.invalid_reason(path) if (path / ckpt.MARKER).is_file() else None
        raise ConfigError(f"resume: {value}: not a complete checkpoint or a run folder with one"
                          + (f" ({reason})" if reason else ""))
    for run_dir in _runs_of(recipe.output_dir, recipe.name):
        if read_status(run_dir) == "finished":
            continue  # nothing left to continue; its checkpoints stay usable through an explicit path
        _warn_skipped(run_dir, console)
        found = ckpt.latest_checkpoint(run_dir)
        if found is not None:
            return found
    if value == "auto":
        return None
    raise ConfigError(
        f"resume: true, but no run named {recipe.name!r} under {recipe.output_dir}/ has a complete checkpoint "
        "(use resume: auto to start fresh when there is none)"
    )


def _warn_skipped(run_dir: Path, console: Console) -> None:
    for path, reason in ckpt.broken_newer_checkpoints(run_dir):
        console.print(f"[yellow]warning:[/] skipping checkpoint {path}: {reason}")


def _runs_of(output_dir: str | Path, name: str) -> list[Path]:
    root = Path(output_dir)
    if not root.is_dir():
        return []
    runs = [p for p in root.glob(f"{name}-*") if p.is_dir() and (p / "recipe.yaml").is_file()]
    return sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)


def start_run(recipe: Recipe, console: Console, resume_from: Path | None = None,
              data_files: list[str] | None = None) -> RunContext:
    """Create the run folder (or reuse the resumed one) and write recipe.yaml, manifest.json, status.

    With several processes, process 0 does it and the others get its folder (they wait for it here)."""
    from tuneforge.train.distributed import is_main_process, share_from_main

    main = is_main_process()
    run_dir = None
    if main:
        run_dir = Path(resume_from).parent.parent if resume_from is not None else new_run_dir(recipe.output_dir,
                                                                                            recipe.name)
        dump_recipe(recipe, run_dir / "recipe.yaml")
        (run_dir / STOP_REQUEST).unlink(missing_ok=True)  # the request that stopped it, when resuming
        write_manifest(run_dir, recipe, data_files or [])
        write_status(run_dir, "running")
        (run_dir / "pid").write_text(f"{os.getpid()}@{platform.node()}\n", encoding="utf-8")
    run_dir = Path(share_from_main(str(run_dir) if main else None))
    return RunContext(recipe=recipe, run_dir=run_dir, console=console, resume_from=resume_from, is_main=main)


def write_manifest(run_dir: Path, recipe: Recipe, data_files: list[str]) -> Path:
    import torch

    from tuneforge.train.distributed import describe_batch, process_count

    manifest = {
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "seed": recipe.seed,
        "packages": _package_versions(),
        "data_files": {path: _sha256(path) for path in data_files if Path(path).is_file()},
        "git_commit": _git_commit(),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "torch_threads": torch.get_num_threads(),
        "distributed": describe_batch(recipe, process_count()),  # per-process batch x processes x grad_accum
    }
    path = Path(run_dir) / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return path


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
