"""New runs from the dashboard: example recipes, pasted YAML, key=value overrides, and validation that
reports exactly what `tuneforge train` would (the same `load_recipe`, the same ConfigError text), plus the
checks the CLI only makes once it is running (data files exist, the method runs here, output_dir allowed).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Iterable

from tuneforge.errors import ConfigError, TuneforgeError

_EXAMPLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.ya?ml$")
_FIELD = re.compile(r"`([^`]+)`")
# pydantic names the union branch it tried (`hparams.learning_rate.float`): the page marks the field itself
MAX_RECIPE_BYTES = 256_000


def list_examples(examples_dir: Path) -> list[dict[str, str]]:
    """The *.yaml recipes directly in examples_dir, each with its leading comment as a description."""
    root = Path(examples_dir)
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.glob("*.y*ml")):
        if _EXAMPLE.match(path.name) and path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            comments = [ln.lstrip("# ").rstrip() for ln in text.splitlines()[:3] if ln.startswith("#")]
            out.append({"name": path.name, "description": " ".join(comments), "text": text})
    return out


def example_path(examples_dir: Path, name: str) -> Path:
    root = Path(examples_dir).resolve()
    path = (root / name).resolve()
    if not _EXAMPLE.match(name or "") or path.parent != root or not path.is_file():
        raise ConfigError(f"example recipe not found: {name!r} (known: "
                          f"{', '.join(e['name'] for e in list_examples(examples_dir)) or 'none'})")
    return path


def save_draft(drafts_dir: Path, text: str) -> Path:
    """A pasted or uploaded recipe as a file, so it is validated and trained exactly like one on disk.
    Named by content: validating the same text twice reuses the file."""
    if len(text.encode("utf-8")) > MAX_RECIPE_BYTES:
        raise ConfigError(f"recipe text over {MAX_RECIPE_BYTES} bytes")
    drafts_dir = Path(drafts_dir)
    drafts_dir.mkdir(parents=True, exist_ok=True)
    path = drafts_dir / f"draft-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}.yaml"
    if not path.is_file():
        path.write_text(text, encoding="utf-8")
    return path


def validate_recipe(path: Path, overrides: Iterable[str], allowed_dirs: list[Path], cwd: Path,
                    origin: str | None = None, read_dirs: Iterable[Path] = ()) -> dict[str, Any]:
    """{ok, message (the CLI's text), problems [{path, message}], recipe_yaml (resolved), name, output_dir}.
    `origin` None means an example recipe: the paths it names itself are trusted (see ui.paths)."""
    from tuneforge.config.recipe import load_recipe, recipe_yaml
    from tuneforge.ui.paths import path_problems, trusted_paths

    overrides = [o for o in (s.strip() for s in overrides) if o]
    try:
        recipe = load_recipe(path, overrides)
    except ConfigError as exc:
        message = str(exc)
        if origin:
            message = message.replace(str(path), origin)
        return {"ok": False, "message": message, "problems": problems_of(message), "overrides": overrides}
    problems = launch_checks(recipe, allowed_dirs, cwd)
    trusted = trusted_paths(load_recipe(path), cwd) if origin is None else set()
    named = {p["path"] for p in problems}  # e.g. a missing data file: said once
    problems += [p for p in path_problems(recipe, cwd, allowed_dirs, [Path(cwd), *read_dirs], trusted)
                 if p["path"] not in named]
    message = ""
    if problems:
        lines = [f"{origin or path}: cannot start this run ({len(problems)} problem(s))"]
        lines += [f"  - `{p['path']}`: {p['message']}" if p["path"] else f"  - {p['message']}" for p in problems]
        message = "\n".join(lines)
    return {"ok": not problems, "message": message, "problems": problems, "recipe_yaml": recipe_yaml(recipe),
            "name": recipe.name, "output_dir": recipe.output_dir, "overrides": overrides}


def problems_of(message: str) -> list[dict[str, Any]]:
    """The `  - ...` lines of a ConfigError as {path, message}; path is the dotted field, or None."""
    lines = [ln[4:] for ln in message.splitlines() if ln.startswith("  - ")]
    if not lines:  # a one-line error: bad YAML, a bad override, a missing file
        lines = [message.split("\n", 1)[0]]
    out = []
    for line in lines:
        found = _FIELD.search(line)
        field = found.group(1) if found else None
        if field and line.startswith("override "):
            field = field.partition("=")[0]
        out.append({"path": field, "message": line})
    return out


def launch_checks(recipe, allowed_dirs: list[Path], cwd: Path) -> list[dict[str, Any]]:
    """What `tuneforge train` would only find out after it started: missing data files, a method this
    machine cannot run, and an output_dir outside the folders the dashboard may write to."""
    from tuneforge.train.methods import check_method_supported

    problems = []
    for i, source in enumerate(recipe.data.sources):
        if source.path and not (cwd / source.path).exists():
            problems.append({"path": f"data.sources.{i}.path", "message": f"data file not found: {source.path}"})
    try:
        check_method_supported(recipe.method)
    except TuneforgeError as exc:
        problems.append({"path": "method", "message": str(exc)})
    out = (cwd / recipe.output_dir).resolve()
    roots = [Path(d).resolve() for d in allowed_dirs]
    if not any(out == r or out.is_relative_to(r) for r in roots):
        first = roots[0] if roots else cwd
        problems.append({"path": "output_dir", "message": (
            f"{recipe.output_dir} is outside the folders this dashboard writes runs to "
            f"({', '.join(str(r) for r in roots)}); override output_dir={first}, or start it with "
            f"`tuneforge ui --allow-dir {out}` to allow that folder")})
    return problems
