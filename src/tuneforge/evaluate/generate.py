"""Batched generation for evaluation: left padding, greedy by default, stop at eos or end-of-turn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from tuneforge.data.render import render_prompt
from tuneforge.evaluate.examples import EvalExample
from tuneforge.models.stopping import stop_token_ids


@dataclass
class GenerationSettings:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    batch_size: int = 8
    seed: int = 0


@torch.no_grad()
def generate_answers(
    model,
    tokenizer,
    examples: Sequence[EvalExample],
    settings: GenerationSettings,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """One decoded answer per example (special tokens dropped, surrounding space stripped)."""
    device = next(model.parameters()).device
    stops = stop_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stops[0] if stops else 0)
    torch.manual_seed(settings.seed)
    model.eval()
    answers: list[str] = []
    # Sorting by prompt length keeps padding small; answers are put back in the original order.
    prompts = [render_prompt(ex.prompt, tokenizer) for ex in examples]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    by_index: dict[int, str] = {}
    for start in range(0, len(order), settings.batch_size):
        batch = order[start : start + settings.batch_size]
        width = max(len(prompts[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            p = prompts[i]
            ids[row, width - len(p) :] = torch.tensor(p)
            mask[row, width - len(p) :] = 1
        sampling = settings.temperature > 0
        kwargs = {"do_sample": sampling}
        if sampling:
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)  # silence sampling-flag warnings
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=settings.max_new_tokens,
            eos_token_id=stops or None,
            pad_token_id=pad,
            **kwargs,
        )
        for row, i in enumerate(batch):
            by_index[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
        if progress:
            progress(len(batch))
    answers = [by_index[i] for i in range(len(prompts))]
    return answers
