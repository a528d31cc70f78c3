"""The loop end to end: run folder, auto values, answer-only loss, early stopping, divergence, refusals."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from test_train_common import make_recipe, write_chat_data
from tuneforge.errors import DataError
from tuneforge.train import train
from tuneforge.train.monitor import TrainingDiverged
from tuneforge.train.runfolder import RunContext, RunResult, read_status


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_run_folder_has_everything(tmp_path, tiny_model_dir):
    recipe = make_recipe(tmp_path, tiny_model_dir, "hparams.learning_rate=auto", "hparams.epochs=auto",
                         "data.val_ratio=0.25", "hparams.batch_size=4", "hparams.probe_steps=1",
                         "hparams.report_to=[tensorboard]", n=20)
    result = train(recipe, quiet=True)
    run = result.run_dir
    assert run.parent == tmp_path / "runs" and run.name.startswith("t-")
    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert saved["hparams"]["learning_rate"] == 2e-4  # auto for LoRA
    assert saved["hparams"]["epochs"] == 7.0  # 15 train examples: ceil(100 / 15) epochs
    assert result.steps == 7 * 4  # 15 examples / batch 4 = 4 steps per epoch
    manifest = json.loads((run / "manifest.json").read_text())
    assert {"packages", "data_files", "git_commit", "seed", "machine", "torch_threads"} <= set(manifest)
    assert manifest["packages"]["torch"] == torch.__version__
    assert len(next(iter(manifest["data_files"].values()))) == 64  # sha256
    rows = _rows(run)
    assert [r["step"] for r in rows if "train_loss" in r] == list(range(1, 29))
    val_rows = [r for r in rows if "val_loss" in r]
    assert len(val_rows) == 7  # one per epoch
    assert all(math.isclose(r["val_perplexity"], math.exp(r["val_loss"]), rel_tol=1e-4) for r in val_rows)
    assert result.best_val_loss == pytest.approx(min(r["val_loss"] for r in val_rows), abs=1e-6)
    assert (run / "loss.png").stat().st_size > 1000
    assert list((run / "tensorboard").glob("events.*"))
    assert read_status(run) == "finished"
    assert (run / "final" / "adapter_config.json").is_file()
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    assert result.stats["train"]["examples"] == 15 and result.stats["val"]["examples"] == 5
    assert result.stats["probe_s_per_step"] > 0


def test_answer_only_loss_ignores_prompt_tokens(tmp_path, tiny_model_dir):
    """The first logged loss (before any update, whole set in one batch) equals HF's loss on answer labels."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.data.render import IGNORE_INDEX
    from tuneforge.train.tokcache import tokenize_dataset
    from tuneforge.data import read_source

    losses = {}
    for loss_on in ("answer", "all"):
        recipe = make_recipe(tmp_path / loss_on, tiny_model_dir, f"hparams.loss_on={loss_on}", "hparams.max_steps=1",
                             "method.type=full", "hparams.max_grad_norm=null")
        result = train(recipe, quiet=True)
        losses[loss_on] = _rows(result.run_dir)[0]["train_loss"]
        tokens = result.stats["train"]["label_tokens"]
        losses[loss_on + "_tokens"] = tokens
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    records = read_source(str(tmp_path / "answer" / "train.jsonl")).records
    total, count = 0.0, 0
    for ex in tokenize_dataset(records, tokenizer, 1024, "answer").examples:
        ids, labels = torch.tensor([ex.input_ids]), torch.tensor([ex.labels])
        n = int((labels[:, 1:] != IGNORE_INDEX).sum())
        with torch.no_grad():
            total += float(model(input_ids=ids, labels=labels).loss) * n
        count += n
        prompt_end = ex.labels.index(next(l for l in ex.labels if l != IGNORE_INDEX))
        assert all(l == IGNORE_INDEX for l in ex.labels[:prompt_end]) and prompt_end > 5
    assert losses["answer"] == pytest.approx(total / count, abs=1e-4)
    assert losses["answer_tokens"] == count
    assert losses["all_tokens"] > 5 * count  # all-token loss also trains the prompts


