"""Write a Llama-family model as a GGUF file (llama.cpp / Ollama), unquantized or quantized.

Built on the `gguf` package (llama.cpp's own gguf-py): its writer, its HF→GGUF tensor-name map, its
quantizers and its `SpecialVocab` (merges, special ids, chat template). What it does not ship is the
HF-model converter itself (that lives in llama.cpp's repo, not on PyPI), so the model-level part is here:
hyperparameters, the rotary q/k row order, and the vocabulary. Round trip checked in tests: the file loads
back with transformers' `gguf_file=` and gives the same logits (f32) / the same greedy tokens (q8_0).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.errors import ModelError

ARCHITECTURES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama"}  # llama.cpp runs both as llama
QUANT_TYPES = ("f32", "f16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")


@dataclass
class GGUFExport:
    path: Path
    quant: str
    tensors: int
    quantized_tensors: int  # 2-D weights stored in `quant` (the rest: norms in f32, odd shapes in f16)
    size_bytes: int
    pre_tokenizer: str


def write_gguf(model: Any, tokenizer: Any, path: str | Path, quant: str = "f16", *, name: str = "model",
               pre_tokenizer: str = "default") -> GGUFExport:
    """`model` (a transformers Llama/Mistral causal LM, merged) → one GGUF file at `path`."""
    import gguf

    if quant not in QUANT_TYPES:
        raise ModelError(f"--quant: {quant!r} is not one of {', '.join(QUANT_TYPES)}")
    arch_name = (getattr(model.config, "architectures", None) or [type(model).__name__])[0]
    if type(model).__name__ in ARCHITECTURES:
        arch_name = type(model).__name__
    if arch_name not in ARCHITECTURES:
        raise ModelError(f"GGUF export supports {', '.join(ARCHITECTURES)}; this model is {arch_name} "
                         "(export it as HF safetensors with --format hf and convert with llama.cpp)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), ARCHITECTURES[arch_name])
    _write_hparams(writer, model.config, name, quant)
    _write_vocab(writer, tokenizer, model.config.vocab_size, pre_tokenizer)
    counts = _write_tensors(writer, model, quant)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return GGUFExport(path, quant, counts[0], counts[1], path.stat().st_size, pre_tokenizer)


def _rope_theta(config: Any) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    scaling = getattr(config, "rope_scaling", None) or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind != "default":
        raise ModelError(f"GGUF export: rope scaling {kind!r} is not written yet (only plain RoPE); "
                         "export as HF safetensors (--format hf) and convert with llama.cpp")
    return float(params.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0)


def _write_hparams(writer: Any, config: Any, name: str, quant: str) -> None:
    import gguf

    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads or config.num_attention_heads)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config.vocab_size)
    file_type = {"f32": "ALL_F32", "f16": "MOSTLY_F16"}.get(quant, f"MOSTLY_{quant.upper()}")
    writer.add_file_type(getattr(gguf.LlamaFileType, file_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _write_vocab(writer: Any, tokenizer: Any, n_vocab: int, pre_tokenizer: str) -> None:
    """Byte-level BPE ("gpt2" in GGUF terms): tokens by id with their kind, merges, special ids, template."""
    import gguf

    backend = getattr(tokenizer, "backend_tokenizer", None)
    model_type = type(backend.model).__name__ if backend is not None else type(tokenizer).__name__
    if model_type != "BPE" or backend.decoder is None or "ByteLevel" not in str(backend.decoder):
        raise ModelError(f"GGUF export writes byte-level BPE tokenizers (GPT-2/SmolLM/Llama-3 style); this one is "
                         f"{model_type}: export with --format hf and convert with llama.cpp's script")
    added = tokenizer.added_tokens_decoder  # id -> AddedToken
    tokens, types = [], []
    for token_id in range(n_vocab):
        text = tokenizer.convert_ids_to_tokens(token_id) if token_id < len(tokenizer) else None
        if text is None:  # the embedding is padded past the tokenizer's vocabulary
            tokens.append(f"[PAD{token_id}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(text)
        if token_id in added:
            types.append(gguf.TokenType.CONTROL if added[token_id].special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=n_vocab)
        if tokenizer.chat_template:
            special.chat_template = tokenizer.chat_template
        special.add_to_gguf(writer, quiet=True)
    if not special.merges:
        raise ModelError("GGUF export: the tokenizer has no BPE merges in tokenizer.json; the file would not tokenize")


def permute_rotary(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """HF stores each head's rotary halves as [first half | second half]; llama.cpp wants them interleaved.
    The inverse of what transformers' GGUF loader undoes on the way in."""
    rows = weight.shape[0]
    return (weight.reshape(n_heads, 2, rows // n_heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _write_tensors(writer: Any, model: Any, quant: str) -> tuple[int, int]:
    import gguf
    import torch

    config = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    state = model.state_dict()
    tied = getattr(config, "tie_word_embeddings", False)
    total = quantized = 0
    for hf_name, tensor in state.items():
        if hf_name == "lm_head.weight" and tied:
            continue  # llama.cpp reuses token_embd when output.weight is absent
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            if "rotary_emb" in hf_name:
                continue  # computed, not a weight
            raise ModelError(f"GGUF export: no llama.cpp name for tensor {hf_name}")
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = permute_rotary(data, config.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            data = permute_rotary(data, config.num_key_value_heads or config.num_attention_heads)
        data, qtype = _encode(data, quant)
        writer.add_tensor(gguf_name, data, raw_dtype=qtype)
        total += 1
        quantized += qtype is not None and quant not in ("f32", "f16") and qtype.name.lower() == quant
    return total, quantized


def _encode(data: np.ndarray, quant: str):
    """(array, ggml type or None for plain f32). Norms and biases stay f32, as llama.cpp's converter keeps them."""
    import gguf

    if data.ndim < 2 or quant == "f32":
        return np.ascontiguousarray(data, dtype=np.float32), None
    if quant == "f16":
        return data.astype(np.float16), gguf.GGMLQuantizationType.F16
    qtype = getattr(gguf.GGMLQuantizationType, quant.upper())
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if data.shape[-1] % block:
        return data.astype(np.float16), gguf.GGMLQuantizationType.F16  # rows must be whole blocks
    return gguf.quants.quantize(data, qtype), qtype
