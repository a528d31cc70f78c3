"""PPO against a reward model or a Python reward function, with a KL penalty to the frozen reference.

Why a hand-written loop: TRL 1.16 removed PPOTrainer (no `trl.PPOTrainer`, nothing in `trl.experimental`);
its on-policy successors (GRPO/RLOO) have no value head. This is the textbook RLHF PPO (Ziegler et al. 2019,
the loop TRL's PPOTrainer implemented), compact enough to read in one sitting:

  1. sample completions for a batch of prompts from the policy;
  2. score each completion (reward model or `module:function`); per-token reward = -kl_coef * (log p - log
     p_ref), plus the score on the last token;
  3. advantages with GAE from a value head on the policy's last hidden state;
  4. a few epochs of the clipped policy objective + clipped value loss on that batch.

`method.options`: reward_fn ("module:function", called as fn(prompts=[...], completions=[...], **reward_kwargs)
-> floats; prompts are the plain user text) or reward_model (a reward run folder); kl_coef 0.05, max_new_tokens 32, temperature 1.0, ppo_epochs 2,
cliprange 0.2, vf_coef 0.1, gamma 1.0, lam 0.95.

One process only: the loop has no gradient syncing or data sharding of its own, so under a launcher with
WORLD_SIZE > 1 it refuses to start (`check_single_process`) instead of training N diverging copies.
"""

from __future__ import annotations

import importlib
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from tuneforge.config.recipe import Recipe, load_recipe
from tuneforge.errors import ConfigError
from tuneforge.train.preference import common
from tuneforge.train.preference.data import load_preference_data, plain_prompt, prompt_messages
from tuneforge.train.runfolder import RunContext

PPO_DEFAULTS = {"kl_coef": 0.05, "max_new_tokens": 32, "temperature": 1.0, "ppo_epochs": 2,
                "cliprange": 0.2, "vf_coef": 0.1, "gamma": 1.0, "lam": 0.95}
PPO_OPTIONS = set(PPO_DEFAULTS) | {"reward_fn", "reward_model", "reward_kwargs"}

# Internal reward signature: (prompt messages, completions) -> scores.
RewardFn = Callable[[list[list[dict[str, str]]], list[str]], list[float]]


@dataclass
class Rollout:
    ids: torch.Tensor  # prompt + response, left-padded prompt
    mask: torch.Tensor  # attention mask (prompt padding and tokens after EOS are 0)
    start: int  # index of the first response token
    resp_mask: torch.Tensor  # [B, R] 1 for real response tokens
    logp: torch.Tensor  # [B, R] policy log-probs at sampling time
    values: torch.Tensor  # [B, R]
    rewards: torch.Tensor  # [B, R] KL penalty + score on the last token
    scores: torch.Tensor  # [B]
    kl: torch.Tensor  # [B] summed log p - log p_ref


def load_reward_fn(spec: str, kwargs: dict[str, Any] | None = None) -> RewardFn:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"method.options.reward_fn: expected 'module:function', got {spec!r}")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"method.options.reward_fn: cannot import {spec!r}: {exc}") from None
    if not callable(fn):
        raise ConfigError(f"method.options.reward_fn: {spec!r} is not callable")
    kwargs = dict(kwargs or {})

    def score(messages: list[list[dict[str, str]]], completions: list[str]) -> list[float]:
        prompts = [plain_prompt(m).rstrip("\n") for m in messages]
        return [float(x) for x in fn(prompts=prompts, completions=completions, **kwargs)]

    return score


def reward_model_fn(folder: str, max_length: int) -> RewardFn:
    """Score with a trained reward run (its own tokenizer and text layout), one scalar per completion."""
    from transformers import AutoTokenizer

    from tuneforge.models import load_model
    from tuneforge.train.preference.reward import reward_texts, score_texts

    weights = common.init_run_folder(folder)
    if (weights / "adapter_config.json").is_file():
        from peft import PeftModel

        run_recipe = load_recipe(weights.parent / "recipe.yaml")
        base, _ = load_model(run_recipe.model, head="sequence_classification", num_labels=1)
        model = PeftModel.from_pretrained(base, str(weights)).merge_and_unload()
    else:
        model, _ = load_model(str(weights), head="sequence_classification", num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(str(weights))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id

    def score(messages: list[list[dict[str, str]]], completions: list[str]) -> list[float]:
        texts = reward_texts(tokenizer, messages, completions)
        return score_texts(model, tokenizer, texts, max_length=max_length)

    return score


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)


def response_logp_values(model, value_head, ids, mask, start, temperature, with_values=True):
    """Per-token log-probs of the response tokens (and values at the positions that predict them)."""
    out = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask),
                output_hidden_states=with_values)
    logits = out.logits[:, start - 1:-1].float() / temperature
    logp = torch.log_softmax(logits, -1).gather(-1, ids[:, start:].unsqueeze(-1)).squeeze(-1)
    values = value_head(out.hidden_states[-1][:, start - 1:-1].float()).squeeze(-1) if with_values else None
    return logp, values


