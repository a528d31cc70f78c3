"""Saved runs: listing, resolving by name or path, reloading and generating; the CLI verbs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from test_train_common import make_recipe, write_chat_data
from tuneforge.cli import main
from tuneforge.errors import ModelError
from tuneforge.train import train
from tuneforge.train.runs import list_runs, load_run_model, resolve_run


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("runs")
    lora = train(make_recipe(tmp, tiny_model_dir, "name=adapter", "data.val_ratio=0.2", "hparams.epochs=2"),
                 quiet=True)
    full = train(make_recipe(tmp, tiny_model_dir, "name=whole", "method.type=full", "hparams.epochs=2"),
                 quiet=True)
    return tmp / "runs", lora, full


def test_list_and_resolve_runs(two_runs):
    runs_dir, lora, full = two_runs
    infos = {r.name: r for r in list_runs(runs_dir)}
    assert set(infos) == {lora.run_dir.name, full.run_dir.name}
    assert infos[lora.run_dir.name].best_val_loss == pytest.approx(lora.best_val_loss)
    assert infos[full.run_dir.name].best_val_loss is None  # no val split
    assert all(r.status == "finished" and r.steps == 2 for r in infos.values())
    assert resolve_run("adapter", runs_dir).path == lora.run_dir
    assert resolve_run(lora.run_dir / "final").path == lora.run_dir
    assert Path(resolve_run(str(full.run_dir))) == full.run_dir  # RunInfo is path-like
    with pytest.raises(ModelError, match="run not found: nope.*known runs: adapter-"):
        resolve_run("nope", runs_dir)


@pytest.mark.parametrize("which", ["lora", "full"])
def test_saved_run_reloads_and_generates(which, two_runs):
    runs_dir, lora, full = two_runs
    result = lora if which == "lora" else full
    model, tokenizer = load_run_model(result.run_dir)
    assert (type(model).__name__ == "PeftModelForCausalLM") == (which == "lora")
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Classify the sentiment: hello"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    # the adapter that comes back is the trained one, not a fresh init
    if which == "lora":
        lora_params = [p for n, p in model.named_parameters() if "lora_B" in n]
        assert lora_params and any(p.abs().sum() > 0 for p in lora_params)  # B starts at zero


def test_unfinished_run_explains_itself(tmp_path, tiny_model_dir):
    stopped = train(make_recipe(tmp_path, tiny_model_dir, "hparams.epochs=3"), quiet=True,
                    stop_hook=lambda step: step == 1)
    with pytest.raises(ModelError, match="no final model \\(status stopped\\); resume it"):
        load_run_model(stopped.run_dir)


def test_cli_train_and_runs(tmp_path, tiny_model_dir, capsys):
    data = write_chat_data(tmp_path / "d.jsonl", 12)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"name: cli\nmodel: {{name_or_path: {tiny_model_dir}}}\ndata: [{{path: {data}}}]\n"
        f"output_dir: {tmp_path / 'runs'}\nhparams: {{threads: 1, probe_steps: 0, epochs: 1, learning_rate: 0.01}}\n"
    )
    assert main(["train", str(recipe), "--set", "data.val_ratio=0.2"]) == 0
    out = capsys.readouterr().out
    assert "pre-flight" in out and "trainable params" in out and "finished:" in out
    assert main(["runs", "--dir", str(tmp_path / "runs")]) == 0
    assert "cli-" in capsys.readouterr().out
    # bad values: field, allowed values, exit 2, no traceback
    assert main(["train", str(recipe), "--set", "method.type=lorra"]) == 2
    err = capsys.readouterr().err
    assert "method.type" in err and "did you mean 'lora'" in err and "Traceback" not in err
    if not torch.cuda.is_available():
        assert main(["train", str(recipe), "--set", "method.type=qlora"]) == 2
        assert "nearest CPU alternative is method.type=lora" in capsys.readouterr().err
    assert main(["runs", "--dir", str(tmp_path / "none")]) == 0
    assert "no runs" in capsys.readouterr().out


def test_init_from_run_continues_the_adapter(two_runs, tmp_path, tiny_model_dir):
    import json

    _, lora, _ = two_runs
    first = [json.loads(x)["train_loss"] for x in (lora.run_dir / "metrics.jsonl").read_text().splitlines()
             if "train_loss" in x]
    again = train(make_recipe(tmp_path, tiny_model_dir, f"model.init_from_run={lora.run_dir}",
                              "data.val_ratio=0.2", "hparams.max_steps=1", "name=again"), quiet=True)
    row = json.loads((again.run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert row["train_loss"] < first[0] - 0.01  # starts from the trained adapter, not a fresh one
    merged = train(make_recipe(tmp_path, tiny_model_dir, f"model.init_from_run={lora.run_dir}", "method.type=full",
                               "hparams.max_steps=1", "name=merged"), quiet=True)
    assert (merged.final_dir / "config.json").is_file()


def test_a_run_folder_with_a_broken_recipe_or_summary_is_listed_and_stop_says_why(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "broken-20260101-000000"
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text("model: [\n")  # cut off mid-edit
    (run_dir / "summary.json").write_text('{"steps": 3')
    (run_dir / "status").write_text("finished")
    [info] = list_runs(tmp_path / "runs")
    assert (info.name, info.method, info.model, info.status) == ("broken-20260101-000000", "?", "?", "finished")
    assert main(["runs", "--dir", str(tmp_path / "runs")]) == 0
    assert main(["stop", "broken", "--dir", str(tmp_path / "runs")]) == 2
    captured = capsys.readouterr()
    assert "not running (status finished); nothing to stop" in captured.err
    assert "Traceback" not in captured.out + captured.err
