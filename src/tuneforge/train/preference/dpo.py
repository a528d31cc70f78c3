"""DPO, ORPO and KTO on TRL's trainers, plus the before/after preference accuracy on held-out pairs.

Recipe knobs (`method.options`): beta (0.1), loss_type ("sigmoid" | "ipo" | any TRL DPO loss), label_smoothing;
KTO: desirable_weight / undesirable_weight (balance unequal numbers of thumbs up and down).
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from typing import Any

import torch

from tuneforge.config.recipe import Recipe
from tuneforge.data.records import Conversation, Preference, Turn
from tuneforge.errors import ConfigError
from tuneforge.train.preference import common
from tuneforge.train.preference.data import (
    PreferenceData,
    fit_pair,
    load_preference_data,
    paired_rows,
    to_dataset,
    unpaired_rows,
)
from tuneforge.train.runfolder import RunContext

DPO_OPTIONS = {"beta", "loss_type", "label_smoothing"}
ORPO_OPTIONS = {"beta"}
KTO_OPTIONS = {"beta", "desirable_weight", "undesirable_weight"}


def train_dpo_family(recipe: Recipe, run: RunContext) -> dict[str, Any]:
    """Train `dpo`, `orpo` or `kto` and return the summary metrics (also written to metrics.jsonl)."""
    objective = recipe.method.objective
    data = load_preference_data(recipe, unpaired_ok=objective == "kto")
    recipe, chosen = common.resolve_hparams(recipe, len(data.train))
    model, tokenizer = common.load_policy(recipe)
    cutoff = recipe.hparams.cutoff_len
    data.train = [_fit(r, tokenizer, cutoff) for r in data.train]
    data.val = [_fit(r, tokenizer, cutoff) for r in data.val]
    pairs_val = [r for r in data.val if isinstance(r, Preference)]
    before = preference_accuracy(model, tokenizer, pairs_val, cutoff, recipe.eval.batch_size)
    trainer = _build_trainer(objective, recipe, run, model, tokenizer, data)
    common.quiet_trainer(trainer)
    trainer.add_callback(common.monitor_callback(run))
    output = trainer.train(resume_from_checkpoint=common.resume_checkpoint(recipe, run))
    after = preference_accuracy(trainer.model, tokenizer, pairs_val, cutoff, recipe.eval.batch_size)
    final = common.save_final(trainer, tokenizer, run)
    return {
        "objective": objective,
        "train_examples": len(data.train), "val_examples": len(data.val), "rejected": len(data.rejected),
        "train_loss": float(output.training_loss), "steps": int(output.global_step),
        "val_pref_accuracy_before": before.get("accuracy"), "val_pref_accuracy_after": after.get("accuracy"),
        "val_logp_margin_before": before.get("margin"), "val_logp_margin_after": after.get("margin"),
        "val_median_margin_before": before.get("median_margin"),
        "val_median_margin_after": after.get("median_margin"),
        # The reference is the model before training (base, SFT adapter or a frozen copy), so DPO's implicit
        # reward beta*(margin_policy - margin_ref) is positive exactly where the held-out margin grew.
        "val_implicit_reward_accuracy": _grew(before, after),
        "auto": chosen, "final_dir": str(final), "rejected_rows": data.rejected, "recipe": recipe,
        "stopped": trainer.state.global_step < trainer.state.max_steps,
    }


def _build_trainer(objective: str, recipe: Recipe, run: RunContext, model, tokenizer, data: PreferenceData):
    options = dict(recipe.method.options)
    if objective == "dpo":
        from trl import DPOConfig, DPOTrainer

        _check_options(options, DPO_OPTIONS, objective)
        loss = options.get("loss_type", "sigmoid")
        args = common.trl_args(DPOConfig, recipe, run, bool(data.val), beta=float(options.get("beta", 0.1)),
                               loss_type=[loss] if isinstance(loss, str) else list(loss),
                               label_smoothing=float(options.get("label_smoothing", 0.0)))
        return DPOTrainer(model=model, ref_model=_reference(model), args=args, processing_class=tokenizer,
                          train_dataset=to_dataset(paired_rows(data.train)),
                          eval_dataset=to_dataset(paired_rows(data.val)))
    if objective == "orpo":
        # ORPO lives in trl.experimental in TRL 1.x; it needs no reference model (odds-ratio term on the policy).
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        _check_options(options, ORPO_OPTIONS, objective)
        args = common.trl_args(ORPOConfig, recipe, run, bool(data.val), beta=float(options.get("beta", 0.1)))
        return ORPOTrainer(model=model, args=args, processing_class=tokenizer,
                           train_dataset=to_dataset(paired_rows(data.train)),
                           eval_dataset=to_dataset(paired_rows(data.val)))
    from trl import KTOConfig, KTOTrainer

    _check_options(options, KTO_OPTIONS, objective)
    args = common.trl_args(KTOConfig, recipe, run, bool(data.val), beta=float(options.get("beta", 0.1)),
                           desirable_weight=float(options.get("desirable_weight", 1.0)),
                           undesirable_weight=float(options.get("undesirable_weight", 1.0)))
    return KTOTrainer(model=model, ref_model=_reference(model), args=args, processing_class=tokenizer,
                      train_dataset=to_dataset(unpaired_rows(data.train)),
                      eval_dataset=to_dataset(unpaired_rows(data.val)))


def _fit(record, tokenizer, cutoff_len: int):
    """Pairs shortened to the window (the same text is trained and scored); unpaired KTO rows as they are."""
    return fit_pair(record, tokenizer, cutoff_len) if isinstance(record, Preference) else record


def _reference(model):
    """A frozen copy for full/freeze training; with LoRA, TRL uses the adapter-free (or copied) model."""
    if common.is_peft(model):
        return None
    return common.frozen_copy(model)


def _check_options(options: dict[str, Any], allowed: set[str], objective: str) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"method.options: {unknown} do not apply to objective={objective}; "
                          f"allowed: {', '.join(sorted(allowed))}")


def _answer_only(prompt: Conversation, answer: str) -> Conversation:
    """prompt + answer with only the answer trained, so the score is log p(answer | prompt)."""
    turns = [replace(t, train=False) for t in prompt.turns]
    return Conversation(turns + [Turn("assistant", answer, train=True)], prompt.system, prompt.tools)


def preference_accuracy(model, tokenizer, pairs: list[Preference], cutoff_len: int,
                        batch_size: int = 8) -> dict[str, float]:
    """Share of held-out pairs where log p(chosen) > log p(rejected), and the mean and median log-prob
    margin (the mean alone is ruled by a few pairs with very different answer lengths)."""
    if not pairs:
        return {}
    from tuneforge.data.render import render_conversation
    from tuneforge.evaluate.likelihood import token_stats

    rendered = []
    for pair in pairs:
        rendered.append(render_conversation(_answer_only(pair.prompt, pair.chosen), tokenizer, cutoff_len))
        rendered.append(render_conversation(_answer_only(pair.prompt, pair.rejected), tokenizer, cutoff_len))
    with torch.no_grad():
        stats = token_stats(model, tokenizer, rendered, batch_size=batch_size)
    margins = [stats[i + 1].nll - stats[i].nll for i in range(0, len(stats), 2)]  # logp(c) - logp(r)
    return {"accuracy": sum(m > 0 for m in margins) / len(margins), "margin": sum(margins) / len(margins),
            "median_margin": statistics.median(margins), "margins": margins}


def _grew(before: dict[str, Any], after: dict[str, Any]) -> float | None:
    if not before.get("margins"):
        return None
    pairs = list(zip(before["margins"], after["margins"]))
    return sum(a > b for b, a in pairs) / len(pairs)
