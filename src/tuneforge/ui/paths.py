"""Where a recipe launched from the dashboard may write and read: every path-like field resolved (symlinks
and `..` included) and checked against the dashboard's folders before anything starts.

Written: the run folder (`output_dir`/`name`-…) and a `resume` path (a resumed run rewrites its recipe.yaml,
manifest, pid and status) must lie inside the runs folders (--runs-dir, --allow-dir). Read: data files,
dataset_info.json and `model.init_from_run` must lie inside those, the working folder or the examples
folder, unless the example recipe itself names them (an operator's file, e.g. `../../shared/data/...`);
a value changed by an override or pasted text gets no such trust."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

_RESUME_WORDS = ("auto", "true", "yes", "false", "no", "")


def _inside(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def read_fields(recipe) -> list[tuple[str, str]]:
    """(dotted field, value) of every path the run reads."""
    fields = []
    for i, source in enumerate(recipe.data.sources):
        for key in ("path", "dataset_info"):
            value = getattr(source, key)
            if value:
                fields.append((f"data.sources.{i}.{key}", value))
    init = recipe.model.init_from_run
    if init and not _is_run_name(init):
        fields.append(("model.init_from_run", init))
    return fields


def _is_run_name(value: str) -> bool:
    # A bare run name is looked up among the run folders (train.runs.resolve_run), not used as a path.
    return "/" not in value and "\\" not in value and value not in (".", "..")


def path_problems(recipe, cwd: Path, write_roots: list[Path], read_roots: list[Path],
                  trusted: set[str] = frozenset()) -> list[dict[str, Any]]:
    """{path, message} for each path-like field that leaves the folders it may use."""
    cwd = Path(cwd)
    write_roots = [Path(r).resolve() for r in write_roots]
    read_roots = [Path(r).resolve() for r in read_roots] + write_roots
    problems = []
    run_dir = (cwd / recipe.output_dir / f"{recipe.name}-x").resolve()
    if _inside((cwd / recipe.output_dir).resolve(), write_roots) and not _inside(run_dir, write_roots):
        problems.append({"path": "name", "message": f"{recipe.name!r} puts the run folder outside "
                                                    f"{recipe.output_dir}"})
    resume = recipe.resume
    if isinstance(resume, str) and resume.strip().lower() not in _RESUME_WORDS:
        if not _inside((cwd / resume).resolve(), write_roots):
            problems.append({"path": "resume", "message": (
                f"{resume} is outside the runs folders ({', '.join(map(str, write_roots))}): a resumed run "
                "rewrites its folder, so only runs in those folders can be resumed from here")})
    for field, value in read_fields(recipe):
        where = (cwd / value).resolve()
        if str(where) in trusted or _inside(where, read_roots):
            continue
        problems.append({"path": field, "message": (
            f"{value} is outside the folders this dashboard reads from ({', '.join(map(str, read_roots))}); "
            f"start it with `tuneforge ui --allow-dir {where.parent}` to allow that folder")})
    return problems


def trusted_paths(recipe, cwd: Path) -> set[str]:
    """The resolved read paths an example recipe names itself."""
    return {str((Path(cwd) / value).resolve()) for _, value in read_fields(recipe)}
