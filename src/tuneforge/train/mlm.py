"""Masked-language-model continued pretraining (`method.objective: mlm`) of an encoder (BERT family) on raw
domain text, through HF's Trainer with `DataCollatorForLanguageModeling`; LoRA / full / freeze as elsewhere.

Data: raw-text records (`.txt` files, `{"text": ...}` rows); documents are split train/val/test first (no
document straddles two splits), then tokenized, joined with [SEP] and cut into `cutoff_len` blocks that each
start with [CLS] (capped at the model's position limit). `data.min_examples` counts training blocks.

Measured: masked-token loss, perplexity and top-1 accuracy on the test split (validation when there is none)
before and after training, with the held-out masks drawn once (seeded), so both use the same masks.

Checkpoints without MLM weights (the embedded all-MiniLM-L6-v2 is one: a sentence-transformers encoder) get
a fresh head: a new transform layer (dense + LayerNorm), the decoder tied to the input embeddings, and an
output bias started at the training text's log unigram frequencies (`init_head_bias`), so the "before"
model is "this encoder + a head that knows word frequencies". The fresh layers always train (with LoRA as
peft modules_to_save; the bias then stays at its start). The run says so in its warnings; compare against a
head-only run (`method.type: freeze`, `method.freeze.trainable_last_n: 0`) to see what the encoder gained.

Options (`method.options`): mlm_probability (0.15), whole_word_mask (false), init_head_bias (true).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.config.recipe import Recipe
from tuneforge.data.formats import RowProblem
from tuneforge.data.records import Record, Text
from tuneforge.errors import DataError
from tuneforge.train import encoders
from tuneforge.train.runfolder import RunContext, RunResult

DECODER_HINT = ("For continued pretraining of a decoder on raw text use method.objective: pretrain "
                "(causal next-token loss on the same data).")


class MLMOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mlm_probability: float = Field(0.15, gt=0, lt=1, description="share of tokens masked")
    whole_word_mask: bool = Field(False, description="mask all pieces of a word together (fast tokenizers)")
    init_head_bias: bool = Field(True, description="a fresh head's output bias starts at log unigram frequencies")


def run(recipe: Recipe, run_ctx: RunContext) -> RunResult:
    from tuneforge.train.preference import run_trainer

    return run_trainer(recipe, run_ctx, train_mlm)


def train_mlm(recipe: Recipe, run: RunContext) -> dict[str, Any]:
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments, set_seed

    from tuneforge.train.preference import common

    opts, splits, rejected = encoders.begin(recipe, MLMOptions, _as_text, DECODER_HINT)
    set_seed(recipe.seed)  # the fresh head's initialisation, so a resumed run continues the same model
    model, tokenizer, fresh = load_masked_lm(recipe)
    block = encoders.max_tokens(recipe, tokenizer, model)
    blocks = {name: pack(tokenizer, splits[name], block, opts.whole_word_mask) for name in ("train", "val", "test")}
    encoders.check_usable(len(blocks["train"]["input_ids"]), len(blocks["val"]["input_ids"]), recipe, rejected, run)
    recipe, chosen = common.resolve_hparams(recipe, len(blocks["train"]["input_ids"]))
    warnings = []
    if fresh:
        if opts.init_head_bias:
            unigram_bias(model, blocks["train"])
        warnings.append(f"{recipe.model.name_or_path} has no MLM head weights: the head ({', '.join(fresh)}) is "
                        "freshly initialised and trains with the run; before/after measures head + encoder "
                        "together (a head-only run, method.type=freeze with trainable_last_n=0, separates them)")
    model = encoders.prepare_model(model, tokenizer, recipe, task_type=None, within=model.base_model_prefix,
                                   head=fresh, head_params=[model.get_output_embeddings().bias] if fresh else [])
    masker = DataCollatorForLanguageModeling(tokenizer, mlm_probability=opts.mlm_probability,
                                             whole_word_mask=opts.whole_word_mask)
    fixed = {name: mask_once(tokenizer, blocks[name], opts, recipe.seed) for name in ("val", "test")}
    held_name = "test" if len(fixed["test"]) else "val"
    before = masked_lm_score(model, fixed[held_name], recipe.hparams.batch_size) if len(fixed[held_name]) else {}

    has_val = len(fixed["val"]) > 0
    stop_args, stop_callbacks = common.early_stopping(recipe, has_val)
    args = common.trainer_args(TrainingArguments, recipe, run, has_val, remove_unused_columns=False,
                               label_names=["labels"], **stop_args)
    trainer = Trainer(model=model, args=args, train_dataset=_dataset(blocks["train"]),
                      eval_dataset=fixed["val"] if has_val else None, data_collator=_collate(masker),
                      callbacks=stop_callbacks)
    common.per_batch_mean_loss(trainer)
    common.quiet_trainer(trainer)
    trainer.add_callback(common.monitor_callback(run))
    output = trainer.train(resume_from_checkpoint=common.resume_checkpoint(recipe, run))

    after = masked_lm_score(trainer.model, fixed[held_name], recipe.hparams.batch_size) if before else {}
    val_loss = trainer.evaluate().get("eval_loss") if has_val else None
    final = encoders.save_final(trainer.model, tokenizer, run)
    if before:
        run.console.print(f"held-out ({held_name}) masked-token perplexity {before['perplexity']:.2f} -> "
                          f"{after['perplexity']:.2f} ({after['masked_tokens']} masked tokens)")
    for warning in warnings:
        run.console.print(f"[yellow]warning:[/yellow] {warning}")
    return {
        "objective": "mlm", "block_size": block, "fresh_head": fresh, "warnings": warnings,
        "train_documents": len(splits.train), "val_documents": len(splits.val), "test_documents": len(splits.test),
        "train_blocks": len(blocks["train"]["input_ids"]), "held_out": held_name,
        "held_out_blocks": len(fixed[held_name]), "rejected": len(rejected),
        "before": before, "after": after, "train_loss": float(output.training_loss),
        "steps": int(output.global_step), "val_loss": val_loss, "auto": chosen, "final_dir": str(final),
        "rejected_rows": rejected, "recipe": recipe,
        "stopped": trainer.state.global_step < trainer.state.max_steps and not encoders.stopped_early(stop_callbacks),
    }


def _as_text(record: Record) -> Text:
    if isinstance(record, Text):
        return record
    raise RowProblem("wrong_type", "text", f"expected raw text for objective=mlm, got a {type(record).__name__} "
                     "record; give .txt files or {\"text\": ...} rows (format: text)")


def load_masked_lm(recipe: Recipe):
    """(model, tokenizer, fresh head layers): AutoModelForMaskedLM on the base or init_from_run folder; the
    fresh layers are those of the head the checkpoint holds no weights for (none: a pretrained MLM head)."""
    from tuneforge.models import hf_folder, load_model
    from tuneforge.train.preference.common import full_model_spec

    spec = full_model_spec(recipe)
    model, tokenizer = load_model(spec, head="masked_lm")
    if tokenizer.mask_token is None:
        raise DataError(f"{spec.name_or_path}: the tokenizer has no mask token; objective=mlm needs one")
    saved = checkpoint_keys(hf_folder(spec))
    prefix = model.base_model_prefix + "."
    output = model.get_output_embeddings()
    fresh = [name for name, module in model.named_modules()
             if name and not name.startswith(prefix) and module is not output and not list(module.children())
             and any(f"{name}.{p}" not in saved for p, _ in module.named_parameters(recurse=False))]
    return model, tokenizer, fresh if saved else []


def checkpoint_keys(folder) -> set[str]:
    """Tensor names in the folder's safetensors files (empty for pickle-only folders: not checked)."""
    from safetensors import safe_open

    keys: set[str] = set()
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), "pt") as fh:
            keys.update(fh.keys())
    return keys