def gae(rewards, values, mask, gamma: float, lam: float):
    """Generalised advantage estimation over the response tokens (masked tail contributes nothing)."""
    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] * mask[:, t + 1] if t + 1 < rewards.shape[1] else 0.0
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        adv[:, t] = last
    returns = adv + values
    mean = (adv * mask).sum() / mask.sum()
    std = (((adv - mean) ** 2 * mask).sum() / mask.sum()).sqrt()
    return (adv - mean) / (std + 1e-8) * mask, returns


class PPOLoop:
    def __init__(self, recipe: Recipe, policy, tokenizer, reward_fn: RewardFn,
                 prompts: list[list[dict[str, str]]]) -> None:
        self.recipe, self.policy, self.tokenizer, self.reward_fn = recipe, policy, tokenizer, reward_fn
        self.prompts = prompts  # chat messages ending with a user turn
        self.opt = {**PPO_DEFAULTS, **{k: v for k, v in recipe.method.options.items() if k in PPO_DEFAULTS}}
        hidden = policy.config.hidden_size
        self.value_head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        # LoRA: the reference is the same model with adapters switched off (no second copy in memory).
        self.reference = None if common.is_peft(policy) else common.frozen_copy(policy)
        params = [p for p in policy.parameters() if p.requires_grad] + list(self.value_head.parameters())
        self.optimizer = torch.optim.AdamW(params, lr=float(recipe.hparams.learning_rate),
                                           weight_decay=recipe.hparams.weight_decay)
        self.rng = random.Random(recipe.seed)

    @torch.no_grad()
    def rollout(self, prompts: list[list[dict[str, str]]]) -> Rollout:
        tok, opt = self.tokenizer, self.opt
        texts = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in prompts]
        enc = self.encode_prompts(texts)
        self.policy.eval()
        out = self.policy.generate(**enc, do_sample=True, top_k=0, top_p=1.0,
                                   temperature=float(opt["temperature"]),
                                   max_new_tokens=int(opt["max_new_tokens"]),
                                   pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        start = enc["input_ids"].shape[1]
        response = out[:, start:]
        resp_mask = _until_eos(response, tok.eos_token_id)
        mask = torch.cat([enc["attention_mask"], resp_mask], dim=1)
        logp, values = response_logp_values(self.policy, self.value_head, out, mask, start, opt["temperature"])
        ref_logp = self._reference_logp(out, mask, start)
        completions = [tok.decode(r[m.bool()], skip_special_tokens=True) for r, m in zip(response, resp_mask)]
        scores = torch.tensor(self.reward_fn(prompts, completions), dtype=torch.float32)
        kl_tokens = (logp - ref_logp) * resp_mask
        rewards = -float(opt["kl_coef"]) * kl_tokens
        last = (resp_mask.sum(1) - 1).clamp(min=0).long()
        rewards[torch.arange(len(prompts)), last] += scores
        return Rollout(out, mask, start, resp_mask, logp, values * resp_mask, rewards, scores, kl_tokens.sum(1))

    def encode_prompts(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Left-padded (generation continues on the right) and cut from the left to cutoff_len minus the
        answer budget: the question at the end of a long prompt survives, and rollouts stay bounded."""
        tok = self.tokenizer
        budget = max(8, self.recipe.hparams.cutoff_len - int(self.opt["max_new_tokens"]))
        sides = tok.padding_side, tok.truncation_side
        tok.padding_side = tok.truncation_side = "left"
        try:
            return tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=budget,
                       add_special_tokens=False)
        finally:
            tok.padding_side, tok.truncation_side = sides

    def _reference_logp(self, ids, mask, start):
        temperature = self.opt["temperature"]
        if self.reference is not None:
            return response_logp_values(self.reference, None, ids, mask, start, temperature, False)[0]
        with self.policy.disable_adapter():
            return response_logp_values(self.policy, None, ids, mask, start, temperature, False)[0]

    def update(self, roll: Rollout) -> dict[str, float]:
        opt = self.opt
        adv, returns = gae(roll.rewards, roll.values, roll.resp_mask, float(opt["gamma"]), float(opt["lam"]))
        n_tokens = roll.resp_mask.sum().clamp(min=1)
        clip = float(opt["cliprange"])
        self.policy.train()
        stats = {"policy_loss": 0.0, "value_loss": 0.0, "clipfrac": 0.0}
        epochs = int(opt["ppo_epochs"])
        for _ in range(epochs):
            logp, values = response_logp_values(self.policy, self.value_head, roll.ids, roll.mask, roll.start,
                                                opt["temperature"])
            ratio = torch.exp(logp - roll.logp)
            pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip))
            pg_loss = (pg * roll.resp_mask).sum() / n_tokens
            v_clipped = roll.values + (values - roll.values).clamp(-clip, clip)
            vf = torch.max((values - returns) ** 2, (v_clipped - returns) ** 2)
            vf_loss = 0.5 * (vf * roll.resp_mask).sum() / n_tokens
            loss = pg_loss + float(opt["vf_coef"]) * vf_loss
            self.optimizer.zero_grad()
            loss.backward()
            if self.recipe.hparams.max_grad_norm:
                nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]],
                                         self.recipe.hparams.max_grad_norm)
            self.optimizer.step()
            stats["policy_loss"] += pg_loss.item() / epochs
            stats["value_loss"] += vf_loss.item() / epochs
            stats["clipfrac"] += float((((ratio - 1).abs() > clip) * roll.resp_mask).sum() / n_tokens) / epochs
        return stats

    def step(self) -> dict[str, float]:
        batch = self.rng.sample(self.prompts, min(self.recipe.hparams.batch_size, len(self.prompts)))
        roll = self.rollout(batch)
        stats = self.update(roll)
        return {"train_reward": float(roll.scores.mean()), "train_kl": float(roll.kl.mean()),
                "train_response_len": float(roll.resp_mask.sum(1).float().mean()),
                **{f"train_{k}": v for k, v in stats.items()}}


def _until_eos(response: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """1 up to and including the first EOS, 0 after it (generate pads finished rows)."""
    if eos_id is None:
        return torch.ones_like(response)
    is_eos = (response == eos_id).long()
    after = (is_eos.cumsum(1) - is_eos) > 0
    return (~after).long()


def check_single_process() -> None:
    from tuneforge.errors import UnsupportedHere
    from tuneforge.train.distributed import process_count

    if process_count() > 1:
        raise UnsupportedHere(f"method.objective=ppo runs in one process only (its hand-written rollout/update loop "
                              f"does not sync gradients); this process is one of {process_count()} (WORLD_SIZE): run "
                              "`tuneforge train` without --nproc / accelerate launch / torchrun")


def train_ppo(recipe: Recipe, run: RunContext) -> dict[str, Any]:
    from tuneforge.train.monitor import Monitor

    options = recipe.method.options
    unknown = sorted(set(options) - PPO_OPTIONS)
    if unknown:
        raise ConfigError(f"method.options: {unknown} do not apply to objective=ppo; "
                          f"allowed: {', '.join(sorted(PPO_OPTIONS))}")
    if bool(options.get("reward_fn")) == bool(options.get("reward_model")):
        raise ConfigError("objective=ppo needs exactly one of method.options.reward_fn ('module:function') "
                          "or method.options.reward_model (a reward run folder)")
    data = load_preference_data(recipe, prompts_only=True)
    recipe, chosen = common.resolve_hparams(recipe, len(data.train))
    torch.manual_seed(recipe.seed)
    policy, tokenizer = common.load_policy(recipe)
    prompts = prompt_messages(data.train)
    if options.get("reward_fn"):
        reward_fn = load_reward_fn(str(options["reward_fn"]), options.get("reward_kwargs"))
    else:
        reward_fn = reward_model_fn(str(options["reward_model"]), recipe.hparams.cutoff_len)
    loop = PPOLoop(recipe, policy, tokenizer, reward_fn, prompts)
    steps = recipe.hparams.max_steps or max(1, math.ceil(float(recipe.hparams.epochs) * len(prompts)
                                                         / recipe.hparams.batch_size))
    history = []
    with Monitor(run, steps) as monitor:
        for step in range(1, steps + 1):
            row = {"step": step, **loop.step()}
            history.append(row)
            monitor.log(row)
            monitor.advance(step, row["train_policy_loss"], float(recipe.hparams.learning_rate), 0.0)
            stop_hook = run.extras.get("stop_hook")
            if stop_hook is not None and stop_hook(step):
                break
    final = run.final_dir
    policy.save_pretrained(str(final))
    tokenizer.save_pretrained(str(final))
    torch.save(loop.value_head.state_dict(), Path(final) / "value_head.pt")
    quarter = max(1, len(history) // 4)
    return {
        "objective": "ppo", "steps": steps, "prompts": len(prompts),
        "reward_first": _mean(history[:quarter], "train_reward"),
        "reward_last": _mean(history[-quarter:], "train_reward"),
        "kl_last": _mean(history[-quarter:], "train_kl"),
        "value_loss_last": _mean(history[-quarter:], "train_value_loss"),
        "auto": chosen, "final_dir": str(final), "rejected_rows": data.rejected, "recipe": recipe,
        "stopped": len(history) < steps,
    }


def _mean(rows: list[dict[str, float]], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows) if rows else float("nan")
