"""A DPO run started from an SFT run (`model.init_from_run`) loads and continues the SFT adapter."""

import json

import pytest
import torch

from tuneforge.config.recipe import parse_recipe
from tuneforge.errors import ConfigError
from tuneforge.train import train
from tuneforge.train.preference.common import load_policy


@pytest.fixture(scope="module")
def sft_run(tiny_model_dir, tmp_path_factory):
    """An SFT-style run folder: <run>/final holds a LoRA adapter with non-zero (trained-looking) weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = tmp_path_factory.mktemp("sft-run")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    torch.manual_seed(3)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    peft_model.save_pretrained(run_dir / "final")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(run_dir / "final")
    return run_dir


def _lora_b(model):
    return {n.replace(".default", ""): p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}


def _recipe(model_dir, init, data, out, steps=2):
    return parse_recipe({
        "name": "dpo-from-sft", "model": {"name_or_path": str(model_dir), "init_from_run": str(init)},
        "data": {"sources": [{"path": str(data)}], "val_ratio": 0.0, "min_examples": 4},
        "method": {"type": "lora", "objective": "dpo"},
        "hparams": {"max_steps": steps, "batch_size": 4, "learning_rate": 1e-2, "cutoff_len": 64,
                    "save_each_epoch": False},
        "output_dir": str(out),
    })


def test_init_from_run_loads_the_sft_adapter_trainable(tiny_model_dir, sft_run, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    saved = _lora_b(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                              sft_run / "final"))
    policy, _ = load_policy(_recipe(tiny_model_dir, sft_run, "unused.jsonl", tmp_path))
    loaded = _lora_b(policy)
    assert saved and loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[k], saved[k]) and loaded[k].abs().sum() > 0 for k in saved)
    assert all(p.requires_grad for n, p in policy.named_parameters() if "lora_" in n)


@pytest.mark.slow
def test_dpo_from_sft_run_continues_the_adapter(tiny_model_dir, sft_run, tmp_path):
    data = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"What is the capital of France? ({i})", "chosen": "Paris.", "rejected": "Bonjour."}
            for i in range(8)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = train(_recipe(tiny_model_dir, sft_run, data, tmp_path), quiet=True)
    config = json.loads((result.final_dir / "adapter_config.json").read_text())
    assert config["r"] == 4  # the SFT adapter's shape, not the recipe's default r=16
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    before = _lora_b(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                               sft_run / "final"))
    after = _lora_b(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                              result.final_dir))
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert moved  # DPO trained the SFT adapter further


def test_init_from_run_must_hold_weights(tiny_model_dir, tmp_path):
    (tmp_path / "empty-run").mkdir()
    with pytest.raises(ConfigError, match="no adapter_config.json or config.json"):
        load_policy(_recipe(tiny_model_dir, tmp_path / "empty-run", "x.jsonl", tmp_path))