def pack(tokenizer, docs: list[Text], block: int, offsets: bool) -> dict[str, list]:
    """Documents joined with [SEP] and cut into `block`-token rows starting with [CLS]; the last row padded.
    With `offsets` the character offsets travel along (whole-word masking finds word starts from them)."""
    if offsets and not tokenizer.is_fast:
        raise DataError("method.options.whole_word_mask needs a fast tokenizer (character offsets)")
    enc = tokenizer([d.text for d in docs], add_special_tokens=False, return_offsets_mapping=offsets,
                    verbose=False) if docs else {"input_ids": [], "offset_mapping": []}
    ids: list[int] = []
    spans: list[tuple[int, int]] = []
    for i, seq in enumerate(enc["input_ids"]):
        ids += seq + [tokenizer.sep_token_id]
        if offsets:
            spans += [tuple(o) for o in enc["offset_mapping"][i]] + [(0, 0)]
    rows: dict[str, list] = {"input_ids": [], "attention_mask": [], "special_tokens_mask": []}
    if offsets:
        rows["offset_mapping"] = []
    body, special = block - 1, {tokenizer.cls_token_id, tokenizer.sep_token_id}
    for start in range(0, len(ids), body):
        chunk = [tokenizer.cls_token_id] + ids[start:start + body]
        pad = block - len(chunk)
        rows["input_ids"].append(chunk + [tokenizer.pad_token_id] * pad)
        rows["attention_mask"].append([1] * len(chunk) + [0] * pad)
        rows["special_tokens_mask"].append([int(t in special) for t in chunk] + [1] * pad)
        if offsets:
            rows["offset_mapping"].append([(0, 0)] + spans[start:start + body] + [(0, 0)] * pad)
    return rows


