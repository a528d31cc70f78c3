"""Sentence-embedding training (`method.objective: contrastive`) of an encoder (BERT family) on
anchor/positive[/negative] pairs with in-batch negatives: sentence-transformers' MultipleNegativesRankingLoss
(cosine similarities x `scale`, cross-entropy toward each anchor's own positive; every other positive in the
batch, and every hard negative, is a negative). LoRA / full / freeze as elsewhere.

Why HF's Trainer with our own `compute_loss` rather than SentenceTransformerTrainer: checkpoints, `resume`,
early stopping, the run's Monitor and peft LoRA then take the same code path as `mlm` and `classification`
(HF checkpoint layout, `common.trainer_args`), and training does not need sentence-transformers (an optional
extra whose API moved between 3.x and 6.x). The loss is MNRL's, written out; `<run>/final` is still saved in
the sentence-transformers layout (modules.json, pooling, normalize), so `SentenceTransformer(final)` loads it.

Data: `format: pairs` rows (`anchor`|`query`, `positive`, optional `negative`). Rows that share a positive or
an anchor never act as each other's negatives (a duplicate would be a false negative).

Measured on the test split (validation when there is none), before and after training: retrieval of each
anchor's positive among all distinct test positives and negatives (accuracy@1, MRR, recall@5), and the mean
cosine of anchor-positive vs anchor-negative (the hard negatives, else the other anchors' positives).

Options (`method.options`): scale (20.0), pooling (auto: the checkpoint's sentence-transformers pooling,
else mean), symmetric (false: also positive -> anchor, MultipleNegativesSymmetricRankingLoss).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.config.recipe import Recipe
from tuneforge.data.formats import RowProblem
from tuneforge.data.records import Pair, Record
from tuneforge.train import encoders
from tuneforge.train.runfolder import RunContext, RunResult

DECODER_HINT = "Embeddings come from an encoder here; pick one (model.name_or_path: minilm-l6)."
SIDES = ("anchor", "positive", "negative")


class ContrastiveOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scale: float = Field(20.0, gt=0, description="cosine similarities x scale before the softmax (1/temperature)")
    pooling: Literal["auto", "mean", "cls", "max"] = Field("auto", description="token vectors -> one embedding")
    symmetric: bool = Field(False, description="also retrieve the anchor from its positive")


def run(recipe: Recipe, run_ctx: RunContext) -> RunResult:
    from tuneforge.train.preference import run_trainer

    return run_trainer(recipe, run_ctx, train_contrastive)


def train_contrastive(recipe: Recipe, run: RunContext) -> dict[str, Any]:
    from transformers import TrainingArguments, set_seed

    from tuneforge.models import hf_folder, load_model
    from tuneforge.train.preference import common

    opts, splits, rejected = encoders.begin(recipe, ContrastiveOptions, _as_pair, DECODER_HINT)
    encoders.check_usable(len(splits.train), len(splits.val), recipe, rejected, run)
    recipe, chosen = common.resolve_hparams(recipe, len(splits.train))
    spec = common.full_model_spec(recipe)
    set_seed(recipe.seed)  # LoRA's initialisation, so a resumed run continues the same model
    model, tokenizer = load_model(spec, head="encoder")
    pooling = opts.pooling if opts.pooling != "auto" else checkpoint_pooling(hf_folder(spec))
    model = encoders.prepare_model(model, tokenizer, recipe, task_type="FEATURE_EXTRACTION")
    max_len = encoders.max_tokens(recipe, tokenizer, model)
    embedder = Embedder(tokenizer, pooling, max_len, recipe.hparams.batch_size)
    warnings = []
    hard = bool(splits.train) and all(p.negative for p in splits.train)
    if not hard and any(p.negative for p in splits.train):
        warnings.append("only some training rows have a negative: hard negatives are not used (in-batch only)")
    held_name, held = ("test", splits.test) if splits.test else ("val", splits.val)
    before = retrieval_score(model, embedder, held) if held else {}

    has_val = bool(splits.val)
    stop_args, stop_callbacks = common.early_stopping(recipe, has_val)
    # A last batch of one pair has no in-batch negative to learn from: dropped when there are full batches.
    args = common.trainer_args(TrainingArguments, recipe, run, has_val, remove_unused_columns=False, label_names=[],
                               dataloader_drop_last=len(splits.train) >= 2 * recipe.hparams.batch_size, **stop_args)
    val_hard = hard and all(p.negative for p in splits.val)  # a validation row without one: in-batch only
    trainer = pair_trainer(model, args, embedder, opts, train=encode_pairs(tokenizer, splits.train, max_len, hard),
                           val=encode_pairs(tokenizer, splits.val, max_len, val_hard) if has_val else None,
                           callbacks=stop_callbacks)
    common.quiet_trainer(trainer)
    trainer.add_callback(common.monitor_callback(run))
    output = trainer.train(resume_from_checkpoint=common.resume_checkpoint(recipe, run))

    after = retrieval_score(trainer.model, embedder, held) if held else {}
    val_loss = trainer.evaluate().get("eval_loss") if has_val else None
    final = encoders.save_final(trainer.model, tokenizer, run)
    write_sentence_transformers_config(final, model.config.hidden_size, pooling, max_len)
    if before:
        run.console.print(f"held-out ({held_name}) retrieval accuracy@1 {before['accuracy_at_1']:.3f} -> "
                          f"{after['accuracy_at_1']:.3f}, MRR {before['mrr']:.3f} -> {after['mrr']:.3f} "
                          f"({after['queries']} queries, {after['candidates']} candidates)")
    for warning in warnings:
        run.console.print(f"[yellow]warning:[/yellow] {warning}")
    return {
        "objective": "contrastive", "pooling": pooling, "scale": opts.scale, "hard_negatives": hard,
        "warnings": warnings, "train_pairs": len(splits.train), "val_pairs": len(splits.val),
        "test_pairs": len(splits.test), "held_out": held_name, "rejected": len(rejected),
        "before": before, "after": after, "train_loss": float(output.training_loss),
        "steps": int(output.global_step), "val_loss": val_loss, "auto": chosen, "final_dir": str(final),
        "rejected_rows": rejected, "recipe": recipe,
        "stopped": trainer.state.global_step < trainer.state.max_steps and not encoders.stopped_early(stop_callbacks),
    }


def _as_pair(record: Record) -> Pair:
    if isinstance(record, Pair):
        return record
    raise RowProblem("wrong_type", "anchor", f"expected an anchor/positive pair for objective=contrastive, got a "
                     f"{type(record).__name__} record; give {{\"anchor\": ..., \"positive\": ...}} rows (format: pairs)")


def checkpoint_pooling(folder: Path) -> str:
    """The pooling a sentence-transformers checkpoint was trained with (its 1_Pooling config), else mean."""
    config = folder / "1_Pooling" / "config.json"
    if config.is_file():
        modes = json.loads(config.read_text(encoding="utf-8"))
        for mode, key in (("cls", "pooling_mode_cls_token"), ("max", "pooling_mode_max_tokens")):
            if modes.get(key):
                return mode
    return "mean"


class Embedder:
    """Texts -> L2-normalised pooled embeddings (the same pooling in training, scoring and the saved model)."""

    def __init__(self, tokenizer, pooling: str, max_len: int, batch_size: int):
        self.tokenizer, self.pooling, self.max_len, self.batch_size = tokenizer, pooling, max_len, batch_size

    def pool(self, model, input_ids, attention_mask):
        import torch
        import torch.nn.functional as F

        hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "cls":
            vectors = hidden[:, 0]
        elif self.pooling == "max":
            vectors = hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
        else:
            vectors = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(vectors.float(), dim=-1)

    def embed(self, model, texts: list[str]):
        import torch

        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(texts[start:start + self.batch_size], truncation=True, max_length=self.max_len,
                                     padding=True, return_tensors="pt").to(device)
                out.append(self.pool(model, enc["input_ids"], enc["attention_mask"]))
        model.train(was_training)
        return torch.cat(out) if out else torch.zeros(0)


def mnrl_loss(anchors, positives, negatives, pos_ids, scale: float, symmetric: bool, anchor_ids=None):
    """MultipleNegativesRankingLoss on normalised embeddings: row i's target is column i (its positive);
    columns are the batch's positives then its hard negatives. Other rows with the same positive or the same
    anchor (one query, several relevant passages) are masked."""
    import torch
    import torch.nn.functional as F

    candidates = positives if negatives is None else torch.cat([positives, negatives])
    scores = anchors @ candidates.T * scale
    same = pos_ids[:, None] == pos_ids[None, :]
    if anchor_ids is not None:
        same = same | (anchor_ids[:, None] == anchor_ids[None, :])
    same = same & ~torch.eye(len(pos_ids), dtype=torch.bool, device=scores.device)
    scores[:, :len(pos_ids)] = scores[:, :len(pos_ids)].masked_fill(same, float("-inf"))
    target = torch.arange(len(pos_ids), device=scores.device)
    loss = F.cross_entropy(scores, target)
    if symmetric:
        back = (positives @ anchors.T * scale).masked_fill(same, float("-inf"))
        loss = (loss + F.cross_entropy(back, target)) / 2
    return loss


def pair_trainer(model, args, embedder: Embedder, opts: ContrastiveOptions, *, train, val, callbacks):
    from transformers import Trainer

    class PairTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            sides = {side: embedder.pool(model, inputs[f"{side}_input_ids"], inputs[f"{side}_attention_mask"])
                     for side in SIDES if f"{side}_input_ids" in inputs}
            loss = mnrl_loss(sides["anchor"], sides["positive"], sides.get("negative"), inputs["pos_id"],
                             opts.scale, opts.symmetric, inputs.get("anchor_id"))
            return (loss, {}) if return_outputs else loss

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            import torch

            inputs = self._prepare_inputs(inputs)
            with torch.no_grad():
                loss = self.compute_loss(model, inputs)
            return loss.detach(), None, None

    return PairTrainer(
        model=model, args=args, train_dataset=train, eval_dataset=val,
        data_collator=PairCollator(embedder.tokenizer), callbacks=callbacks)


def encode_pairs(tokenizer, pairs: list[Pair], max_len: int, hard: bool):
    """One row per pair: each side tokenized on its own; `pos_id` / `anchor_id` number distinct texts."""
    from datasets import Dataset

    sides = SIDES if hard else SIDES[:2]
    ids: dict[str, int] = {}
    anchor_ids: dict[str, int] = {}
    rows: dict[str, list] = {"pos_id": [ids.setdefault(p.positive.strip(), len(ids)) for p in pairs],
                             "anchor_id": [anchor_ids.setdefault(p.anchor.strip(), len(anchor_ids)) for p in pairs]}
    for side in sides:
        enc = tokenizer([getattr(p, side) for p in pairs], truncation=True, max_length=max_len)
        rows[f"{side}_input_ids"], rows[f"{side}_attention_mask"] = enc["input_ids"], enc["attention_mask"]
    return Dataset.from_dict(rows)


class PairCollator:
    """Pads each side of the batch on its own."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch: dict[str, Any] = {key: torch.tensor([f[key] for f in features])
                                 for key in ("pos_id", "anchor_id") if key in features[0]}
        for side in SIDES:
            if f"{side}_input_ids" not in features[0]:
                continue
            padded = self.tokenizer.pad([{"input_ids": f[f"{side}_input_ids"],
                                          "attention_mask": f[f"{side}_attention_mask"]} for f in features],
                                        return_tensors="pt")
            batch[f"{side}_input_ids"], batch[f"{side}_attention_mask"] = padded["input_ids"], padded["attention_mask"]
        return batch


