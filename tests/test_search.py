"""Hyperparameter search: trials are real runs with the sampled fields, the best is kept, the pruner hook
reports validation losses and stops, and bad spaces fail before training."""

from __future__ import annotations

import json

import pytest
import yaml

from test_train_common import make_recipe
from tuneforge.cli import main
from tuneforge.config.recipe import dump_recipe, load_recipe
from tuneforge.errors import ConfigError
from tuneforge.train.search import PruneHook, check_space, search, with_params

LR_SPACE = "search.space={hparams.learning_rate: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}}"


def test_cli_search_trains_each_trial_and_keeps_the_best(tmp_path, tiny_model_dir, capsys):
    recipe = make_recipe(tmp_path, tiny_model_dir, "data.val_ratio=0.25", "hparams.epochs=3", LR_SPACE,
                         "search.trials=3", "search.pruner=none", n=16)
    path = dump_recipe(recipe, tmp_path / "recipe.yaml")
    assert main(["search", str(path), "--quiet"]) == 0
    folder = next((tmp_path / "runs").glob("t-search-*"))
    rows = [json.loads(line) for line in (folder / "trials.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["state"] == "finished" for r in rows)
    for row in rows:  # each trial trained with its own sampled learning rate
        saved = yaml.safe_load((next((folder / f"trial-{row['trial']:03d}").glob("t-t*")) / "recipe.yaml").read_text())
        assert saved["hparams"]["learning_rate"] == pytest.approx(row["params"]["hparams.learning_rate"])
    best = min(rows, key=lambda r: r["value"])
    best_recipe = load_recipe(folder / "best_recipe.yaml")
    assert best_recipe.hparams.learning_rate == pytest.approx(best["params"]["hparams.learning_rate"])
    slowest, fastest = sorted(rows, key=lambda r: r["params"]["hparams.learning_rate"])[::2]
    if fastest["params"]["hparams.learning_rate"] > 30 * slowest["params"]["hparams.learning_rate"]:
        assert fastest["value"] < slowest["value"]  # 3 epochs: a 30x larger rate learns more
    out = capsys.readouterr().out
    assert "best val loss" in out and "best_recipe.yaml" in out


class FakeTrial:
    def __init__(self, prune_after: int) -> None:
        self.reports: list[tuple[float, int]] = []
        self.prune_after = prune_after

    def report(self, value: float, step: int) -> None:
        self.reports.append((value, step))

    def should_prune(self) -> bool:
        return len(self.reports) >= self.prune_after


def test_prune_hook_reports_new_val_losses_and_stops(tmp_path):
    metrics = tmp_path / "t-20260101-000000" / "metrics.jsonl"
    metrics.parent.mkdir()
    hook = PruneHook(FakeTrial(prune_after=2), tmp_path)
    assert hook(1) is False  # no file yet
    metrics.write_text('{"step": 1, "train_loss": 2.0}\n{"step": 2, "val_loss": 1.5}\n{"step": 3, "tr')
    assert hook(3) is False and hook.trial.reports == [(1.5, 2)]  # the half-written line waits
    with metrics.open("a") as fh:
        fh.write('ain_loss": 1.9}\n{"step": 4, "val_loss": 1.4}\n')
    assert hook(4) is True and hook.trial.reports == [(1.5, 2), (1.4, 4)] and hook.pruned
    assert hook(5) is True and len(hook.trial.reports) == 2  # nothing reported twice


def test_bad_spaces_fail_before_training(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="search.space is empty"):
        check_space(make_recipe(tmp_path, tiny_model_dir, "data.val_ratio=0.2"))
    with pytest.raises(ConfigError, match="validation split"):
        check_space(make_recipe(tmp_path, tiny_model_dir, LR_SPACE))
    typo = "search.space={hparams.lerning_rate: {type: float, low: 0.1, high: 0.2}}"
    with pytest.raises(ConfigError, match="lerning_rate.*learning_rate"):
        search(make_recipe(tmp_path, tiny_model_dir, "data.val_ratio=0.2", typo))
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*search*"))
    with pytest.raises(ConfigError, match="low.*< .*high"):
        make_recipe(tmp_path, tiny_model_dir, "search.space={hparams.epochs: {type: int, low: 3, high: 1}}")
    with pytest.raises(ConfigError, match="choices"):
        make_recipe(tmp_path, tiny_model_dir, "search.space={method.lora.r: {type: categorical}}")


def test_with_params_sets_dotted_fields(tmp_path, tiny_model_dir):
    recipe = make_recipe(tmp_path, tiny_model_dir)
    changed = with_params(recipe, {"method.lora.r": 4, "hparams.scheduler": "linear"}, name="x")
    assert (changed.method.lora.r, changed.hparams.scheduler, changed.name) == (4, "linear", "x")
    assert recipe.method.lora.r != 4  # the original is untouched


def test_asha_and_points_to_evaluate_stop_a_clearly_bad_trial(tmp_path, tiny_model_dir):
    # The Optuna backend's side of tests/test_search_ray.py's ASHA test: a good rate first, then one that
    # cannot learn, which trails the only other value at the first rung and is pruned there.
    points = "search.points_to_evaluate=[{hparams.learning_rate: 1.0e-2}, {hparams.learning_rate: 1.0e-5}]"
    recipe = make_recipe(tmp_path, tiny_model_dir, "data.val_ratio=0.25", "hparams.epochs=3", "hparams.batch_size=4",
                         "hparams.eval_every=1", LR_SPACE, points, "search.trials=2", "search.pruner=asha", n=16)
    found = search(recipe, quiet=True)
    assert [(r["trial"], r["state"]) for r in found.trials] == [(0, "complete"), (1, "pruned")]
    assert found.trials[1]["params"]["hparams.learning_rate"] == pytest.approx(1e-5)
    rows = [json.loads(line) for line in (found.search_dir / "trials.jsonl").read_text().splitlines()]
    assert rows[1]["state"] == "pruned" and rows[1]["steps"] < rows[0]["steps"]
    assert found.best_params == {"hparams.learning_rate": pytest.approx(1e-2)}