def unigram_bias(model, train_blocks: dict[str, list]) -> None:
    """Start a fresh output bias at log p(token) of the training text (add-one smoothed): without it a new
    head starts near-uniform over the vocabulary and the first steps only learn word frequencies."""
    import torch

    bias = model.get_output_embeddings().bias
    ids = torch.tensor(train_blocks["input_ids"]).flatten()
    keep = torch.tensor(train_blocks["special_tokens_mask"]).flatten() == 0
    counts = torch.bincount(ids[keep], minlength=bias.numel()).double() + 1.0
    with torch.no_grad():
        bias.copy_((counts / counts.sum()).log().to(bias.dtype))


def mask_once(tokenizer, rows: dict[str, list], opts: MLMOptions, seed: int):
    """Held-out blocks masked once with a seeded generator: every evaluation (before, during, after) scores
    the same masked positions."""
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling

    if not rows["input_ids"]:
        return Dataset.from_dict({"input_ids": [], "attention_mask": [], "labels": []})
    masker = DataCollatorForLanguageModeling(tokenizer, mlm_probability=opts.mlm_probability,
                                             whole_word_mask=opts.whole_word_mask, seed=seed)
    features = [{k: rows[k][i] for k in rows} for i in range(len(rows["input_ids"]))]
    batch = masker(features)
    return Dataset.from_dict({"input_ids": batch["input_ids"].tolist(), "attention_mask": rows["attention_mask"],
                              "labels": batch["labels"].tolist()})


def _dataset(rows: dict[str, list]):
    from datasets import Dataset

    return Dataset.from_dict(rows)


def _collate(masker):
    """Training blocks are masked afresh each time; held-out blocks arrive masked (they carry labels)."""
    from transformers import default_data_collator

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        if "labels" in features[0]:
            return default_data_collator(features)
        return masker(features)

    return collate


def masked_lm_score(model, rows, batch_size: int) -> dict[str, float]:
    """Token-weighted masked-token loss (HF's eval_loss averages per batch), perplexity, top-1 accuracy."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total = correct = count = 0.0
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            labels = torch.tensor(batch["labels"], device=device)
            logits = model(input_ids=torch.tensor(batch["input_ids"], device=device),
                           attention_mask=torch.tensor(batch["attention_mask"], device=device)).logits
            chosen = labels != -100
            total += F.cross_entropy(logits[chosen].float(), labels[chosen], reduction="sum").item()
            correct += (logits[chosen].argmax(-1) == labels[chosen]).sum().item()
            count += int(chosen.sum())
    model.train(was_training)
    loss = total / max(count, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "accuracy": correct / max(count, 1),
            "masked_tokens": int(count)}