def test_early_stopping_stops_and_restores_best(tmp_path, tiny_model_dir):
    from tuneforge.train.runs import load_run_model
    from tuneforge.train.sft import loss_sums
    from tuneforge.train.batching import LengthGroupedBatcher
    from tuneforge.train.tokcache import tokenize_dataset
    from tuneforge.data import read_source

    # Validation answers contradict training answers: val loss falls while the format is learnt, then rises.
    train_file = write_chat_data(tmp_path / "train.jsonl", 12, answer="positive")
    val_file = write_chat_data(tmp_path / "val.jsonl", 6, answer="negative")
    recipe = make_recipe(tmp_path, tiny_model_dir, "method.type=full", "hparams.learning_rate=1e-2",
                         "hparams.max_steps=30", "hparams.eval_every=1", "hparams.early_stopping_patience=2",
                         "hparams.scheduler=constant",
                         data=[{"path": str(train_file), "split": "train"}, {"path": str(val_file), "split": "val"}])
    result = train(recipe, quiet=True)
    vals = [r["val_loss"] for r in _rows(result.run_dir) if "val_loss" in r]
    assert result.steps < 30 and result.best_step < result.steps
    assert result.best_step == result.steps - 2 and vals.index(min(vals)) == result.best_step - 1
    model, tokenizer = load_run_model(result.run_dir)
    examples = tokenize_dataset(read_source(str(val_file)).records, tokenizer, 1024, "answer").examples
    batches = LengthGroupedBatcher(examples, 16, 0, tokenizer.pad_token_id).batches(0)
    loss_sum, n_tokens, _ = loss_sums(model, batches, recipe, torch.device("cpu"), __import__("contextlib").nullcontext)
    assert loss_sum / n_tokens == pytest.approx(result.best_val_loss, abs=1e-5)  # best weights were kept


def test_divergence_stops_with_step_and_hint(tmp_path, tiny_model_dir):
    recipe = make_recipe(tmp_path, tiny_model_dir, "method.type=full", "hparams.optimizer=sgd",
                         "hparams.learning_rate=1e12", "hparams.max_grad_norm=null", "hparams.max_steps=20",
                         "hparams.save_every=1")
    with pytest.raises(TrainingDiverged, match=r"step \d+.*lower learning rate") as err:
        train(recipe, quiet=True)
    run = next((tmp_path / "runs").glob("t-*"))
    assert read_status(run) == "failed"
    step = int(str(err.value).split("step ")[1].split(":")[0])
    from tuneforge.train.checkpoint import latest_checkpoint

    if step > 1:  # the checkpoint of the last good step survives
        assert latest_checkpoint(run).name == f"step-{step - 1:07d}"


def test_supervise_records_how_the_body_ended(tmp_path):
    run = RunContext(recipe=None, run_dir=tmp_path, console=None)

    def interrupted():
        raise KeyboardInterrupt

    def broken():
        raise ValueError("boom")

    with pytest.raises(KeyboardInterrupt):
        run.supervise(interrupted)
    assert read_status(tmp_path) == "stopped"
    with pytest.raises(ValueError, match="boom"):
        run.supervise(broken)
    assert read_status(tmp_path) == "failed" and not (tmp_path / "summary.json").exists()
    result = run.supervise(lambda: RunResult(run_dir=tmp_path, final_dir=None, status="stopped", steps=3))
    assert result.steps == 3 and read_status(tmp_path) == "stopped"
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 3


def test_too_few_examples_and_early_stopping_without_val_are_refused(tmp_path, tiny_model_dir):
    with pytest.raises(DataError, match="only 6 usable training example.*at least 10"):
        train(make_recipe(tmp_path, tiny_model_dir, n=6), quiet=True)
    with pytest.raises(DataError, match="validation split is empty"):
        train(make_recipe(tmp_path, tiny_model_dir, "hparams.early_stopping_patience=2"), quiet=True)
    assert not list((tmp_path / "runs").glob("t-*"))  # refused before a run folder was made


def test_too_few_examples_names_and_files_the_rejected_rows(tmp_path, tiny_model_dir):
    data = write_chat_data(tmp_path / "train.jsonl", 6)
    with data.open("a", encoding="utf-8") as fh:
        fh.write('{"messages": [{"role": "user", "content": "hi"}]}\n{not json\n')
    with pytest.raises(DataError) as err:
        train(make_recipe(tmp_path, tiny_model_dir, data=[{"path": str(data)}]), quiet=True)
    message = str(err.value)
    assert "only 6 usable" in message and "2 row(s) were rejected" in message and f"{data}:7:" in message
    filed = [json.loads(line) for line in (tmp_path / "runs" / "t-rejected.jsonl").read_text().splitlines()]
    assert [(row["line"], row["code"]) for row in filed] == [(7, "no_assistant_turn"), (8, "invalid_json")]


