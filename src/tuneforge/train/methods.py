"""Method setup: turn a loaded model into the thing being trained (full, freeze, LoRA, prompt methods, QLoRA).

Composable functions, reused by the preference trainers:

    check_method_supported(recipe.method)          # before loading anything
    model = apply_method(model, tokenizer, recipe.method, recipe.hparams)
    trainable, total = count_parameters(model)
"""

from __future__ import annotations

import re
from typing import Any, Iterator, TypeVar

import torch
from torch import nn

from tuneforge.config.sections import HParams, MethodConfig
from tuneforge.errors import ConfigError, UnsupportedHere

Options = TypeVar("Options")

PROMPT_METHODS = frozenset({"prompt_tuning", "p_tuning", "prefix_tuning"})
ADAPTER_METHODS = frozenset({"lora", "qlora"}) | PROMPT_METHODS
PREFERENCE_OBJECTIVES = frozenset({"reward", "dpo", "orpo", "kto", "ppo"})
SUPPORTED_OBJECTIVES = (frozenset({"sft", "pretrain", "multitask", "classification", "distill", "mlm",
                                   "contrastive"}) | PREFERENCE_OBJECTIVES)

_LAYER_INDEX = re.compile(r"\.(?:layers|layer|h|blocks)\.(\d+)\.")


