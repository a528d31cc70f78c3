"""`tuneforge eval` / `tuneforge compare`: happy paths on the tiny model folder, one-line errors on bad input."""

from __future__ import annotations

import json

import pytest

from tuneforge.cli import main


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def test_file(tmp_path):
    rows = [
        {"instruction": "Classify the sentiment: I love this product.", "input": "", "output": "positive"},
        {"instruction": "Classify the sentiment: this is terrible.", "input": "", "output": "negative"},
    ] * 3
    path = tmp_path / "test.json"
    path.write_text(json.dumps(rows))
    return path


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err
    return err


def test_eval_writes_report_and_predictions(tiny_model_dir, test_file, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["eval", "--model", str(tiny_model_dir), "--data", str(test_file), "--out", str(out),
               "--max-new-tokens", "3", "--limit", "4"])
    assert rc == 0, capsys.readouterr().err
    rows = (out / "predictions.jsonl").read_text().splitlines()
    assert len(rows) == 4
    report = json.loads((out / "report.json").read_text())
    assert report["models"][0]["task"] == "label" and "accuracy" in report["models"][0]["metrics"]
    assert "report:" in capsys.readouterr().out


def test_compare_accepts_space_separated_models(tiny_model_dir, test_file, tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = main(["compare", "--models", str(tiny_model_dir), str(tiny_model_dir), "--data", str(test_file),
               "--out", str(out), "--max-new-tokens", "2", "--limit", "4", "--metrics", "likelihood"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert len(report["models"]) == 2 and report["ranked_by"] == "loss"
    assert "ranked by loss" in capsys.readouterr().out


def test_missing_data_file(tiny_model_dir, tmp_path, capsys):
    rc = main(["eval", "--model", str(tiny_model_dir), "--data", str(tmp_path / "nope.json")])
    assert rc == 2
    _one_line_error(capsys, "not found", "nope.json")


def test_unknown_metric_suggests(tiny_model_dir, test_file, capsys):
    rc = main(["eval", "--model", str(tiny_model_dir), "--data", str(test_file), "--metrics", "rougel"])
    assert rc == 2
    _one_line_error(capsys, "unknown metric 'rougel'", "did you mean 'rougeL'")


def test_model_and_run_are_exclusive(tiny_model_dir, test_file, capsys):
    rc = main(["eval", "--data", str(test_file)])
    assert rc == 2
    _one_line_error(capsys, "exactly one of --model or --run")


def test_unknown_model(test_file, tmp_path, capsys):
    rc = main(["eval", "--model", str(tmp_path / "no-such-model"), "--data", str(test_file)])
    assert rc == 2
    _one_line_error(capsys)


def test_compare_needs_candidates_and_valid_rank_metric(tiny_model_dir, test_file, capsys):
    assert main(["compare", "--data", str(test_file)]) == 2
    _one_line_error(capsys, "needs candidates")
    assert main(["compare", "--models", str(tiny_model_dir), "--data", str(test_file), "--rank-by", "acc"]) == 2
    _one_line_error(capsys, "unknown metric 'acc'")


@pytest.mark.real
@pytest.mark.slow
def test_compare_real_alias_against_tiny_folder(tiny_model_dir, shared_data, tmp_path, capsys):
    # A mix of an alias (the embedded SmolLM2 GGUF) and an HF folder; the real model must rank first.
    out = tmp_path / "cmp"
    rc = main(["compare", "--models", "smollm2-135m-instruct", str(tiny_model_dir),
               "--data", str(shared_data / "alpaca_en_demo.json"), "--limit", "2", "--max-new-tokens", "8",
               "--metrics", "likelihood,rougeL", "--threads", "1", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["ranked_by"] == "rougeL"
    assert report["ranking"] == ["smollm2-135m-instruct", tiny_model_dir.name]
    real, tiny = report["models"]
    assert real["metrics"]["loss"] < 3.0 < tiny["metrics"]["loss"]


def _fake_run(tmp_path, tiny_model_dir):
    """A finished run folder as the training engine writes it: recipe.yaml, final/ and metrics.jsonl."""
    import shutil

    from tuneforge.config.recipe import Recipe, dump_recipe

    run = tmp_path / "runs" / "sentiment-20260101-000000"
    shutil.copytree(tiny_model_dir, run / "final")
    dump_recipe(Recipe(), run / "recipe.yaml")
    rows = [{"step": s, "train_loss": 4.0 - s, "lr": 1e-4} for s in range(3)] + [{"step": 2, "val_loss": 2.5}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_eval_run_with_calibration_saves_temperature_in_run(tiny_model_dir, test_file, tmp_path, capsys):
    run = _fake_run(tmp_path, tiny_model_dir)
    out = tmp_path / "out"
    rc = main(["eval", "--run", str(run), "--data", str(test_file), "--val", str(test_file), "--out", str(out),
               "--metrics", "auto,calibration", "--max-new-tokens", "2"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((run / "calibration.json").read_text())["labels"] == ["negative", "positive"]
    report = json.loads((out / "report.json").read_text())
    assert report["models"][0]["name"] == f"run:{run.name}"
    assert [p[1] for p in report["loss_curves"]["train_loss"]] == [4.0, 3.0, 2.0]
    assert "val_loss" in report["loss_curves"]
    assert "ece" in report["models"][0]["metrics"]


def test_metric_that_does_not_apply_is_reported(tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "free.json"
    rows = [{"instruction": f"Say something about item {i}.", "input": "", "output": f"A long answer number {i}."}
            for i in range(4)]
    path.write_text(json.dumps(rows))
    rc = main(["eval", "--model", str(tiny_model_dir), "--data", str(path), "--metrics", "exact_match,accuracy",
               "--max-new-tokens", "2", "--out", str(tmp_path / "o")])
    assert rc == 0
    assert "not computed for a text task: accuracy" in capsys.readouterr().err


def test_compare_mixes_models_and_runs(tiny_model_dir, test_file, tmp_path, capsys):
    run = _fake_run(tmp_path, tiny_model_dir)
    out = tmp_path / "cmp"
    # The run is given among --models values: a folder with recipe.yaml is recognised as a run.
    rc = main(["compare", "--models", str(tiny_model_dir), str(run), "--data", str(test_file), "--out", str(out),
               "--metrics", "likelihood", "--limit", "2"])
    assert rc == 0, capsys.readouterr().err
    names = {m["name"] for m in json.loads((out / "report.json").read_text())["models"]}
    assert names == {tiny_model_dir.name, f"run:{run.name}"}
