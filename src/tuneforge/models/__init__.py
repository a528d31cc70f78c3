"""Model loading: aliases for the embedded defaults, local HF folders and GGUF files.

    model, tokenizer = load_model("smollm2-135m-instruct")
"""

from tuneforge.models.loader import (
    ResolvedModel,
    hf_folder,
    load_model,
    load_tokenizer,
    model_kind,
    resolve_model,
)
from tuneforge.models.registry import ALIASES, DEFAULT_MODEL

__all__ = [
    "ALIASES",
    "DEFAULT_MODEL",
    "ResolvedModel",
    "hf_folder",
    "load_model",
    "load_tokenizer",
    "model_kind",
    "resolve_model",
]
