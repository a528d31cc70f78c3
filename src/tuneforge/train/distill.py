"""Knowledge distillation of a causal LM (`method.objective: distill`), on the SFT engine.

The student trains on the recipe's SFT data with, on every answer token,

    loss = alpha * T^2 * KL(p_teacher || p_student, both at temperature T) + (1 - alpha) * CE(student, label)

(Hinton et al. 2015: T^2 keeps the soft targets' gradient scale independent of T). Everything else is the
SFT engine's: rendering with loss masks, batching, the loop, monitor, checkpoints, the run folder and the
test-split before/after. Only the loss differs, passed in through `Prepared.loss_fn`.

`method.options`:
  teacher         alias, HF folder, .gguf file or run (folder or name; a LoRA run is merged). Defaults to
                  `model` itself when `student_layers` is set (distil a model into its own shallower copy).
  temperature     T, default 2.0
  alpha           weight of the KL term, default 0.5 (1.0: pure distillation, 0.0: plain SFT)
  student_layers  N (evenly spaced layers, first and last kept) or a list of layer indices: the student is
                  `model` cut to those decoder layers, weights copied; it trains with method.type full/freeze.

Summary stats (`distill`): held-out loss / perplexity / KL to the teacher of the student before and after,
and the teacher's own loss / perplexity, on the test split (the validation split when there is none).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from tuneforge.config.recipe import Recipe
from tuneforge.errors import ConfigError, ModelError
from tuneforge.train.loss import LossOutput, labelled_hidden
from tuneforge.train.methods import PROMPT_METHODS, method_options
from tuneforge.train.runfolder import RunContext, RunResult, find_resume_point, start_run


class DistillOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    teacher: str | None = Field(None, description="alias, HF folder, .gguf or run; default: `model`")
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1)
    student_layers: int | list[int] | None = Field(None, description="cut the student to these layers")


def parse_options(recipe: Recipe) -> DistillOptions:
    """`method.options` checked before anything loads, with the field and the allowed values in the error."""
    options = method_options(recipe.method, DistillOptions)
    if recipe.method.type in PROMPT_METHODS:
        raise ConfigError(f"method.type={recipe.method.type}: distillation trains full, freeze or LoRA students "
                          "(prompt methods add virtual tokens, so the student's positions do not match the teacher's)")
    if options.student_layers is not None and recipe.method.type not in ("full", "freeze"):
        raise ConfigError(f"method.options.student_layers: a cut-down student is a new model, so it trains with "
                          f"method.type full or freeze (got {recipe.method.type}: an adapter would be saved "
                          "against the full-depth base)")
    if options.teacher is None and options.student_layers is None:
        raise ConfigError("method.options.teacher: required (alias, HF folder, .gguf file or run); it defaults "
                          "to `model` only when method.options.student_layers makes the student smaller")
    return options


def token_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(summed CE against the labels, summed KL(teacher || student) at `temperature`, argmax hits)."""
    ce = F.cross_entropy(student_logits, targets, reduction="sum")
    kl = F.kl_div(F.log_softmax(student_logits / temperature, -1), F.log_softmax(teacher_logits / temperature, -1),
                  log_target=True, reduction="sum")
    return ce, kl, (student_logits.argmax(-1) == targets).sum()


