"""Issue 15 item 7: a truncated or foreign GGUF and an adapter with pickle weights give one-line ModelErrors
(and a 400 from POST /admin/adapters, see test_hostile_serve.py), not struct.error / UnpicklingError."""

from __future__ import annotations

import pytest

from tuneforge.errors import ModelError
from tuneforge.models import load_model
from tuneforge.models.adapters import apply_adapter


@pytest.fixture(scope="module")
def gguf_bytes(tmp_path_factory):
    from tiny import build_tiny_llama, build_tiny_tokenizer
    from tuneforge.export.gguf_export import write_gguf

    tokenizer = build_tiny_tokenizer()
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_gguf(build_tiny_llama(tokenizer), tokenizer, path, "f32")
    return path.read_bytes()


@pytest.mark.parametrize("keep", [0.001, 0.01, 0.5, 0.999])
def test_truncated_gguf_is_a_clear_model_error(gguf_bytes, tmp_path, monkeypatch, keep):
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf_bytes[: int(len(gguf_bytes) * keep)])
    with pytest.raises(ModelError, match=r"cut\.gguf: truncated"):
        load_model(str(cut))
    assert not list((tmp_path / "cache").rglob("config.json"))  # nothing half-converted was cached


def test_file_named_gguf_that_is_not_one(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip, not a model")
    with pytest.raises(ModelError, match="not a GGUF file"):
        load_model(str(fake))


def pickle_adapter(model_dir, out_dir):
    """A LoRA adapter saved the old way: adapter_model.bin (pickle), no safetensors."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(
        out_dir, safe_serialization=False)
    assert (out_dir / "adapter_model.bin").is_file() and not (out_dir / "adapter_model.safetensors").exists()
    return out_dir


def test_adapter_with_pickle_weights_is_refused_before_loading(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    folder = pickle_adapter(tiny_model_dir, tmp_path / "old-adapter")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with pytest.raises(ModelError, match="pickle"):
        apply_adapter(base, folder)
    (folder / "adapter_model.bin").unlink()
    with pytest.raises(ModelError, match="has no weights"):
        apply_adapter(base, folder)
