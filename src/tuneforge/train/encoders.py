"""What the encoder objectives (`mlm`, `contrastive`) share: option parsing, the encoder check, reading and
splitting the data with rejected rows kept, the recipe's method on an encoder with a head, the final save.

The final model is always a full one: a LoRA run is merged into its base (the adapter is kept in
`<run>/final/adapter/`), so `<run>/final` loads with `tuneforge.models.load_model`, as a sentence-transformers
model (contrastive), and as the starting point of the next run (`model.name_or_path` or `init_from_run`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

from pydantic import BaseModel

from tuneforge.config.recipe import Recipe
from tuneforge.data.issues import RowIssue
from tuneforge.data.records import Record
from tuneforge.errors import ConfigError
from tuneforge.train.methods import method_options
from tuneforge.train.runfolder import RunContext

ENCODER_METHODS = ("lora", "full", "freeze")
O = TypeVar("O", bound=BaseModel)


def require_encoder(recipe: Recipe, alternative: str) -> None:
    """Refuse a decoder before loading any weights; `alternative` names what to use instead."""
    from tuneforge.models.loader import model_kind, resolve_model
    from tuneforge.train.preference.common import full_model_spec

    spec = full_model_spec(recipe)
    resolved = resolve_model(spec)
    if resolved.alias is not None:
        kind = resolved.alias.kind
    else:
        kind = "decoder" if resolved.kind == "gguf" else model_kind(resolved.path)
    if kind == "decoder":
        raise ConfigError(f"method.objective={recipe.method.objective} needs an encoder (BERT family, e.g. minilm-l6); "
                          f"model {spec.name_or_path} is a decoder. {alternative}")


def check_method(recipe: Recipe) -> None:
    if recipe.method.type not in ENCODER_METHODS:
        raise ConfigError(f"method.type={recipe.method.type}: objective={recipe.method.objective} supports "
                          f"{', '.join(ENCODER_METHODS)}" + ("; on a CPU use lora" if recipe.method.type == "qlora" else ""))


def begin(recipe: Recipe, options: type[O], convert: Callable[[Record], Record], decoder_hint: str):
    """The setup both encoder recipes open with, checks before any weights load: (options, Splits, rejected)."""
    opts = method_options(recipe.method, options)
    check_method(recipe)
    require_encoder(recipe, decoder_hint)
    splits, rejected = read_splits(recipe, convert)
    return opts, splits, rejected


def check_usable(n_train: int, n_val: int, recipe: Recipe, rejected: list[RowIssue], run: RunContext) -> None:
    """preflight's check, the rejected rows filed in the run folder (the run does not get to file them)."""
    from tuneforge.train.preflight import check_usable as check

    check(n_train, n_val, recipe, rejected, rejected_path=run.run_dir / "rejected.jsonl")


def max_tokens(recipe: Recipe, tokenizer, model) -> int:
    """Tokens per sequence: hparams.cutoff_len, capped by the model's positions and the tokenizer's limit."""
    limits = [recipe.hparams.cutoff_len, getattr(model.config, "max_position_embeddings", 512)]
    if 0 < (tokenizer.model_max_length or 0) < 1_000_000:
        limits.append(tokenizer.model_max_length)
    return min(limits)


def read_splits(recipe: Recipe, convert: Callable[[Record], Record]):
    """Every source read and `convert`ed (a RowProblem rejects the record with its reason), then split by
    the sources' `split:` and the recipe's ratios (seeded). Returns (Splits, rejected RowIssues)."""
    from tuneforge.data import read_data
    from tuneforge.data.formats import RowProblem
    from tuneforge.data.io import clip
    from tuneforge.train.preflight import split_records

    results = read_data(recipe.data)
    rejected: list[RowIssue] = []
    for result in results:
        rejected += result.rejected
        kept = []
        for record in result.records:
            try:
                kept.append(convert(record))
            except RowProblem as problem:
                rejected.append(RowIssue.of_record(record, result.source, problem.code, problem.field,
                                                   problem.message, clip(repr(record))))
        result.records = kept
    splits = split_records(results, recipe.data.sources, recipe.data.val_ratio, recipe.data.test_ratio, recipe.seed)
    return splits, rejected


def prepare_model(model, tokenizer, recipe: Recipe, *, task_type: str | None, within: str | None = None,
                  head: list[str] = (), head_params: list[Any] = ()):
    """The recipe's method on an encoder. `head`: module names of a freshly initialised head, trained in
    full whatever the method (LoRA: peft's modules_to_save); `head_params`: loose head parameters (an output
    bias) trained with full/freeze. LoRA adapts only linear layers under `within` when given."""
    from tuneforge.train.methods import apply_dropout_overrides, apply_method, lora_adapter

    if recipe.method.type == "lora":
        apply_dropout_overrides(model, recipe.hparams)
        return lora_adapter(model, recipe.method, task_type=task_type, within=within, modules_to_save=list(head))
    model = apply_method(model, tokenizer, recipe.method, recipe.hparams)
    modules = dict(model.named_modules())
    for param in [p for name in head for p in modules[name].parameters()] + list(head_params):
        param.requires_grad_(True)  # a fresh head must always learn
    return model


def save_final(model, tokenizer, run: RunContext) -> Path:
    """Full weights + tokenizer in <run>/final; a LoRA adapter is saved to final/adapter/, then merged."""
    from tuneforge.train.methods import is_adapter_model

    final = run.final_dir
    if is_adapter_model(model):
        model.save_pretrained(str(final / "adapter"))
        model = model.merge_and_unload()
    model.save_pretrained(str(final))
    tokenizer.save_pretrained(str(final))
    return final


def stopped_early(callbacks: list[Any]) -> bool:
    """Whether HF's EarlyStoppingCallback ended training (a finished run, not a `stopped` one)."""
    return any(getattr(cb, "early_stopping_patience_counter", 0) >= getattr(cb, "early_stopping_patience", 1e9)
               for cb in callbacks)