class DistillLoss:
    """The training loss the SFT loop calls as `loss_fn(model, batch, chunk_size) -> LossOutput` (a sum over
    answer tokens, like causal_lm_loss). The teacher runs on the same batch, without gradients."""

    def __init__(self, teacher: Any, temperature: float, alpha: float, vocab: int):
        self.teacher, self.temperature, self.alpha, self.vocab = teacher, temperature, alpha, vocab

    def logits(self, model: Any, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Student and teacher logits at the trained positions (N, vocab), and the targets (N,)."""
        parts = labelled_hidden(model, batch)
        if parts is None:
            raise ModelError(f"distillation needs a causal LM with an lm_head; got {type(model).__name__}")
        hidden, head, targets = parts
        logits = head(hidden)[:, : self.vocab].float()
        if model is self.teacher:  # scoring the teacher itself: one forward pass, KL 0
            return logits, logits, targets
        teacher_device = next(self.teacher.parameters()).device
        if teacher_device != hidden.device:
            self.teacher.to(hidden.device)
        with torch.no_grad():
            t_hidden, t_head, _ = labelled_hidden(self.teacher, batch)
            teacher_logits = t_head(t_hidden)[:, : self.vocab].float()
        return logits, teacher_logits, targets

    def __call__(self, model: Any, batch, chunk_size: int = 1024) -> LossOutput:
        student_logits, teacher_logits, targets = self.logits(model, batch)
        ce, kl, correct = token_terms(student_logits, teacher_logits, targets, self.temperature)
        loss = self.alpha * self.temperature ** 2 * kl + (1 - self.alpha) * ce
        return LossOutput(loss, len(targets), int(correct))


@torch.no_grad()
def held_out_scores(model: Any, loss: DistillLoss, batches) -> dict[str, float]:
    """Loss, perplexity, token accuracy and KL(teacher || student) at T=1 over `batches` (answer tokens)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ce_sum = kl_sum = 0.0
    n = hits = 0
    for batch in batches:
        student_logits, teacher_logits, targets = loss.logits(model, batch.to(device))
        ce, kl, correct = token_terms(student_logits, teacher_logits, targets, 1.0)
        ce_sum, kl_sum, n, hits = ce_sum + float(ce), kl_sum + float(kl), n + len(targets), hits + int(correct)
    model.train(was_training)
    mean = ce_sum / max(n, 1)
    return {"loss": mean, "perplexity": math.exp(min(mean, 50.0)), "token_accuracy": hits / max(n, 1),
            "kl_to_teacher": kl_sum / max(n, 1), "tokens": n}


def check_same_tokenizer(student_tokenizer: Any, teacher_tokenizer: Any, teacher: str) -> None:
    """Distillation compares next-token distributions id by id: both must map ids to the same tokens."""
    mine, theirs = student_tokenizer.get_vocab(), teacher_tokenizer.get_vocab()
    if mine == theirs:
        return
    differing = sorted(set(mine.items()) ^ set(theirs.items()), key=lambda item: item[1])
    example = f"e.g. id {differing[0][1]}" if differing else ""
    raise ConfigError(f"method.options.teacher: {teacher} has a different tokenizer from the student "
                      f"({len(theirs)} vs {len(mine)} tokens, {len(differing)} (token, id) pairs differ, {example}); "
                      "distillation needs the same tokenizer on both sides (a teacher of the same model family)")


def _vocab(student: Any, teacher: Any, tokenizer: Any) -> int:
    """Logit columns both heads share; padding rows past the tokenizer (never real tokens) may differ."""
    sizes = [m.get_output_embeddings().weight.shape[0] for m in (student, teacher)]
    if min(sizes) < len(tokenizer):
        raise ModelError(f"distillation: an lm_head has {min(sizes)} outputs for a {len(tokenizer)}-token tokenizer")
    return min(sizes)


def run_distill(recipe: Recipe, console: Console, stop_hook=None) -> RunResult:
    """Setup (options, data, student, teacher, optional layer cut), the SFT loop with the distillation loss,
    then the student's held-out scores after training next to the ones before and the teacher's."""
    from tuneforge.export.merge import load_export_source
    from tuneforge.export.prune import drop_layers, select_layers
    from tuneforge.train.sft import file_rejected, prepare

    options = parse_options(recipe)
    resume_from = find_resume_point(recipe, console)
    job, data_files = prepare(recipe, console)
    if options.teacher is not None:
        with console.status(f"loading the teacher {options.teacher}"):
            try:
                source = load_export_source(options.teacher, recipe.output_dir)
            except ModelError as exc:  # say which recipe field named the model that is missing
                raise ModelError(f"method.options.teacher: {exc}") from None
        check_same_tokenizer(job.tokenizer, source.tokenizer, options.teacher)
        teacher, teacher_name = source.model, source.description
    else:
        teacher, teacher_name = copy.deepcopy(job.model), f"model {recipe.model.name_or_path} (full depth)"
    if options.student_layers is not None:
        n_layers = job.model.config.num_hidden_layers
        keep = select_layers(n_layers, options.student_layers, "method.options.student_layers")
        drop_layers(job.model, keep)
        job.stats["student_layers"] = {"of": n_layers, "kept": keep}
    teacher.eval().requires_grad_(False)
    loss = DistillLoss(teacher, options.temperature, options.alpha, _vocab(job.model, teacher, job.tokenizer))
    job.loss_fn = loss
    job.stats["distill"] = {"teacher": teacher_name, "temperature": options.temperature, "alpha": options.alpha}
    run = start_run(job.recipe, console, resume_from, data_files)
    file_rejected(run, job)
    return run.supervise(lambda: _train(run, job, loss, stop_hook))


def _held_out_batches(job) -> tuple[str, list]:
    from tuneforge.train.batching import LengthGroupedBatcher

    pad = job.tokenizer.pad_token_id if job.tokenizer.pad_token_id is not None else job.tokenizer.eos_token_id
    for split in ("test", "val"):
        examples = job.datasets[split].examples
        if examples:
            return split, list(LengthGroupedBatcher(examples, job.recipe.hparams.batch_size, job.recipe.seed,
                                                    pad).batches(0))
    return "none", []


def _train(run: RunContext, job, loss: DistillLoss, stop_hook) -> RunResult:
    from tuneforge.train.runs import load_run_model
    from tuneforge.train.sft import train_loop

    stats = job.stats["distill"]
    split, batches = _held_out_batches(job)
    stats["held_out"] = split
    if batches and run.resume_from is None:
        with run.console.status(f"scoring the teacher and the untrained student on the {split} split"):
            stats["teacher_scores"] = held_out_scores(loss.teacher, loss, batches)
            stats["student_before"] = held_out_scores(job.model, loss, batches)
    result = train_loop(run, job, stop_hook)
    if batches and result.final_dir is not None:
        student, _ = load_run_model(run.run_dir)  # the saved student, as anyone loading the run gets it
        stats["student_after"] = held_out_scores(student, loss, batches)
        _print_scores(run.console, stats, split)
    return result


def _print_scores(console: Console, stats: dict[str, Any], split: str) -> None:
    from rich.table import Table

    table = Table(title=f"distillation, {split} split", title_justify="left")
    for column in ("model", "loss", "perplexity", "KL to teacher"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for label, key in (("teacher", "teacher_scores"), ("student before", "student_before"),
                       ("student after", "student_after")):
        row = stats.get(key)
        if row:
            kl = "-" if key == "teacher_scores" else f"{row['kl_to_teacher']:.4f}"
            table.add_row(label, f"{row['loss']:.4f}", f"{row['perplexity']:.2f}", kl)
    console.print(table)
