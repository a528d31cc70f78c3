"""What the preference trainers share: model loading (incl. `init_from_run`), TRL arguments from the recipe,
the bridge from TRL's logs to the run's Monitor (metrics.jsonl, loss plot, progress), resume, final save."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tuneforge.config.recipe import Recipe
from tuneforge.errors import ConfigError, ModelError
from tuneforge.train.runfolder import RunContext

# `learning_rate: auto` for preference objectives: an order of magnitude below SFT, where the DPO/KTO papers
# and TRL's examples train (preference losses saturate fast; SFT rates wreck the reference anchor).
PREFERENCE_LR = {
    ("reward", "lora"): 1e-4, ("reward", "full"): 1e-5, ("reward", "freeze"): 2e-5,
    ("dpo", "lora"): 5e-5, ("dpo", "full"): 1e-6, ("dpo", "freeze"): 5e-6,
    ("ppo", "lora"): 5e-5, ("ppo", "full"): 1e-6, ("ppo", "freeze"): 5e-6,
}


def resolve_hparams(recipe: Recipe, n_train: int) -> tuple[Recipe, dict[str, object]]:
    """Replace `auto` values (preference learning rates first, then the engine's own rules)."""
    from tuneforge.train.auto import resolve_auto

    recipe = recipe.model_copy(deep=True)
    chosen: dict[str, object] = {}
    objective = "dpo" if recipe.method.objective in ("dpo", "orpo", "kto") else recipe.method.objective
    key = (objective, recipe.method.type)
    if recipe.hparams.learning_rate == "auto" and key in PREFERENCE_LR:
        recipe.hparams.learning_rate = PREFERENCE_LR[key]
        chosen["hparams.learning_rate"] = recipe.hparams.learning_rate
    recipe, more = resolve_auto(recipe, n_train)
    return recipe, {**chosen, **more}


def init_run_folder(path: str) -> Path:
    """The folder holding the weights of a previous run: `<run>/final`, or the path itself."""
    folder = Path(path).expanduser()
    if (folder / "final").is_dir():
        folder = folder / "final"
    if not folder.is_dir():
        raise ConfigError(f"model.init_from_run: {path}: not a run folder or a saved model/adapter folder")
    if not ((folder / "adapter_config.json").is_file() or (folder / "config.json").is_file()):
        raise ConfigError(f"model.init_from_run: {folder}: no adapter_config.json or config.json inside "
                          "(did the run finish? its weights are saved in <run>/final)")
    return folder


def load_policy(recipe: Recipe):
    """(model, tokenizer) to train: the base model with the recipe's method applied, or, with
    `init_from_run`, the earlier run's weights. An earlier LoRA adapter is loaded *trainable* and kept:
    DPO then continues it, and TRL copies it as the frozen reference (the SFT model)."""
    from tuneforge.models import load_model
    from tuneforge.train.methods import apply_method, check_method_supported

    check_method_supported(recipe.method)
    init = recipe.model.init_from_run
    if not init:
        model, tokenizer = load_model(recipe.model, head="causal_lm")
        return apply_method(model, tokenizer, recipe.method, recipe.hparams), tokenizer
    folder = init_run_folder(init)
    if (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        model, tokenizer = load_model(recipe.model, head="causal_lm")
        try:
            model = PeftModel.from_pretrained(model, str(folder), is_trainable=True)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(f"model.init_from_run: {folder}: adapter does not fit {recipe.model.name_or_path}: "
                             f"{str(exc).splitlines()[0]}") from None
        return model, _tokenizer_from(folder, tokenizer)
    model, tokenizer = load_model(recipe.model.model_copy(update={"name_or_path": str(folder)}), head="causal_lm")
    return apply_method(model, tokenizer, recipe.method, recipe.hparams), tokenizer


def full_model_spec(recipe: Recipe):
    """The model to put a new head on: the recipe's base, or the full model `init_from_run` points at."""
    spec = recipe.model
    if not spec.init_from_run:
        return spec
    folder = init_run_folder(spec.init_from_run)
    if (folder / "adapter_config.json").is_file():
        raise ModelError(f"{recipe.method.objective}: model.init_from_run must point at a full model (an "
                         "adapter cannot be loaded under a new head); merge it first with "
                         "`tuneforge export RUN --format hf --out DIR` and start from DIR")
    return spec.model_copy(update={"name_or_path": str(folder)})


HEAD_NAMES = ("score", "classifier")  # the freshly initialised head of *ForSequenceClassification


def load_sequence_classifier(recipe: Recipe, num_labels: int, labels: list[str] | None = None):
    """(model, tokenizer) with a fresh `num_labels`-output head (1 = a reward model); with LoRA the adapters
    use peft's SEQ_CLS task, which also trains the head. `labels` names the outputs in the saved config."""
    from tuneforge.models import load_model
    from tuneforge.train.methods import apply_method, check_method_supported

    check_method_supported(recipe.method)
    model, tokenizer = load_model(full_model_spec(recipe), head="sequence_classification", num_labels=num_labels)
    model.config.pad_token_id = tokenizer.pad_token_id
    if labels:
        model.config.id2label = dict(enumerate(labels))
        model.config.label2id = {label: i for i, label in enumerate(labels)}
    if recipe.method.type == "lora":
        from peft import LoraConfig, get_peft_model

        cfg = recipe.method.lora
        peft_cfg = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                              target_modules=cfg.target_modules, use_rslora=cfg.use_rslora,
                              use_dora=cfg.use_dora, task_type="SEQ_CLS")
        return get_peft_model(model, peft_cfg), tokenizer
    model = apply_method(model, tokenizer, recipe.method, recipe.hparams)
    for name, param in model.named_parameters():
        if name.split(".")[0] in HEAD_NAMES:
            param.requires_grad_(True)  # a fresh head must always learn
    return model, tokenizer


def _tokenizer_from(folder: Path, fallback):
    """The earlier run's tokenizer when it saved one (it may carry a chat-template override)."""
    if not (folder / "tokenizer_config.json").is_file():
        return fallback
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def is_peft(model: Any) -> bool:
    return model.__class__.__module__.startswith("peft.")


def frozen_copy(model):
    """The reference model for full/freeze training: a copy that never trains."""
    import copy

    reference = copy.deepcopy(model)
    for param in reference.parameters():
        param.requires_grad_(False)
    return reference.eval()


def trl_args(config_cls, recipe: Recipe, run: RunContext, has_eval: bool, **extra: Any):
    """A TRL `*Config` from the recipe's hparams (TRL's configs add `max_length`)."""
    return trainer_args(config_cls, recipe, run, has_eval, max_length=recipe.hparams.cutoff_len, **extra)


def trainer_args(config_cls, recipe: Recipe, run: RunContext, has_eval: bool, **extra: Any):
    """HF `TrainingArguments` (or a subclass) from the recipe's hparams; checkpoints go to <run>/checkpoints."""
    hp = recipe.hparams
    if hp.save_every:
        save = {"save_strategy": "steps", "save_steps": hp.save_every}
    else:
        save = {"save_strategy": "epoch" if hp.save_each_epoch else "no"}
    evals = {"eval_strategy": "no"}
    if has_eval:
        evals = {"eval_strategy": "steps", "eval_steps": hp.eval_every} if hp.eval_every else {"eval_strategy": "epoch"}
    warmup = hp.warmup_steps if hp.warmup_steps is not None else hp.warmup_ratio
    return config_cls(
        output_dir=str(run.run_dir / "checkpoints"),
        learning_rate=float(hp.learning_rate),
        per_device_train_batch_size=hp.batch_size,
        per_device_eval_batch_size=hp.batch_size,
        gradient_accumulation_steps=hp.grad_accum,
        num_train_epochs=float(hp.epochs),
        max_steps=hp.max_steps or -1,
        lr_scheduler_type=hp.scheduler,
        warmup_steps=warmup,
        weight_decay=hp.weight_decay,
        max_grad_norm=hp.max_grad_norm or 0.0,
        optim={"adamw": "adamw_torch", "adam": "adamw_torch", "sgd": "sgd", "rmsprop": "rmsprop",
               "adafactor": "adafactor"}[hp.optimizer],
        activation_checkpointing=hp.gradient_checkpointing,  # transformers 5 renamed gradient_checkpointing
        bf16=hp.dtype == "bf16",
        logging_steps=1,
        save_total_limit=hp.keep_last,
        seed=recipe.seed,
        report_to=[],
        disable_tqdm=True,  # the run's Monitor draws the progress bar
        use_cpu=not _cuda(),
        **{**save, **evals, **extra},  # extra may override the save/eval strategy (see early_stopping)
    )


def early_stopping(recipe: Recipe, has_eval: bool) -> tuple[dict[str, Any], list[Any]]:
    """(TrainingArguments overrides, callbacks) for `hparams.early_stopping_patience`: HF's
    EarlyStoppingCallback on the validation loss, checkpoints at each evaluation, the best loaded at the end.
    Callers refuse early stopping without a validation split first (preflight.check_usable)."""
    hp = recipe.hparams
    if not hp.early_stopping_patience or not has_eval:
        return {}, []
    from transformers import EarlyStoppingCallback

    every = {"save_strategy": "steps", "save_steps": hp.eval_every} if hp.eval_every else {"save_strategy": "epoch"}
    args = {"load_best_model_at_end": True, "metric_for_best_model": "eval_loss", "greater_is_better": False, **every}
    return args, [EarlyStoppingCallback(hp.early_stopping_patience, hp.early_stopping_min_delta)]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def monitor_callback(run: RunContext):
    """A TrainerCallback writing TRL's logs to the run's Monitor as train_*/val_* rows."""
    from transformers import TrainerCallback

    from tuneforge.train.monitor import Monitor

    class _ToMonitor(TrainerCallback):
        def __init__(self) -> None:
            self.monitor: Monitor | None = None
            self.last: tuple[float, float | None] | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.monitor = Monitor(run, state.max_steps, start_step=state.global_step).__enter__()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.monitor is None or not logs:
                return
            row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
            summary = "train_runtime" in logs  # the end-of-training averages, not a step
            for key, value in logs.items():
                if not isinstance(value, (int, float)) or key in ("epoch", "step"):
                    continue
                name = key.replace("/", "_")
                if summary:
                    name = "summary_" + name.removeprefix("train_")
                elif name.startswith("eval_"):
                    name = "val_" + name[5:]
                elif name == "loss":
                    name = "train_loss"
                elif name == "learning_rate":
                    name = "lr"
                elif not name.startswith("train_"):
                    name = "train_" + name
                row[name] = float(value)
            self.monitor.log(row)
            if "train_loss" in row:
                self.monitor.advance(state.global_step, row["train_loss"], row.get("lr", 0.0), self._rate(row))

        def _rate(self, row) -> float:
            """Tokens/s from TRL's running `num_tokens` count (0 where a trainer does not log it)."""
            now, tokens = time.monotonic(), row.get("train_num_tokens")
            last, self.last = self.last, (now, tokens)
            if tokens is None or last is None or last[1] is None or now <= last[0]:
                return 0.0
            return (tokens - last[1]) / (now - last[0])

        def on_step_end(self, args, state, control, **kwargs):
            stop_hook = run.extras.get("stop_hook")
            if stop_hook is not None and stop_hook(state.global_step):
                control.should_save = True  # a checkpoint to resume from
                control.should_training_stop = True

        def on_train_end(self, args, state, control, **kwargs):
            if self.monitor is not None:
                self.monitor.close()
                self.monitor = None

    return _ToMonitor()


def quiet_trainer(trainer) -> None:
    """Drop HF's own printer (the Monitor prints progress); keep every other callback."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cls in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cls)


def per_batch_mean_loss(trainer) -> None:
    """For heads that take **kwargs but return a per-batch mean whatever num_items_in_batch says (HF's
    Llama/BERT classification and BERT MLM heads): left to decide, the Trainer took that loss as already
    scaled for accumulation, and loss and gradients came out grad_accum x. So no model is handed the count
    and the Trainer divides by grad_accum."""
    trainer.model_accepts_loss_kwargs, trainer.loss_is_scaled_for_ga = False, False


def resume_checkpoint(recipe: Recipe, run: RunContext) -> str | None:
    """An HF Trainer checkpoint to continue from: `resume: <path>`, or the newest one of this run/name."""
    from transformers.trainer_utils import get_last_checkpoint

    from tuneforge.train.resume_check import check_resume_shape

    value = recipe.resume
    if value in (False, "false", "no", "", None):
        return None
    candidates: list[Path] = []
    if isinstance(value, str) and value not in ("auto", "true", "yes"):
        path = Path(value)
        if path.name.startswith("checkpoint-") and path.is_dir():
            check_resume_shape(recipe, path)
            return str(path)
        candidates = [path / "checkpoints", path]
    else:
        root = Path(recipe.output_dir)
        runs = sorted(root.glob(f"{recipe.name}-*"), key=lambda p: p.stat().st_mtime, reverse=True)
        candidates = [p / "checkpoints" for p in runs]
    for folder in candidates:
        if folder.is_dir():
            found = get_last_checkpoint(str(folder))
            if found:
                check_resume_shape(recipe, Path(found))
                return found
    if value in (True, "true", "yes") or (isinstance(value, str) and value not in ("auto",)):
        raise ConfigError(f"resume: {value}: no HF Trainer checkpoint (checkpoint-N) found for run {recipe.name!r}")
    return None


def save_final(trainer, tokenizer, run: RunContext) -> Path:
    """Weights (adapter or full model) + tokenizer in <run>/final, loadable with `init_from_run`."""
    final = run.final_dir
    trainer.save_model(str(final))
    tokenizer.save_pretrained(str(final))
    return final
