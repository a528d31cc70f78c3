"""Task mixtures: source weights and temperature mixing draw the right examples per epoch; a multitask run
reports validation loss and before/after test metrics per task; bad options are named."""

from __future__ import annotations

import json

import pytest

from test_train_common import make_recipe, write_chat_data
from tuneforge.errors import ConfigError, DataError
from tuneforge.train import train
from tuneforge.train.mixture import EpochSampler, TaskSlices, mixing_counts, task_names
from tuneforge.config.sections import DataSource


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def write_capital_data(path, n=12):
    rows = [{"messages": [{"role": "user", "content": f"What is the capital of France? {i}"},
                          {"role": "assistant", "content": "Paris"}]} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_weights_scale_examples_and_temperature_flattens_the_mix():
    sizes = {"big": 900, "small": 100}
    assert mixing_counts(sizes, {"small": 3.0}, None) == {"big": 900, "small": 300}
    proportional = mixing_counts(sizes, {}, 1.0)
    assert proportional == pytest.approx({"big": 900, "small": 100})
    flat = mixing_counts(sizes, {}, 1000.0)
    assert sum(flat.values()) == pytest.approx(1000)  # the epoch keeps its size
    assert flat["small"] == pytest.approx(500, rel=0.01)  # large T: close to equal shares
    t2 = mixing_counts(sizes, {}, 2.0)
    assert t2["small"] == pytest.approx(1000 * 10 / 40)  # sqrt(100) / (sqrt(900) + sqrt(100))


def test_sampler_repeats_whole_passes_and_draws_fresh_fractions():
    slices = TaskSlices({"a": (0, 4), "b": (4, 10)})
    sampler = EpochSampler(slices, {"a": 8.0, "b": 3.0}, seed=0)
    epoch0, epoch1 = sampler(0), sampler(1)
    assert sorted(i for i in epoch0 if i < 4) == [0, 0, 1, 1, 2, 2, 3, 3]  # weight 2: every row twice
    b0, b1 = [i for i in epoch0 if i >= 4], [i for i in epoch1 if i >= 4]
    assert len(b0) == len(set(b0)) == 3 and len(b1) == 3  # half of b, no repeats within the epoch
    assert sampler(0) == epoch0  # the draw depends on (seed, epoch, task) only
    assert any(sampler(e) != epoch0 for e in range(1, 5))  # other epochs see other halves
    assert EpochSampler(slices, {"a": 4, "b": 6}, 0).is_identity()


def test_task_names_are_unique_and_readable():
    sources = [DataSource(path="data/qa.jsonl"), DataSource(path="other/qa.jsonl"), DataSource(path="x.json", task="my task")]
    assert task_names(sources) == ["qa", "qa-2", "my_task"]


def test_source_weight_changes_examples_per_epoch_in_sft(tmp_path, tiny_model_dir):
    a = write_chat_data(tmp_path / "a.jsonl", 8)
    b = write_capital_data(tmp_path / "b.jsonl", 8)
    data = [{"path": str(a)}, {"path": str(b), "weight": 2.0}]
    result = train(make_recipe(tmp_path, tiny_model_dir, "hparams.epochs=1", "hparams.batch_size=4", data=data),
                   quiet=True)
    assert result.stats["task_mixture"] == {"a": 8, "b": 16}
    assert result.steps == 6  # (8 + 2 x 8) / 4 per epoch; without weights it would be 4
    plain = train(make_recipe(tmp_path / "p", tiny_model_dir, "hparams.epochs=1", "hparams.batch_size=4",
                              data=[{"path": str(a)}, {"path": str(b)}]), quiet=True)
    assert plain.steps == 4 and "task_mixture" not in plain.stats


def test_multitask_reports_each_task(tmp_path, tiny_model_dir):
    data = [{"path": str(write_chat_data(tmp_path / "sentiment.jsonl", 24))},
            {"path": str(write_capital_data(tmp_path / "capital.jsonl", 24)), "task": "capital"}]
    recipe = make_recipe(tmp_path, tiny_model_dir, "method.objective=multitask", "method.type=full",
                         "method.options.temperature=2", "data.val_ratio=0.25", "data.test_ratio=0.2",
                         "hparams.epochs=12", "hparams.batch_size=8", "eval.max_new_tokens=4",
                         "eval.metrics=[exact_match]", data=data)
    result = train(recipe, quiet=True)
    vals = [r for r in _rows(result.run_dir) if "val_loss" in r]
    for row in vals:  # macro average: each task counts the same whatever its token count
        assert row["val_loss"] == pytest.approx((row["val_loss.sentiment"] + row["val_loss.capital"]) / 2, abs=1e-6)
        assert "val_loss_micro" in row
    for task in ("sentiment", "capital"):
        assert vals[-1][f"val_loss.{task}"] < vals[0][f"val_loss.{task}"]
        assert (result.run_dir / "eval" / task / "report.html").is_file()
    before, after = result.stats["test_before"], result.stats["test_after"]
    assert set(before) == set(after) == {"sentiment", "capital"}
    assert after["capital"]["exact_match"] > before["capital"]["exact_match"]  # one answer per task is learnt
    assert set(result.stats["task_mixture"]) == {"sentiment", "capital"}
    assert sum(result.stats["task_train_examples"].values()) == result.stats["train"]["examples"]


def test_multitask_takes_raw_text_tasks_but_sft_does_not(tmp_path, tiny_model_dir):
    text = tmp_path / "notes.txt"
    text.write_text("\n\n".join(f"the quick brown fox jumps over the lazy dog {i}" for i in range(12)))
    data = [{"path": str(write_chat_data(tmp_path / "chat.jsonl", 12))}, {"path": str(text)}]
    result = train(make_recipe(tmp_path, tiny_model_dir, "method.objective=multitask", "hparams.epochs=1",
                               data=data), quiet=True)
    assert result.status == "finished" and result.stats["train"]["examples"] >= 24
    with pytest.raises(DataError, match="set method.objective=pretrain"):
        train(make_recipe(tmp_path, tiny_model_dir, "hparams.epochs=1", data=data), quiet=True)


@pytest.mark.parametrize("option, message", [
    ("method.options.temperature=-1", r"method\.options\.temperature: Input should be greater than 0"),
    ("method.options.tempreature=2", r"method\.options\.tempreature: .*temperature, val_average"),
    ("method.options.val_average=median", r"method\.options\.val_average: .*'macro' or 'micro'"),
])
def test_bad_multitask_options_are_named(tmp_path, tiny_model_dir, option, message):
    with pytest.raises(ConfigError, match=message):
        train(make_recipe(tmp_path, tiny_model_dir, "method.objective=multitask", option), quiet=True)


def test_resumed_mixture_run_matches_uninterrupted(tmp_path, tiny_model_dir):
    def recipe(folder, *extra):
        data = [{"path": str(write_chat_data(folder / "a.jsonl", 10))},
                {"path": str(write_capital_data(folder / "b.jsonl", 10)), "weight": 0.5}]
        return make_recipe(folder, tiny_model_dir, "method.objective=multitask", "hparams.batch_size=4",
                           "hparams.epochs=3", "hparams.save_every=2", "data.val_ratio=0.2", *extra, data=data)

    full = train(recipe(tmp_path / "a"), quiet=True)
    stopped = train(recipe(tmp_path / "b"), quiet=True, stop_hook=lambda step: step == 3)
    assert stopped.status == "stopped"
    resumed = train(recipe(tmp_path / "b", "resume=auto"), quiet=True)
    losses = lambda r: [row["train_loss"] for row in _rows(r.run_dir) if "train_loss" in row]  # noqa: E731
    assert resumed.steps == full.steps and losses(resumed) == pytest.approx(losses(full), abs=1e-4)
