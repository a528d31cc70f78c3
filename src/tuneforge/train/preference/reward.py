"""Reward model: a sequence-classification head (one score) on the base model, trained with TRL's
RewardTrainer (pairwise loss -log sigmoid(r_chosen - r_rejected)); reports pairwise accuracy on validation.

For a decoder the head scores the last non-padding token; for an encoder, the pooled [CLS] output. The
GGUF-derived SmolLM2 loads as LlamaForSequenceClassification from its converted HF folder (the backbone
weights load, the `score` head starts fresh).
"""

from __future__ import annotations

from typing import Any

import torch

from tuneforge.config.recipe import Recipe
from tuneforge.train.preference import common
from tuneforge.train.preference.data import (
    fit_pair,
    load_preference_data,
    paired_rows,
    plain_paired_rows,
    plain_prompt,
    to_dataset,
)
from tuneforge.train.runfolder import RunContext

def train_reward(recipe: Recipe, run: RunContext) -> dict[str, Any]:
    from trl import RewardConfig, RewardTrainer

    data = load_preference_data(recipe)
    recipe, chosen = common.resolve_hparams(recipe, len(data.train))
    model, tokenizer = common.load_sequence_classifier(recipe, num_labels=1)
    # Encoders (BERT-style) have no chat template: they read plain "prompt\nanswer" text.
    rows = paired_rows if getattr(tokenizer, "chat_template", None) else plain_paired_rows
    cutoff = recipe.hparams.cutoff_len
    data.train = [fit_pair(r, tokenizer, cutoff) for r in data.train]
    data.val = [fit_pair(r, tokenizer, cutoff) for r in data.val]
    val = to_dataset(rows(data.val))
    center = recipe.method.options.get("center_rewards_coefficient")
    # TRL appends an end token to every text; BERT-style tokenizers have none, their [SEP] plays that role.
    eos = None if tokenizer.eos_token is not None else tokenizer.sep_token
    args = common.trl_args(RewardConfig, recipe, run, val is not None, eos_token=eos,
                           center_rewards_coefficient=float(center) if center is not None else None)
    trainer = RewardTrainer(model=model, args=args, processing_class=tokenizer,
                            train_dataset=to_dataset(rows(data.train)), eval_dataset=val)
    common.quiet_trainer(trainer)
    trainer.add_callback(common.monitor_callback(run))
    output = trainer.train(resume_from_checkpoint=common.resume_checkpoint(recipe, run))
    after = trainer.evaluate() if val is not None else {}
    final = common.save_final(trainer, tokenizer, run)
    return {
        "objective": "reward",
        "train_examples": len(data.train), "val_examples": len(data.val), "rejected": len(data.rejected),
        # Pairs are shortened to fit cutoff_len first (fit_pair); TRL drops any that still do not fit.
        "train_pairs_within_cutoff": len(trainer.train_dataset),
        "val_pairs_within_cutoff": len(trainer.eval_dataset) if val is not None else 0,
        "train_loss": float(output.training_loss), "steps": int(output.global_step),
        "val_pairwise_accuracy_after": after.get("eval_accuracy"),
        "val_margin_after": after.get("eval_margin"),
        "val_loss": after.get("eval_loss"),
        "auto": chosen, "final_dir": str(final), "rejected_rows": data.rejected, "recipe": recipe,
        "stopped": trainer.state.global_step < trainer.state.max_steps,
    }


def reward_texts(tokenizer, messages: list[list[dict[str, str]]], completions: list[str]) -> list[str]:
    """prompt + completion the way the reward model saw its training pairs."""
    if getattr(tokenizer, "chat_template", None):
        return [tokenizer.apply_chat_template(m + [{"role": "assistant", "content": c}], tokenize=False)
                for m, c in zip(messages, completions)]
    return [plain_prompt(m) + c for m, c in zip(messages, completions)]


@torch.no_grad()
def score_texts(model, tokenizer, texts: list[str], max_length: int = 512, batch_size: int = 8) -> list[float]:
    """Scalar rewards for already-rendered texts (used by PPO with a trained reward model)."""
    model.eval()
    out: list[float] = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True, truncation=True,
                        max_length=max_length, add_special_tokens=False)
        device = next(model.parameters()).device
        logits = model(**{k: v.to(device) for k, v in enc.items()}).logits
        out.extend(float(v) for v in logits[:, 0])
    return out
