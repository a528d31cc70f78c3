"""Recipe loading: YAML + `key.sub=value` overrides -> validated `Recipe`, with errors a person can act on."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from tuneforge.config.base import Section
from tuneforge.config.distributed import DistributedConfig
from tuneforge.config.search import SearchConfig
from tuneforge.config.sections import DataConfig, EvalConfig, HParams, MethodConfig, ModelConfig
from tuneforge.config.synthesize import SynthesizeConfig
from tuneforge.errors import ConfigError


class Recipe(Section):
    """Everything a run needs; written next to every output as `recipe.yaml` so it can be reproduced."""

    name: str = Field("run", description="run name; the run folder is <output_dir>/<name>-<timestamp>")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    hparams: HParams = Field(default_factory=HParams)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    output_dir: str = "runs"
    seed: int = Field(42, ge=0, lt=2**32, description="random seed (numpy accepts 0 .. 2**32-1)")
    resume: bool | str = Field(False, description="false, true/auto (newest checkpoint), or a path")
    distributed: DistributedConfig = Field(
        default_factory=DistributedConfig, description="how several processes share the run (one: ignored)")
    search: SearchConfig = Field(default_factory=SearchConfig, description="used by `tuneforge search` only")
    synthesize: SynthesizeConfig = Field(
        default_factory=SynthesizeConfig, description="used by `tuneforge data synthesize` only")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        # The run folder is <output_dir>/<name>-<stamp>: a separator or `..` would put it somewhere else.
        if not value or "/" in value or "\\" in value or value.startswith(".") or any(ord(c) < 32 for c in value):
            raise ValueError("a run name is a plain folder name: no `/`, `\\`, leading `.` or control characters")
        return value


def load_recipe(path: str | Path | None, overrides: Iterable[str] = ()) -> Recipe:
    """Read a recipe YAML (or start from defaults when `path` is None) and apply overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
        base_dir = Path(path).resolve().parent
        _resolve_relative_paths(raw, base_dir)
    for item in overrides:
        apply_override(raw, item)
    return parse_recipe(raw, origin=str(path) if path else "<overrides>")


def parse_recipe(raw: dict[str, Any], origin: str = "<recipe>") -> Recipe:
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, Recipe, origin)) from None


def dump_recipe(recipe: Recipe, path: str | Path) -> Path:
    """Write the resolved recipe (all defaults filled in) as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(recipe_yaml(recipe), encoding="utf-8")
    return path


def recipe_yaml(recipe: Recipe) -> str:
    """The resolved recipe (all defaults filled in) as YAML text."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    return data


def _resolve_relative_paths(raw: dict[str, Any], base_dir: Path) -> None:
    """Input paths in a recipe (data sources, synthesis seeds) are relative to the recipe file, so recipes
    work from any directory; a path that exists only as given (relative to the working directory) stays."""
    data = raw.get("data")
    sources = data if isinstance(data, list) else (data or {}).get("sources", []) if isinstance(data, dict) else []
    holders = [(src, ("path", "dataset_info")) for src in (sources if isinstance(sources, list) else [])]
    holders.append((raw.get("synthesize"), ("seeds",)))
    holders.append((raw.get("distributed"), ("accelerate_config",)))
    for holder, keys in holders:
        if not isinstance(holder, dict):
            continue
        for key in keys:
            value = holder.get(key)
            if isinstance(value, str) and not Path(value).is_absolute():
                candidate = base_dir / value
                if candidate.exists() or not Path(value).exists():
                    holder[key] = str(candidate)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply `a.b.c=value` (value parsed as YAML; list items addressed by index, e.g. data.0.path)."""
    if "=" not in item:
        raise ConfigError(f"override `{item}`: expected key.sub=value")
    key, _, text = item.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override `{item}`: empty key")
    if parts[0] == "data" and len(parts) > 1 and parts[1].isdigit():
        parts.insert(1, "sources")  # data.0.path is shorthand for data.sources.0.path
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    if isinstance(value, str):
        value = _scientific(value)
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            node = _list_slot(node, part, item)
            continue
        if part == "data" and isinstance(node.get("data"), list):
            node["data"] = {"sources": node["data"]}
        if part not in node or node[part] is None:
            node[part] = [] if nxt.isdigit() else {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        idx = int(last) if last.isdigit() else None
        if idx is None:
            raise ConfigError(f"override `{item}`: `{last}` must be a list index")
        while len(node) <= idx:
            node.append({})
        node[idx] = value
    else:
        node[last] = value


def _scientific(text: str) -> Any:
    """YAML 1.1 reads `1e-4` as a string; on the command line everyone means the number."""
    try:
        return float(text) if any(c in text.lower() for c in "e.") and text.strip() == text else text
    except ValueError:
        return text


def _list_slot(node: list, part: str, item: str) -> Any:
    if not part.isdigit():
        raise ConfigError(f"override `{item}`: `{part}` must be a list index")
    idx = int(part)
    while len(node) <= idx:
        node.append({})
    return node[idx]


def format_validation_error(exc: ValidationError, model: type[BaseModel], origin: str) -> str:
    lines = [f"{origin}: invalid recipe ({exc.error_count()} problem(s))"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        while loc and _UNION_TAG.fullmatch(loc[-1]):  # pydantic names the union branch it tried: not a key
            loc.pop()
        dotted = ".".join(loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _fields_at(model, loc[:-1])
            hint = _closest(loc[-1], allowed)
            msg = f"unknown key `{dotted}`"
            if hint:
                msg += f"; did you mean `{hint}`?"
            if allowed:
                msg += f" (allowed: {', '.join(sorted(allowed))})"
        elif kind in ("literal_error", "enum"):
            expected = err.get("ctx", {}).get("expected", "")
            got = err.get("input")
            hint = _closest(str(got), _literal_choices(expected))
            msg = f"`{dotted}`: got {got!r}; allowed: {expected}"
            if hint:
                msg += f"; did you mean {hint!r}?"
        else:
            msg = f"`{dotted}`: {err['msg']} (got {err.get('input')!r})"
        lines.append("  - " + msg)
    return "\n".join(lines)


_UNION_TAG = re.compile(r"float|int|str|bool|none|(literal|list|dict)\[.*\]")


def _literal_choices(expected: str) -> list[str]:
    return [c.strip(" '\"") for c in expected.replace(" or ", ",").split(",") if c.strip(" '\"")]


def _closest(word: str, choices: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _fields_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    """Field names of the section at `loc` (skipping list indices), for did-you-mean hints."""
    current: Any = model
    for part in loc:
        if part.isdigit():
            continue
        if part == "sources" and current is DataConfig:
            from tuneforge.config.sections import DataSource

            current = DataSource
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _section_type(field.annotation)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}).keys())


def _section_type(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _section_type(arg)
        if found is not None:
            return found
    return None
