"""Batched generation for evaluation: left padding, greedy by default, stop at eos or end-of-turn.

`generate_answers` renders chat prompts; `generate_from_ids` takes token ids (raw completions too, e.g.
the few-shot prompts of `tuneforge.data.synthesize`) and also says whether each row stopped by itself.
"""

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


@dataclass
class Generated:
    text: str
    tokens: int  # generated tokens up to (not counting) the stop token
    finished: bool  # stopped at eos / end-of-turn / a stop string, not at max_new_tokens


@torch.no_grad()
def generate_answers(
    model,
    tokenizer,
    examples: Sequence[EvalExample],
    settings: GenerationSettings,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """One decoded answer per example (special tokens dropped, surrounding space stripped)."""
    prompts = [render_prompt(ex.prompt, tokenizer) for ex in examples]
    return [g.text for g in generate_from_ids(model, tokenizer, prompts, settings, progress)]


@torch.no_grad()
def generate_from_ids(
    model,
    tokenizer,
    prompts: Sequence[list[int]],
    settings: GenerationSettings,
    progress: Callable[[int], None] | None = None,
    stop_strings: Sequence[str] = (),
) -> list[Generated]:
    """One generation per prompt (token ids), in the prompts' order; `stop_strings` end a row early
    (the text keeps the stop string, so the caller sees where it stopped)."""
    device = next(model.parameters()).device
    stops = stop_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stops[0] if stops else 0)
    torch.manual_seed(settings.seed)
    model.eval()
    # Sorting by prompt length keeps padding small; answers are put back in the original order.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    by_index: dict[int, Generated] = {}
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
        if stop_strings:
            kwargs.update(stop_strings=list(stop_strings), tokenizer=tokenizer)
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=settings.max_new_tokens,
            eos_token_id=stops or None,
            pad_token_id=pad,
            **kwargs,
        )
        for row, i in enumerate(batch):
            by_index[i] = _generated(out[row, width:].tolist(), tokenizer, set(stops), stop_strings)
        if progress:
            progress(len(batch))
    return [by_index[i] for i in range(len(prompts))]


def _generated(new_ids: list[int], tokenizer, stops: set[int], stop_strings: Sequence[str]) -> Generated:
    cut = next((k for k, t in enumerate(new_ids) if t in stops), None)
    kept = new_ids if cut is None else new_ids[:cut]
    text = tokenizer.decode(kept, skip_special_tokens=True).strip()
    finished = cut is not None or any(s in text for s in stop_strings)
    return Generated(text, len(kept), finished)
