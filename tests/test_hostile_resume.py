"""Issue 15 items 9 and 10: resuming checks the checkpoint's files against its own manifest and its shape
against the recipe before loading anything."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from test_train_common import make_recipe
from tuneforge.errors import ConfigError
from tuneforge.train import checkpoint as ckpt
from tuneforge.train import train
from tuneforge.train.runfolder import find_resume_point, write_status


def _stopped_run(tmp_path, tiny_model, steps=(2, 4)):
    """A run folder like a killed run leaves: recipe.yaml, status stopped, step checkpoints."""
    from tuneforge.config.recipe import dump_recipe

    recipe = make_recipe(tmp_path, tmp_path / "model", "resume=auto")
    run_dir = tmp_path / "runs" / "t-20260101-000000"
    dump_recipe(recipe, run_dir / "recipe.yaml")
    write_status(run_dir, "stopped")
    for step in steps:
        ckpt.save_checkpoint(run_dir, f"step-{step:07d}", tiny_model, {"train": {"global_step": step}})
    return recipe, run_dir


def test_marker_lists_every_file_with_its_size(tmp_path, tiny_model):
    path = ckpt.save_checkpoint(tmp_path / "run", "step-0000001", tiny_model, {"train": {}})
    listed = json.loads((path / ckpt.MARKER).read_text())["files"]
    on_disk = {p.name: p.stat().st_size for p in path.iterdir() if p.name != ckpt.MARKER}
    assert listed == on_disk and "weights.safetensors" in listed


@pytest.mark.parametrize("damage, reason", [
    (lambda p: (p / "weights.safetensors").unlink(), "weights.safetensors is missing"),
    (lambda p: (p / "rng.pt").write_bytes(b"x"), "rng.pt has 1 bytes"),
])
def test_resume_auto_skips_a_newest_checkpoint_missing_files(tmp_path, tiny_model, damage, reason):
    recipe, run_dir = _stopped_run(tmp_path, tiny_model)
    newest = run_dir / "checkpoints" / "step-0000004"
    damage(newest)  # e.g. a kill while pruning: COMPLETE is still there
    assert not ckpt.is_valid(newest) and reason in ckpt.invalid_reason(newest)
    out = io.StringIO()
    found = find_resume_point(recipe, Console(file=out, width=300))
    assert found == run_dir / "checkpoints" / "step-0000002"
    assert "skipping checkpoint" in out.getvalue() and reason in out.getvalue()
    with pytest.raises(ValueError, match=reason):
        ckpt.load_checkpoint(newest, tiny_model)


def test_legacy_ok_marker_still_needs_the_weights(tmp_path, tiny_model):
    path = ckpt.save_checkpoint(tmp_path / "run", "step-0000001", tiny_model, {"train": {}})
    (path / ckpt.MARKER).write_text("ok\n")
    assert ckpt.is_valid(path)
    (path / "weights.safetensors").unlink()
    assert ckpt.invalid_reason(path) == "weights.safetensors is missing"


def test_resume_with_another_lora_rank_names_the_difference(tmp_path, tiny_model_dir):
    stopped = train(make_recipe(tmp_path, tiny_model_dir, "method.lora.r=8", "hparams.batch_size=4",
                                "hparams.save_every=1"), quiet=True, stop_hook=lambda step: step == 1)
    assert stopped.status == "stopped"
    resumed = make_recipe(tmp_path, tiny_model_dir, "method.lora.r=16", "method.lora.alpha=8", "resume=auto")
    with pytest.raises(ConfigError) as err:
        train(resumed, quiet=True)
    text = str(err.value)
    assert "method.lora.r: checkpoint 8, recipe 16" in text
    assert "method.lora.alpha: checkpoint 32.0, recipe 8.0" in text
    assert "model.name_or_path" not in text  # only what differs
    same = make_recipe(tmp_path, tiny_model_dir, "method.lora.r=8", "hparams.batch_size=4", "resume=auto")
    assert train(same, quiet=True).status == "finished"