def method_options(method: MethodConfig, cls: type[Options]) -> Options:
    """`method.options` validated against the objective's options model (a pydantic model): every problem
    names its field, and the allowed option names follow."""
    from pydantic import ValidationError

    try:
        return cls.model_validate(method.options)
    except ValidationError as exc:
        problems = [f"method.options.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        allowed = ", ".join(cls.model_fields)
        raise ConfigError(f"{'; '.join(problems)} (options of objective={method.objective}: {allowed})") from None


def check_method_supported(method: MethodConfig) -> None:
    """Fail before any loading when this machine or this engine cannot run the request."""
    if method.objective not in SUPPORTED_OBJECTIVES:
        raise UnsupportedHere(
            f"method.objective={method.objective} is not supported by the trainer yet; "
            f"supported: {', '.join(sorted(SUPPORTED_OBJECTIVES))}"
        )
    if method.type != "qlora":
        return
    if not torch.cuda.is_available():
        raise UnsupportedHere(
            "method.type=qlora needs a CUDA GPU (bitsandbytes 4-bit weights) and this machine has none; "
            "the nearest CPU alternative is method.type=lora (same adapters on a full-precision base)"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UnsupportedHere(
            "method.type=qlora needs the bitsandbytes package: pip install 'bitsandbytes>=0.43'"
        ) from None


def apply_method(model: nn.Module, tokenizer: Any, method: MethodConfig, hparams: HParams) -> nn.Module:
    """Set dropout overrides, then make exactly the method's parameters trainable. Returns the model to train."""
    apply_dropout_overrides(model, hparams)
    kind = method.type
    if is_adapter_model(model):  # an adapter continued from an earlier run (model.init_from_run), loaded trainable
        return model
    if kind == "full":
        for param in model.parameters():
            param.requires_grad_(True)
        return model
    if kind == "freeze":
        return _apply_freeze(model, method)
    if kind in ("lora", "qlora"):
        if kind == "qlora":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=hparams.gradient_checkpointing
            )
        return lora_adapter(model, method)
    if kind in PROMPT_METHODS:
        return _apply_prompt(model, tokenizer, method)
    raise ConfigError(f"method.type={kind}: unknown method")  # unreachable: the recipe validates it


def unique_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """The model's parameters with tied weights (e.g. embeddings shared with lm_head) once."""
    seen: set[int] = set()
    for param in model.parameters():
        if id(param) not in seen:
            seen.add(id(param))
            yield param


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, counting tied weights once."""
    trainable = total = 0
    for param in unique_parameters(model):
        n = param.numel()
        if hasattr(param, "quant_storage") or param.__class__.__name__ == "Params4bit":
            n *= 2  # 4-bit weights pack two values per byte
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total


def describe_parameters(model: nn.Module) -> str:
    trainable, total = count_parameters(model)
    pct = 100.0 * trainable / max(total, 1)
    return f"trainable params: {trainable:,} of {total:,} ({pct:.3f}%)"


def is_adapter_model(model: nn.Module) -> bool:
    return model.__class__.__module__.startswith("peft.")


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer block list: the ModuleList with one entry per hidden layer."""
    n_layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    best: nn.ModuleList | None = None
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            if n_layers is None or len(module) == n_layers:
                return module
            best = best or module
    if best is None:
        raise ConfigError("method.type=freeze: could not find the model's layer list")
    return best


def apply_dropout_overrides(model: nn.Module, hparams: HParams) -> None:
    """Dropout rates are read at module construction, so overriding the config alone does nothing:
    set them on the modules (and the config, so the saved model keeps them)."""
    attn, hidden = hparams.attention_dropout, hparams.hidden_dropout
    if attn is None and hidden is None:
        return
    config = getattr(model, "config", None)
    if config is not None:
        for key, value in (("attention_dropout", attn), ("attention_probs_dropout_prob", attn),
                           ("hidden_dropout", hidden), ("hidden_dropout_prob", hidden),
                           ("resid_pdrop", hidden)):
            if value is not None and hasattr(config, key):
                setattr(config, key, value)
    for name, module in model.named_modules():
        in_attention = "attn" in name or "attention" in name
        if attn is not None and isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = attn
        if isinstance(module, nn.Dropout):
            if in_attention and attn is not None:
                module.p = attn
            elif not in_attention and hidden is not None:
                module.p = hidden


def _apply_freeze(model: nn.Module, method: MethodConfig) -> nn.Module:
    cfg = method.freeze
    layers = decoder_layers(model)
    n = len(layers)
    if cfg.freeze_first_n is not None:
        first_trained = cfg.freeze_first_n
    else:
        last_n = 2 if cfg.trainable_last_n is None else cfg.trainable_last_n
        first_trained = n - min(last_n, n)
    if first_trained > n:
        raise ConfigError(f"method.freeze.freeze_first_n={first_trained} but the model has only {n} layers")
    for param in model.parameters():
        param.requires_grad_(False)
    for idx in range(first_trained, n):
        for param in layers[idx].parameters():
            param.requires_grad_(True)
    if cfg.train_embeddings:
        model.get_input_embeddings().weight.requires_grad_(True)
    if cfg.train_head:
        head = model.get_output_embeddings()
        if head is not None:
            for param in head.parameters():
                param.requires_grad_(True)
        for name, module in model.named_modules():
            # The final norm sits between the last layer and the head; it belongs with the head.
            if name.endswith(("model.norm", "final_layernorm", "ln_f")):
                for param in module.parameters():
                    param.requires_grad_(True)
    return model


def linear_module_names(model: nn.Module) -> list[str]:
    names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    return sorted(names)


def lora_adapter(model: nn.Module, method: MethodConfig, *, task_type: str | None = "CAUSAL_LM",
                 within: str | None = None, modules_to_save: list[str] | None = None) -> nn.Module:
    """peft LoRA from `method.lora`. `within`: adapt only linear layers under that module (an encoder's base
    model, so a head tied to the input embeddings stays out); `modules_to_save`: layers trained in full."""
    from peft import LoraConfig, get_peft_model

    cfg = method.lora
    targets = cfg.target_modules
    if isinstance(targets, list):
        available = linear_module_names(model)
        missing = [t for t in targets if t not in available]
        if missing:
            raise ConfigError(
                f"method.lora.target_modules: {missing} not found in the model; "
                f"allowed: 'all-linear' or any of {available}"
            )
    if within is not None:  # full module names: peft matches them exactly
        targets = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)
                   and name.startswith(within + ".") and (targets == "all-linear" or name.rsplit(".", 1)[-1] in targets)]
    peft_cfg = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=targets,
        use_rslora=cfg.use_rslora,
        use_dora=cfg.use_dora,
        task_type=task_type,
        modules_to_save=modules_to_save or None,
    )
    return get_peft_model(model, peft_cfg)


def _apply_prompt(model: nn.Module, tokenizer: Any, method: MethodConfig) -> nn.Module:
    from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, get_peft_model

    cfg = method.prompt
    if method.type == "prompt_tuning":
        peft_cfg = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=cfg.num_virtual_tokens)
    elif method.type == "p_tuning":
        peft_cfg = PromptEncoderConfig(
            task_type="CAUSAL_LM",
            num_virtual_tokens=cfg.num_virtual_tokens,
            encoder_hidden_size=cfg.encoder_hidden_size or model.config.hidden_size,
        )
    else:
        peft_cfg = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=cfg.num_virtual_tokens)
    peft_model = get_peft_model(model, peft_cfg)
    if cfg.init_text:
        if method.type != "prompt_tuning":
            raise ConfigError(
                f"method.prompt.init_text applies to method.type=prompt_tuning only (got {method.type})"
            )
        _init_prompt_from_text(peft_model, tokenizer, cfg.init_text, cfg.num_virtual_tokens)
    return peft_model