def test_answers_beyond_cutoff_len_are_named_when_nothing_is_left(tmp_path, tiny_model_dir):
    with pytest.raises(DataError, match=r"12 example\(s\) had no answer token within hparams.cutoff_len=8"):
        train(make_recipe(tmp_path, tiny_model_dir, "hparams.cutoff_len=8"), quiet=True)


def test_a_run_files_its_rejected_rows(tmp_path, tiny_model_dir):
    data = write_chat_data(tmp_path / "train.jsonl", 12)
    with data.open("a", encoding="utf-8") as fh:
        fh.write("[1, 2]\n")
    result = train(make_recipe(tmp_path, tiny_model_dir, "hparams.epochs=1", data=[{"path": str(data)}]),
                   quiet=True)
    filed = (result.run_dir / "rejected.jsonl").read_text().splitlines()
    assert len(filed) == 1 and json.loads(filed[0])["line"] == 13
    assert result.stats["rejected_rows"] == 1


def test_text_records_need_pretrain_objective(tmp_path, tiny_model_dir):
    text = tmp_path / "raw.jsonl"
    text.write_text("".join(json.dumps({"text": f"The quick brown fox jumps {i} times."}) + "\n" for i in range(12)))
    with pytest.raises(DataError, match="objective=pretrain"):
        train(make_recipe(tmp_path, tiny_model_dir, data=[{"path": str(text)}]), quiet=True)
    result = train(make_recipe(tmp_path, tiny_model_dir, "method.objective=pretrain", "method.type=full",
                               "hparams.learning_rate=3e-3", data=[{"path": str(text)}]), quiet=True)
    losses = [r["train_loss"] for r in _rows(result.run_dir) if "train_loss" in r]
    assert losses[-1] < losses[0] - 0.1


def test_before_after_evaluation_on_the_test_split(tmp_path, tiny_model_dir):
    recipe = make_recipe(tmp_path, tiny_model_dir, "data.test_ratio=0.25", "hparams.max_steps=3",
                         "method.type=full", "hparams.learning_rate=3e-3", "eval.metrics=[loss, exact_match]",
                         "eval.max_new_tokens=3", n=16)
    result = train(recipe, quiet=True)
    before, after = result.stats["test_before"], result.stats["test_after"]
    assert {"loss", "exact_match"} <= set(before) and set(before) == set(after)
    assert after["loss"] < before["loss"]  # the same 4 held-out examples, scored before and after training
    report = json.loads((result.run_dir / "eval" / "report.json").read_text())
    assert "after" in json.dumps(report) and "before" in json.dumps(report)


@pytest.mark.parametrize("setting", ["hparams.dtype=bf16", "hparams.packing=true",
                                     "hparams.gradient_checkpointing=true"])
def test_training_variants_still_learn(setting, tmp_path, tiny_model_dir):
    result = train(make_recipe(tmp_path, tiny_model_dir, setting, "hparams.epochs=4"), quiet=True)
    losses = [r["train_loss"] for r in _rows(result.run_dir) if "train_loss" in r]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0] - 0.05, losses


def test_missing_tracker_fails_before_loading(tmp_path, monkeypatch):
    import importlib.util

    from tuneforge.errors import UnsupportedHere

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    recipe = make_recipe(tmp_path, tmp_path / "no-model", "hparams.report_to=[mlflow]", data=[{"path": "x.jsonl"}])
    with pytest.raises(UnsupportedHere, match="mlflow needs the mlflow package"):
        train(recipe, quiet=True)


def test_timing_probe_does_not_change_the_result(tmp_path, tiny_model_dir):
    runs = [train(make_recipe(tmp_path / str(n), tiny_model_dir, f"hparams.probe_steps={n}", "hparams.epochs=3",
                              "method.lora.dropout=0.2"), quiet=True) for n in (0, 2)]
    assert runs[1].stats["probe_s_per_step"] > 0 and "probe_s_per_step" not in runs[0].stats
    assert [r["train_loss"] for r in _rows(runs[0].run_dir)] == [r["train_loss"] for r in _rows(runs[1].run_dir)]
