"""Atomic checkpoints: everything needed to continue a run exactly where it stopped.

Layout: <run>/checkpoints/step-0000120/{weights.safetensors, optimizer.pt, scheduler.pt, rng.pt, rng.json,
state.json, COMPLETE}. A checkpoint is written into a temp folder, every file fsynced, the COMPLETE marker
written last, then the folder renamed into place; a killed write leaves only a `.tmp-*` folder, which is
never considered valid and is swept on the next save.

The COMPLETE marker is the checkpoint's own manifest: every other file's name and size. A checkpoint is valid
only when each listed file is there with that size, so one that lost files afterwards (a kill while pruning, a
disk cleaner) is never chosen. Markers from before the manifest (`ok`) require the files every save writes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

MARKER = "COMPLETE"
BEST = "best"


def checkpoint_root(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


_LEGACY_FILES = ("weights.safetensors", "state.json", "rng.json", "rng.pt")


def invalid_reason(path: Path) -> str | None:
    """Why `path` is not a usable checkpoint, or None when it is one."""
    path = Path(path)
    if path.name.startswith(".tmp") or not path.is_dir():
        return "not a checkpoint folder"
    marker = path / MARKER
    if not marker.is_file():
        return f"no {MARKER} marker (its write was interrupted)"
    files = _listed_files(marker)
    if files is None:
        return f"its {MARKER} manifest is unreadable"
    for name, size in files.items():
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            return f"its manifest lists {name!r}, which is not a file name"
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if size is not None and file.stat().st_size != size:
            return f"{name} has {file.stat().st_size} bytes, its manifest says {size}"
    return None


def is_valid(path: Path) -> bool:
    return invalid_reason(path) is None


def _listed_files(marker: Path) -> dict[str, int | None] | None:
    try:
        text = marker.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if text.strip() == "ok":  # written before markers carried the manifest
        return {name: None for name in _LEGACY_FILES}
    try:
        files = json.loads(text)["files"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(files, dict) or not all(isinstance(v, int) for v in files.values()):
        return None
    return files


def _step_folders(run_dir: Path) -> list[Path]:
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if p.is_dir() and p.name.split("-")[1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Valid step checkpoints, oldest first."""
    return [p for p in _step_folders(run_dir) if is_valid(p)]


def broken_newer_checkpoints(run_dir: Path) -> list[tuple[Path, str]]:
    """Step checkpoints that were completed (have a marker) but are no longer valid, newer than the newest
    valid one: what resuming skips, with the reason, so it can say so."""
    broken: list[tuple[Path, str]] = []
    for path in reversed(_step_folders(run_dir)):
        reason = invalid_reason(path)
        if reason is None:
            break
        if (path / MARKER).is_file():
            broken.append((path, reason))
    return broken


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only what training changes (adapters, unfrozen layers); frozen weights come back from the base model."""
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [name for name in state if name not in params]
    if missing:
        raise ValueError(f"checkpoint has weights the model lacks (different method?): {missing[:3]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def capture_rng() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Python and numpy states as JSON, torch states as tensors."""
    py = random.getstate()
    np_state = np.random.get_state()
    as_json = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{i}"] = state
    return as_json, tensors


def restore_rng(as_json: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    py = as_json["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, cached = as_json["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(
    run_dir: Path,
    name: str,
    model: nn.Module,
    state: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    keep_last: int | None = None,
) -> Path:
    """Write checkpoint `name` (e.g. step-0000120 or best) atomically and prune old step checkpoints."""
    from safetensors.torch import save_file

    root = checkpoint_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".tmp-{name}-{os.getpid()}"
    tmp.mkdir()
    save_file(trainable_state(model), str(tmp / "weights.safetensors"))
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    if scheduler is not None:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    rng_json, rng_tensors = capture_rng()
    torch.save(rng_tensors, tmp / "rng.pt")
    _write_text(tmp / "rng.json", json.dumps(rng_json))
    _write_text(tmp / "state.json", json.dumps(state, indent=1))
    for path in tmp.iterdir():
        _fsync_file(path)
    listed = {path.name: path.stat().st_size for path in sorted(tmp.iterdir())}
    _write_text(tmp / MARKER, json.dumps({"files": listed}, indent=1) + "\n")
    _fsync_dir(tmp)
    final = root / name
    if final.exists():
        # Replacing (e.g. `best`): move the old one aside first so a crash never leaves neither.
        old = root / f".tmp-old-{name}-{os.getpid()}"
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
    _fsync_dir(root)
    if keep_last is not None:
        prune(run_dir, keep_last)
    return final


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    restore_random: bool = True,
) -> dict[str, Any]:
    """Load weights (and optimizer, scheduler, RNG when given) from a valid checkpoint; returns its state."""
    from safetensors.torch import load_file

    path = Path(path)
    reason = invalid_reason(path)
    if reason is not None:
        raise ValueError(f"{path}: not a complete checkpoint ({reason})")
    load_trainable_state(model, load_file(str(path / "weights.safetensors")))
    if optimizer is not None and (path / "optimizer.pt").is_file():
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    if scheduler is not None and (path / "scheduler.pt").is_file():
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    if restore_random:
        restore_rng(
            json.loads((path / "rng.json").read_text()), torch.load(path / "rng.pt", weights_only=True)
        )
    return read_state(path)


def read_state(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / "state.json").read_text())


def prune(run_dir: Path, keep_last: int) -> None:
    for old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
