"""Compression: magnitude pruning, MLP-channel and layer pruning, GGUF round trips, the report, CLI errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from test_train_common import write_chat_data
from trained_tiny import train_tiny_run
from tuneforge.cli import main
from tuneforge.errors import ConfigError
from tuneforge.export.compress import compress_model
from tuneforge.export.prune import block_linears, kept_channels

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = {"speed_tokens": 4, "speed_prompts": 1}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model_dir):
    """A tiny model that has learnt the task, so that removing weights costs measurable loss."""
    return train_tiny_run(tmp_path_factory.mktemp("trained"), tiny_model_dir)


@pytest.fixture(scope="module")
def test_file(tmp_path_factory):
    return write_chat_data(tmp_path_factory.mktemp("data") / "test.jsonl", 16)


def _logits(model):
    ids = torch.tensor([[1, 20, 30, 40, 50]])
    with torch.no_grad():
        return model(ids).logits


def test_unstructured_pruning_reaches_the_sparsity_and_costs_more_the_more_it_removes(tmp_path, trained_run,
                                                                                     test_file):
    reports = {}
    for sparsity in (0.3, 0.7):
        out = tmp_path / f"p{sparsity}"
        result = compress_model(trained_run.final_dir, out, prune=sparsity, data=test_file, **FAST)
        report = json.loads(result.report_path.read_text())
        assert report["pruning"]["reached"] == pytest.approx(sparsity, abs=1e-3)
        model = AutoModelForCausalLM.from_pretrained(out)  # plain transformers, no masks or hooks
        weights = [m.weight for m, _ in block_linears(model)]
        zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
        assert zeros == pytest.approx(sparsity, abs=1e-3)
        assert torch.isfinite(_logits(model)).all()
        pruned, original = report["variants"]["pruned"], report["variants"]["original"]
        assert pruned["parameters"] == original["parameters"]  # zeros are still stored
        assert pruned["nonzero"] < original["nonzero"]
        assert pruned["size_bytes"] == (out / "model.safetensors").stat().st_size
        assert pruned["tokens_per_s"] > 0 and original["tokens_per_s"] > 0
        reports[sparsity] = report
    low, high = reports[0.3]["variants"]["pruned"], reports[0.7]["variants"]["pruned"]
    base = reports[0.3]["variants"]["original"]["metrics"]["loss"]
    assert high["nonzero"] < low["nonzero"]
    assert high["metrics"]["loss"] > low["metrics"]["loss"] > base - 0.05
    assert reports[0.7]["changes"]["pruned"]["loss_delta"] == pytest.approx(high["metrics"]["loss"] - base)


def test_structured_pruning_shrinks_the_model_and_its_gguf_still_quantizes(tmp_path, trained_run, test_file):
    out = tmp_path / "s"
    result = compress_model(trained_run.final_dir, out, prune=0.5, prune_kind="structured", quantize="q8_0",
                            data=test_file, **FAST)
    report = result.report
    assert report["pruning"]["intermediate_size"] == [128, 64]
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.intermediate_size == 64 and model.model.layers[0].mlp.down_proj.in_features == 64
    assert torch.isfinite(_logits(model)).all()
    original, pruned, gguf = (report["variants"][k] for k in ("original", "pruned", "gguf-q8_0"))
    assert pruned["parameters"] < original["parameters"] and pruned["size_bytes"] < original["size_bytes"]
    assert gguf["quantized_tensors"] > 0 and gguf["parameters"] == pruned["parameters"]
    gguf_path = out / f"{trained_run.run_dir.name}-q8_0.gguf"
    back = AutoModelForCausalLM.from_pretrained(out, gguf_file=gguf_path.name)
    assert back.config.intermediate_size == 64
    assert kept_channels(1536, 0.3) == 1088 and kept_channels(100, 0.5) == 50  # 32-blocks where aligned


def test_layer_pruning_drops_decoder_layers(tmp_path, trained_run, test_file):
    result = compress_model(trained_run.final_dir, tmp_path / "l", prune=0.5, prune_kind="layers",
                            data=test_file, **FAST)
    assert result.report["pruning"]["layers_kept"] == [0]
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "l").config.num_hidden_layers == 1
    assert result.report["changes"]["pruned"]["parameter_ratio"] < 0.8


def test_gguf_quantization_round_trip_and_the_run_test_split(tmp_path, trained_run):
    # No --data: a run is scored on its own test split, drawn again with the run's seed.
    result = compress_model(trained_run.run_dir, tmp_path / "q", quantize=["f16", "q4_0"], **FAST)
    report = result.report
    assert report["data"]["split"] == "test" and report["data"]["examples"] == trained_run.stats["test_records"]
    original, f16, q4 = (report["variants"][k] for k in ("original", "gguf-f16", "gguf-q4_0"))
    assert q4["size_bytes"] < f16["size_bytes"] < original["size_bytes"]
    assert f16["metrics"]["loss"] == pytest.approx(original["metrics"]["loss"], abs=2e-3)
    assert q4["metrics"]["loss"] != original["metrics"]["loss"]
    assert abs(q4["metrics"]["loss"] - original["metrics"]["loss"]) < 0.5
    assert q4["tokens_per_s"] is None and "llama.cpp" in q4["speed_note"]
    for row in report["variants"].values():  # every variant: size, loss and its perplexity
        assert row["size_bytes"] > 0 and row["metrics"]["perplexity"] == pytest.approx(
            math.exp(row["metrics"]["loss"]), rel=1e-6)
    assert report["changes"]["gguf-q4_0"]["size_ratio"] == pytest.approx(q4["size_bytes"] / original["size_bytes"])
    assert original["metrics"]["loss"] == pytest.approx(trained_run.stats["test_after"]["loss"], rel=1e-4)
    for path in (tmp_path / "q" / f"{trained_run.run_dir.name}-f16.gguf",
                 tmp_path / "q" / f"{trained_run.run_dir.name}-q4_0.gguf"):
        assert path in result.files and path.stat().st_size > 0


@pytest.mark.parametrize("args, message", [
    (["--prune", "1.5"], "--prune: sparsity must be between 0 and 1"),
    (["--quantize", "q3_k"], "--quantize: 'q3_k' is not one of"),
    (["--prune", "0.3", "--prune-kind", "heads"], "--prune-kind: 'heads' is not one of"),
    ([], "nothing to do"),
])
def test_bad_arguments_print_one_line(tmp_path, tiny_model_dir, capsys, args, message):
    assert main(["compress", str(tiny_model_dir), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr()
    assert message in err.out + err.err and "Traceback" not in err.out + err.err
    assert not (tmp_path / "o").exists()


def test_an_out_that_is_a_file_is_refused_before_loading(tmp_path, tiny_model_dir, test_file, capsys):
    out = tmp_path / "report.json"
    out.write_text("{}")
    assert main(["compress", str(tiny_model_dir), "--out", str(out), "--prune", "0.3", "--data", str(test_file)]) == 2
    err = capsys.readouterr()
    assert f"--out {out}: is a file; expected a folder" in err.err and "Traceback" not in err.out + err.err
    assert out.read_text() == "{}"


def test_a_model_without_data_is_refused(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="--data TEST.jsonl is needed"):
        compress_model(tiny_model_dir, tmp_path / "o", prune=0.3)


def test_cli_prints_the_variants(tmp_path, tiny_model_dir, test_file, capsys):
    code = main(["compress", str(tiny_model_dir), "--out", str(tmp_path / "o"), "--prune", "0.2",
                 "--quantize", "q8_0", "--data", str(test_file), "--speed-tokens", "2", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "pruned" in out and "gguf-q8_0" in out
    report = json.loads((tmp_path / "o" / "compress_report.json").read_text())
    assert report["pruning"]["reached"] == pytest.approx(0.2, abs=1e-3)
    ppl = report["variants"]["pruned"]["metrics"]["perplexity"]
    assert f"{ppl:.4g}" in out  # the table shows the report's numbers
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "o").config.num_hidden_layers == 2


def test_rejected_held_out_rows_are_kept_with_their_reason(tmp_path, tiny_model_dir, test_file, capsys):
    data = tmp_path / "held_out.jsonl"
    data.write_text(test_file.read_text() + '{"messages": [\n', encoding="utf-8")  # a malformed last line
    code = main(["compress", str(tiny_model_dir), "--out", str(tmp_path / "o"), "--prune", "0.2",
                 "--data", str(data), "--limit", "2", "--speed-tokens", "0", "--threads", "1"])
    err = capsys.readouterr()
    assert code == 0 and "Traceback" not in err.out + err.err
    assert "1 row(s) rejected" in err.out + err.err and "held_out.jsonl:17" in err.out + err.err
    rows = [json.loads(line) for line in (tmp_path / "o" / "rejected.jsonl").read_text().splitlines()]
    assert [(r["line"], r["code"]) for r in rows] == [(17, "invalid_json")]
    report = json.loads((tmp_path / "o" / "compress_report.json").read_text())
    assert report["data"]["rejected"] == 1 and report["data"]["rejected_file"].endswith("rejected.jsonl")
