"""Export: LoRA merge, GGUF written and read back by transformers, the Ollama Modelfile, CLI errors."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge.cli import main
from tuneforge.config.recipe import dump_recipe, parse_recipe
from tuneforge.errors import ModelError
from tuneforge.export import export_model
from tuneforge.export.gguf_export import write_gguf
from tuneforge.export.ollama import modelfile_text

TEXT = "What is the capital of France? The capital of France is Paris."


def _logits(model, tokenizer, text=TEXT):
    with torch.no_grad():
        return model(tokenizer(text, return_tensors="pt").input_ids).logits


def _read_back(path):
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    return model, AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


@pytest.fixture()
def lora_run(tiny_model_dir, tmp_path):
    """A finished LoRA run folder (recipe.yaml + final/ adapter with non-zero weights) and its peft model."""
    from peft import LoraConfig, get_peft_model

    run_dir = tmp_path / "runs" / "sft-20260101-000000"
    recipe = parse_recipe({"name": "sft", "model": {"name_or_path": str(tiny_model_dir)},
                           "data": {"sources": [{"path": "unused.jsonl"}]}, "method": {"type": "lora"}})
    (run_dir / "final").mkdir(parents=True)
    dump_recipe(recipe, run_dir / "recipe.yaml")
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.2)
    peft_model.save_pretrained(run_dir / "final")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(run_dir / "final")
    return run_dir, peft_model.eval()


def test_gguf_f32_reads_back_with_identical_logits_and_tokens(tiny_model, tiny_tokenizer, tmp_path):
    written = write_gguf(tiny_model, tiny_tokenizer, tmp_path / "m.gguf", "f32")
    model, tokenizer = _read_back(written.path)
    # Exact equality needs the rotary q/k rows reordered the way transformers' loader undoes it.
    assert torch.equal(_logits(model, tiny_tokenizer), _logits(tiny_model, tiny_tokenizer))
    assert tokenizer(TEXT).input_ids == tiny_tokenizer(TEXT).input_ids
    assert tokenizer.eos_token == "<|im_end|>" and model.config.tie_word_embeddings
    assert "<|im_start|>" in tokenizer.chat_template


def test_gguf_q8_0_quantizes_weights_and_keeps_greedy_tokens(tiny_model, tiny_tokenizer, tmp_path):
    f16 = write_gguf(tiny_model, tiny_tokenizer, tmp_path / "f16.gguf", "f16")
    q8 = write_gguf(tiny_model, tiny_tokenizer, tmp_path / "q8.gguf", "q8_0")
    matrices = sum(p.ndim == 2 for n, p in tiny_model.state_dict().items() if n != "lm_head.weight")
    assert q8.quantized_tensors == matrices and f16.quantized_tensors == 0
    assert q8.size_bytes < 0.7 * f16.size_bytes
    model, _ = _read_back(q8.path)
    got, want = _logits(model, tiny_tokenizer), _logits(tiny_model, tiny_tokenizer)
    assert 0 < (got - want).abs().max() < 0.05
    assert torch.equal(got.argmax(-1), want.argmax(-1))


def test_unknown_quant_and_non_llama_models_are_refused(tiny_model, tiny_tokenizer, tmp_path):
    with pytest.raises(ModelError, match="q3_k"):
        write_gguf(tiny_model, tiny_tokenizer, tmp_path / "m.gguf", "q3_k")
    from transformers import BertConfig, BertForMaskedLM

    bert = BertForMaskedLM(BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=32))
    with pytest.raises(ModelError, match="LlamaForCausalLM.*BertForMaskedLM"):
        write_gguf(bert, tiny_tokenizer, tmp_path / "b.gguf")


def test_hf_export_merges_the_adapter(lora_run, tiny_model_dir, tmp_path):
    run_dir, peft_model = lora_run
    result = export_model(run_dir, tmp_path / "merged", format="hf")
    merged = AutoModelForCausalLM.from_pretrained(result.out_dir)
    tokenizer = AutoTokenizer.from_pretrained(result.out_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert torch.allclose(_logits(merged, tokenizer), _logits(peft_model, tokenizer), atol=1e-5)
    assert not torch.allclose(_logits(merged, tokenizer), _logits(base, tokenizer), atol=1e-3)  # adapter counted
    assert not any("lora" in name for name in merged.state_dict())
    record = json.loads((result.out_dir / "export.json").read_text())
    assert record["source"] == f"run {run_dir.name}" and record["merged_adapter"].endswith("final")


def test_ollama_export_of_a_run_by_name(lora_run, tmp_path, monkeypatch):
    run_dir, peft_model = lora_run
    monkeypatch.chdir(run_dir.parent.parent)  # run names resolve under ./runs
    result = export_model("sft", tmp_path / "ollama", format="ollama", quant="f32", name="my model",
                          system="Reply in JSON.")
    gguf_path = tmp_path / "ollama" / "my-model-f32.gguf"
    assert result.files[0] == gguf_path
    model, tokenizer = _read_back(gguf_path)
    assert torch.allclose(_logits(model, tokenizer), _logits(peft_model, tokenizer), atol=1e-5)
    modelfile = (tmp_path / "ollama" / "Modelfile").read_text()
    assert "FROM ./my-model-f32.gguf" in modelfile and 'SYSTEM """Reply in JSON."""' in modelfile
    assert json.loads((tmp_path / "ollama" / "export.json").read_text())["pre_tokenizer"] == "default"


def test_modelfile_for_chatml_and_for_other_templates(tiny_tokenizer):
    text = modelfile_text(tiny_tokenizer, "m.gguf")
    assert 'TEMPLATE """{{- if .System }}<|im_start|>system' in text
    assert 'SYSTEM """You are a helpful assistant."""' in text  # the Jinja template's default system prompt
    assert 'PARAMETER stop "<|im_end|>"' in text and 'PARAMETER stop "<|endoftext|>"' in text
    assert 'PARAMETER stop "<|eot_id|>"' not in text  # not in this vocabulary
    saved = tiny_tokenizer.chat_template
    try:
        tiny_tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{% endfor %}"
        plain = modelfile_text(tiny_tokenizer, "m.gguf", system="Be brief.")
    finally:
        tiny_tokenizer.chat_template = saved
    assert "TEMPLATE \"\"\"" not in plain and 'SYSTEM """Be brief."""' in plain


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    assert main(["export", "no-such-run-or-model", "--out", str(tmp_path / "x")]) == 2
    said = capsys.readouterr()
    assert "no-such-run-or-model" in said.out + said.err
    assert main(["export", "no-such", "--out", str(tmp_path / "x"), "--format", "onnx"]) == 2
    said = capsys.readouterr()
    assert "hf, gguf, ollama" in said.out + said.err


def test_prompt_tuning_adapters_cannot_be_merged(tiny_model_dir):
    from peft import PromptTuningConfig, get_peft_model

    from tuneforge.export.merge import merge_adapter

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    with pytest.raises(ModelError, match="prompt_tuning adapter adds virtual tokens"):
        merge_adapter(model, "runs/x/final")
