"""Resume: an interrupted and resumed run ends exactly where an uninterrupted one does; checkpoints are atomic."""

from __future__ import annotations

import json

import pytest

from test_train_common import make_recipe, write_chat_data
from tuneforge.errors import ConfigError
from tuneforge.train import checkpoint as ckpt
from tuneforge.train import train
from tuneforge.train.runfolder import read_status


def _recipe(tmp_path, model_dir, *extra):
    # Dropout on, several batches per epoch, accumulation, a schedule and a val split: everything a
    # resume has to restore (RNG, data position, optimizer moments, scheduler) matters here.
    data = [{"path": str(write_chat_data(tmp_path / "train.jsonl", 30))}]
    return make_recipe(tmp_path, model_dir, "hparams.batch_size=4", "hparams.grad_accum=2", "hparams.epochs=3",
                       "hparams.scheduler=cosine", "hparams.warmup_steps=2", "method.lora.dropout=0.3",
                       "hparams.attention_dropout=0.1", "data.val_ratio=0.2", "hparams.save_every=2",
                       "hparams.keep_last=2", *extra, data=data)


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train_loss"] for r in rows if "train_loss" in r], [r["val_loss"] for r in rows if "val_loss" in r]


def test_resumed_run_matches_uninterrupted(tmp_path, tiny_model_dir):
    full = train(_recipe(tmp_path / "a", tiny_model_dir), quiet=True)

    stopped = train(_recipe(tmp_path / "b", tiny_model_dir), quiet=True, stop_hook=lambda step: step == 5)
    assert stopped.status == "stopped" and stopped.final_dir is None
    assert read_status(stopped.run_dir) == "stopped"
    assert ckpt.latest_checkpoint(stopped.run_dir).name == "step-0000005"

    resumed = train(_recipe(tmp_path / "b", tiny_model_dir, "resume=auto"), quiet=True)
    assert resumed.run_dir == stopped.run_dir  # continues in the same folder
    assert resumed.status == "finished" and resumed.steps == full.steps
    assert resumed.train_loss == pytest.approx(full.train_loss, abs=1e-4)
    assert resumed.best_val_loss == pytest.approx(full.best_val_loss, abs=1e-4)
    train_a, val_a = _losses(full.run_dir)
    train_b, val_b = _losses(resumed.run_dir)
    assert len(train_b) == len(train_a)  # rows after the checkpoint were not duplicated
    assert train_b == pytest.approx(train_a, abs=1e-4)
    assert val_b == pytest.approx(val_a, abs=1e-4)
    # keep_last=2 step checkpoints plus the best one
    names = sorted(p.name for p in (resumed.run_dir / "checkpoints").iterdir())
    assert len([n for n in names if n.startswith("step-")]) == 2 and "best" in names


def test_resume_true_without_unfinished_run_is_an_error(tmp_path, tiny_model_dir):
    done = train(make_recipe(tmp_path, tiny_model_dir, "hparams.epochs=2", "hparams.save_each_epoch=true"),
                 quiet=True)
    assert ckpt.latest_checkpoint(done.run_dir) is not None  # checkpoints exist, but the run is finished
    with pytest.raises(ConfigError, match="no run named 't'.*has a complete checkpoint"):
        train(make_recipe(tmp_path, tiny_model_dir, "resume=true"), quiet=True)


def test_incomplete_checkpoints_are_never_chosen(tmp_path, tiny_model, tiny_tokenizer):
    run_dir = tmp_path / "run"
    ckpt.save_checkpoint(run_dir, "step-0000002", tiny_model, {"train": {"global_step": 2}})
    # a write killed before its marker, and a temp folder left by a kill
    broken = ckpt.save_checkpoint(run_dir, "step-0000004", tiny_model, {"train": {"global_step": 4}})
    (broken / ckpt.MARKER).unlink()
    (run_dir / "checkpoints" / ".tmp-step-0000006-123").mkdir()
    assert ckpt.latest_checkpoint(run_dir).name == "step-0000002"
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        ckpt.load_checkpoint(broken, tiny_model)
    ckpt.save_checkpoint(run_dir, "step-0000008", tiny_model, {"train": {"global_step": 8}}, keep_last=1)
    assert [p.name for p in ckpt.list_checkpoints(run_dir)] == ["step-0000008"]
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))


def test_killed_run_reads_as_stopped(tmp_path):
    import platform

    from tuneforge.train.runfolder import write_status

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_status(run_dir, "running")
    (run_dir / "pid").write_text(f"999999999@{platform.node()}\n")  # no such process
    assert read_status(run_dir) == "stopped"
    (run_dir / "pid").write_text(f"{__import__('os').getpid()}@{platform.node()}\n")
    assert read_status(run_dir) == "running"