def retrieval_score(model, embedder: Embedder, pairs: list[Pair]) -> dict[str, float]:
    """Each anchor ranks every distinct positive and negative of the split; its own positive is the answer
    (the positives of other rows with the same anchor text are left out of its ranking, not counted wrong)."""
    import torch

    texts = list(dict.fromkeys([p.positive for p in pairs] + [p.negative for p in pairs if p.negative]))
    index = {t: i for i, t in enumerate(texts)}
    anchors, corpus = embedder.embed(model, [p.anchor for p in pairs]), embedder.embed(model, texts)
    scores = anchors @ corpus.T
    gold = torch.tensor([index[p.positive] for p in pairs])
    gold_score = scores[torch.arange(len(pairs)), gold]
    others = scores.clone()
    others[torch.arange(len(pairs)), gold] = float("-inf")
    anchor_ids = {a: i for i, a in enumerate(dict.fromkeys(p.anchor for p in pairs))}
    aid = torch.tensor([anchor_ids[p.anchor] for p in pairs])
    same_anchor = aid[:, None] == aid[None, :]
    rows, cols = same_anchor.nonzero(as_tuple=True)
    others[rows, gold[cols]] = float("-inf")
    # Ties count against the anchor: a collapsed encoder (all texts one vector) must not score 1.0.
    rank = 1 + (others >= gold_score[:, None]).sum(1)
    if any(p.negative for p in pairs):
        with_neg = [i for i, p in enumerate(pairs) if p.negative]
        negative_cos = scores[with_neg, [index[pairs[i].negative] for i in with_neg]].mean().item()
    else:  # the other anchors' positives
        positives = scores[:, gold]
        off = ~same_anchor & (gold[:, None] != gold[None, :])
        negative_cos = positives[off].mean().item() if bool(off.any()) else 0.0
    return {"accuracy_at_1": (rank == 1).float().mean().item(), "mrr": (1.0 / rank.float()).mean().item(),
            "recall_at_5": (rank <= 5).float().mean().item(), "positive_cosine": gold_score.mean().item(),
            "negative_cosine": negative_cos, "queries": len(pairs), "candidates": len(texts)}


def write_sentence_transformers_config(final: Path, dim: int, pooling: str, max_len: int) -> None:
    """The sentence-transformers layout beside the HF weights (Transformer -> Pooling -> Normalize), written as
    plain JSON so saving needs no sentence-transformers install."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    (final / "modules.json").write_text(json.dumps(modules, indent=2), encoding="utf-8")
    (final / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_len, "do_lower_case": False}))
    (final / "1_Pooling").mkdir(exist_ok=True)
    (final / "2_Normalize").mkdir(exist_ok=True)
    pooled = {"word_embedding_dimension": dim, "pooling_mode_cls_token": pooling == "cls",
              "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": pooling == "max",
              "pooling_mode_mean_sqrt_len_tokens": False}
    (final / "1_Pooling" / "config.json").write_text(json.dumps(pooled, indent=2), encoding="utf-8")
