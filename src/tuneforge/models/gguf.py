"""GGUF -> trainable, saveable Hugging Face folder, converted once and cached.

transformers dequantizes a GGUF file into fp32 weights but flags the model "quantized with GGUF", so
Trainer refuses to train it and `save_pretrained` refuses to save it. We rebuild a fresh model from the
config without `quantization_config`, load the dequantized state dict, and save it as safetensors in a
cache folder. Measured here on SmolLM2-135M: parsing the GGUF takes ~18 s (tokenizer + weights), loading
the cached folder ~1 s, so every later run starts faster than loading the GGUF directly.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from tuneforge.errors import ModelError

MARKER = ".tuneforge-complete"


def converted_folder(gguf_path: Path) -> Path:
    """Return the cached HF folder for `gguf_path`, converting it first if needed."""
    from tuneforge.models.loader import cache_root

    if not gguf_path.is_file():
        raise ModelError(f"{gguf_path}: GGUF file not found")
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_root() / "gguf" / f"{gguf_path.stem}-{key}"
    if (target / MARKER).exists():
        return target
    check_gguf(gguf_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        _convert(gguf_path, staging)
        (staging / MARKER).write_text(str(gguf_path), encoding="utf-8")
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / MARKER).exists():
                raise
            shutil.rmtree(staging)  # a concurrent conversion finished first
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def check_gguf(gguf_path: Path) -> None:
    """Refuse a file that is not a whole GGUF (wrong magic, truncated header, tensor data past the end)
    with one line, before transformers' parser fails on it with a struct.error."""
    import struct

    with open(gguf_path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise ModelError(f"{gguf_path}: not a GGUF file (it starts with {magic!r}, not b'GGUF')")
    try:
        from gguf import GGUFReader
    except ImportError:  # transformers needs it to read GGUF at all and will say so itself
        return
    try:
        reader = GGUFReader(gguf_path)
        end = max((t.data_offset + int(t.n_bytes) for t in reader.tensors), default=0)
    except (struct.error, ValueError, IndexError, KeyError, EOFError, OSError) as exc:
        raise ModelError(f"{gguf_path}: truncated or corrupt GGUF file ({_one_line(exc)}); "
                         "copy or export it again") from None
    size = gguf_path.stat().st_size
    if end > size:
        raise ModelError(f"{gguf_path}: truncated GGUF file: its tensors need {end:,} bytes, "
                         f"the file has {size:,}; copy or export it again")


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _convert(gguf_path: Path, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = gguf_path.parent, gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        flagged = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{gguf_path}: cannot read GGUF: {str(exc).splitlines()[0]}") from None
    config = flagged.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(flagged)(config)
    missing, unexpected = model.load_state_dict(flagged.state_dict(), strict=False)
    # Tied output embeddings show up as "missing" lm_head.weight; anything else is a real mismatch.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ModelError(f"{gguf_path}: dequantized weights do not match the config: {missing or unexpected}")
    model.tie_weights()
    model.generation_config = flagged.generation_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
