"""`tuneforge data prepare [recipe.yaml] [--input FILE ...] [--out DIR] [key=value ...]`: a thin layer over
`tuneforge.data.prepare.prepare_recipe`. Overrides whose first key is not a recipe section are taken as
`data.prepare.` keys, so `dedup.threshold=0.9` and `data.prepare.dedup.threshold=0.9` mean the same."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from tuneforge.ui.console import console, print_warning

def recipe_sections() -> set[str]:
    """The recipe's top-level keys, from the Recipe model itself (a hand-kept list went stale)."""
    from tuneforge.config.recipe import Recipe

    return set(Recipe.model_fields)


def expand_override(item: str, section: str, recipe_keys: set[str]) -> str:
    key = item.partition("=")[0].strip()
    return item if key.split(".")[0] in recipe_keys else f"{section}.{item.strip()}"


def split_recipe_args(args: list[str], section: str = "data.prepare") -> tuple[str | None, list[str]]:
    """The optional recipe file is the first argument without `=`; the rest are overrides, read as keys of
    `section` unless their first key is a recipe section (`tuneforge data synthesize` uses it too)."""
    keys = recipe_sections()
    recipe, overrides = None, []
    for arg in args:
        if "=" in arg:
            overrides.append(expand_override(arg, section, keys))
        elif recipe is None:
            recipe = arg
        else:
            from tuneforge.errors import ConfigError

            raise ConfigError(f"unexpected argument {arg!r}: give one recipe file and key=value overrides")
    return recipe, overrides


def _tokenizer(spec: str | None, recipe_path: str | None, recipe):
    """--tokenizer SPEC, else the recipe's model when a recipe is given, else whitespace words."""
    if spec == "none" or (spec is None and recipe_path is None):
        return None
    from tuneforge.errors import TuneforgeError
    from tuneforge.models import load_tokenizer

    try:
        return load_tokenizer(spec if spec else recipe.model)
    except TuneforgeError as exc:
        if spec:
            raise
        print_warning(f"counting whitespace words: the recipe model's tokenizer did not load ({exc})")
        return None


def prepare_cmd(
    args: List[str] = typer.Argument(None, help="[recipe.yaml] then key=value overrides, e.g. dedup.threshold=0.9"),
    inputs: List[str] = typer.Option([], "--input", "-i", help="data file (repeatable); replaces data.sources"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="output folder (default <output_dir>/<name>-prepared)"),
    tokenizer: Optional[str] = typer.Option(
        None, "--tokenizer", "-t", help="model/tokenizer to count tokens with; 'none' for words "
        "(default: the recipe's model when a recipe is given)"),
) -> None:
    """Normalize, filter, anonymize PII, deduplicate, split and check leakage; writes train/val/test.jsonl,
    quarantine.jsonl, rejected.jsonl, report.json and report.html."""
    from tuneforge.config.recipe import load_recipe
    from tuneforge.data.prepare import prepare_recipe
    from tuneforge.data.prepare.report import print_summary

    recipe_path, overrides = split_recipe_args(list(args or []))
    recipe = load_recipe(recipe_path, overrides)
    tok = _tokenizer(tokenizer, recipe_path, recipe)
    result = prepare_recipe(recipe, Path(out) if out else None, tokenizer=tok, inputs=inputs or None)
    print_summary(result, console)


def register(data_app: typer.Typer) -> None:
    """Add `prepare` to the `data` sub-app."""
    data_app.command("prepare")(prepare_cmd)
