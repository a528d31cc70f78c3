"""Teacher-forced scores: loss, perplexity and token accuracy on answer tokens, and label log-probabilities.

One batched forward pass per chunk; the loss is summed per example (not averaged per batch) so the
corpus loss is token-weighted and independent of the batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from tuneforge.data.render import IGNORE_INDEX, RenderedExample, render_conversation, render_text
from tuneforge.evaluate.examples import EvalExample, with_answer


@dataclass
class TokenStats:
    nll: float  # summed negative log-likelihood over labelled tokens
    tokens: int
    correct: int  # labelled tokens whose argmax prediction is right

    @property
    def loss(self) -> float:
        return self.nll / self.tokens if self.tokens else float("nan")


def render_for_loss(example: EvalExample, tokenizer, cutoff_len: int) -> RenderedExample:
    if example.conversation is not None:
        return render_conversation(example.conversation, tokenizer, cutoff_len, loss_on="answer")
    assert example.text is not None
    return render_text(example.text, tokenizer, cutoff_len)[0]


def _pad_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


@torch.no_grad()
def token_stats(model, tokenizer, rendered: Sequence[RenderedExample], batch_size: int = 8) -> list[TokenStats]:
    """Per-example NLL sum, labelled-token count and argmax hits (right padding, causal shift)."""
    device = next(model.parameters()).device
    pad = _pad_id(tokenizer)
    out: list[TokenStats] = []
    was_training = model.training
    model.eval()
    for start in range(0, len(rendered), batch_size):
        chunk = rendered[start : start + batch_size]
        width = max(len(r.input_ids) for r in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        labels = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, r in enumerate(chunk):
            ids[row, : len(r.input_ids)] = torch.tensor(r.input_ids)
            labels[row, : len(r.labels)] = torch.tensor(r.labels)
            mask[row, : len(r.input_ids)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logits, target = logits[:, :-1], labels[:, 1:].to(device)
        keep = target != IGNORE_INDEX
        nll = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), target.clamp(min=0), reduction="none"
        )
        hits = (logits.argmax(-1) == target) & keep
        for row in range(len(chunk)):
            out.append(
                TokenStats(
                    float((nll[row] * keep[row]).sum()), int(keep[row].sum()), int(hits[row].sum())
                )
            )
    model.train(was_training)
    return out


def corpus_likelihood(stats: Sequence[TokenStats]) -> dict[str, float]:
    tokens = sum(s.tokens for s in stats)
    if not tokens:
        return {}
    loss = sum(s.nll for s in stats) / tokens
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),  # capped so a random model does not print inf
        "token_accuracy": sum(s.correct for s in stats) / tokens,
    }


def label_logprobs(
    model, tokenizer, examples: Sequence[EvalExample], labels: Sequence[str], cutoff_len: int, batch_size: int = 8
) -> torch.Tensor:
    """[n_examples, n_labels] log P(label + end-of-turn | prompt), scored as the assistant's answer.

    Scoring each label as a full answer (with its end marker) tells "pos" from "positive"; the softmax over
    these is the model's confidence for calibration.
    """
    rendered = [
        render_conversation(with_answer(ex, label), tokenizer, cutoff_len, loss_on="answer")
        for ex in examples
        for label in labels
    ]
    stats = token_stats(model, tokenizer, rendered, batch_size)
    return torch.tensor([-s.nll for s in stats], dtype=torch.float64).view(len(examples), len(labels))


def is_classifier(model) -> bool:
    return type(model).__name__.endswith("ForSequenceClassification")


@torch.no_grad()
def classifier_logits(model, tokenizer, texts: Sequence[str], cutoff_len: int, batch_size: int = 8) -> torch.Tensor:
    """Logits of a classification head, [n, num_labels]."""
    device = next(model.parameters()).device
    model.eval()
    rows = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(
            list(texts[start : start + batch_size]), padding=True, truncation=True,
            max_length=cutoff_len, return_tensors="pt",
        )
        rows.append(model(**{k: v.to(device) for k, v in enc.items()}).logits.float().cpu())
    return torch.cat(rows).double()


def classifier_labels(model) -> list[str]:
    id2label = getattr(model.config, "id2label", None) or {}
    return [str(id2label[i]) for i in sorted(id2label)]