def _init_prompt_from_text(peft_model: Any, tokenizer: Any, text: str, n_virtual: int) -> None:
    """Initialise virtual tokens from the embeddings of `text`, repeated to length.

    peft's TEXT init reloads the tokenizer by path; doing it here works for tokenizers that have no
    folder (GGUF-embedded, in-memory) and is the same computation.
    """
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ConfigError("method.prompt.init_text: tokenizes to nothing; give a few words")
    ids = (ids * (n_virtual // len(ids) + 1))[:n_virtual]
    embed = peft_model.get_input_embeddings()
    encoder = peft_model.prompt_encoder[peft_model.active_adapter]
    with torch.no_grad():
        values = embed(torch.tensor(ids, device=embed.weight.device)).detach().clone()
        encoder.embedding.weight.copy_(values.to(encoder.embedding.weight.dtype))


def layer_depth(name: str, n_layers: int) -> int:
    """0 for embeddings/prompt encoders, i+1 for transformer layer i, n_layers+1 for the head and norms after."""
    match = _LAYER_INDEX.search(name)
    if match:
        return int(match.group(1)) + 1
    if "embed" in name or "wte" in name or "wpe" in name or "prompt_encoder" in name:
        return 0
    return n_layers + 1


def load_for_training(model_cfg: Any, method: MethodConfig) -> tuple[nn.Module, Any]:
    """(model, tokenizer): fp32 master weights (bf16 runs use autocast), or 4-bit for QLoRA."""
    if method.type == "qlora":
        return load_quantized(model_cfg)
    if model_cfg.init_from_run:
        return load_from_run(model_cfg, method)
    from tuneforge.models import load_model

    dtype = None if model_cfg.dtype != "auto" else "fp32"
    return load_model(model_cfg, dtype=dtype)


def load_quantized(model_cfg: Any) -> tuple[nn.Module, Any]:
    """NF4 base weights with double quantization (the QLoRA recipe), on the first GPU."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from tuneforge.models import hf_folder, load_tokenizer

    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=compute)
    tokenizer = load_tokenizer(model_cfg)
    model = AutoModelForCausalLM.from_pretrained(
        hf_folder(model_cfg), quantization_config=quant, device_map={"": 0},
        trust_remote_code=model_cfg.trust_remote_code, dtype=compute,
    )
    return model, tokenizer


def load_from_run(model_cfg: Any, method: MethodConfig) -> tuple[nn.Module, Any]:
    """Incremental training: start from an earlier run's final weights.

    A LoRA/prompt adapter is loaded trainable and continued when this run uses the same kind of method;
    a LoRA adapter is merged into the base when this run trains the model itself (full/freeze).
    """
    from pathlib import Path

    from transformers import AutoTokenizer

    from tuneforge.models import load_model
    from tuneforge.train.runs import resolve_run

    folder = Path(model_cfg.init_from_run)
    if not ((folder / "adapter_config.json").is_file() or (folder / "config.json").is_file()):
        info = resolve_run(folder)
        if info.final_dir is None:
            raise ConfigError(f"model.init_from_run: {folder}: the run has no final model (status {info.status})")
        folder = info.final_dir
    base_cfg = model_cfg.model_copy(update={"init_from_run": None})
    if not (folder / "adapter_config.json").is_file():
        model, _ = load_model(base_cfg.model_copy(update={"name_or_path": str(folder)}), dtype="fp32")
        return model, AutoTokenizer.from_pretrained(str(folder))
    import json

    from peft import PeftModel

    from tuneforge.models.adapters import check_adapter_folder

    check_adapter_folder(folder)  # safetensors weights only: never unpickle a previous run's folder
    saved_type = json.loads((folder / "adapter_config.json").read_text()).get("peft_type", "")
    base, _ = load_model(base_cfg, dtype="fp32")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    same = {"LORA": ("lora", "qlora"), "PROMPT_TUNING": ("prompt_tuning",), "P_TUNING": ("p_tuning",),
            "PREFIX_TUNING": ("prefix_tuning",)}.get(saved_type, ())
    if method.type in same:
        return PeftModel.from_pretrained(base, str(folder), is_trainable=True), tokenizer
    if saved_type == "LORA" and method.type in ("full", "freeze"):
        return PeftModel.from_pretrained(base, str(folder)).merge_and_unload(), tokenizer
    raise ConfigError(
        f"model.init_from_run: {folder} holds a {saved_type} adapter, which method.type={method.type} cannot "
        f"continue; allowed: {', '.join(same) or 'the same method'}"
        + (" or full/freeze (the LoRA is merged first)" if saved_type == "LORA" else "")
    )
