"""Issue 15 item 6: hyperparameters that cannot train fail at the recipe, naming the field (no traceback later)."""

from __future__ import annotations

import pytest

from tuneforge.config import load_recipe
from tuneforge.errors import ConfigError


@pytest.mark.parametrize("override, field", [
    ("hparams.learning_rate=-0.001", "hparams.learning_rate"),
    ("hparams.learning_rate=nan", "hparams.learning_rate"),
    ("hparams.learning_rate=.inf", "hparams.learning_rate"),
    ("hparams.learning_rate=0", "hparams.learning_rate"),
    ("hparams.epochs=0", "hparams.epochs"),
    ("hparams.epochs=-2", "hparams.epochs"),
    ("hparams.epochs=.nan", "hparams.epochs"),
    ("hparams.batch_size=0", "hparams.batch_size"),
    ("hparams.grad_accum=-1", "hparams.grad_accum"),
    ("hparams.warmup_steps=-3", "hparams.warmup_steps"),
    ("hparams.weight_decay=.nan", "hparams.weight_decay"),
    ("hparams.weight_decay=-0.1", "hparams.weight_decay"),
    ("hparams.max_steps=0", "hparams.max_steps"),
    ("hparams.cutoff_len=0", "hparams.cutoff_len"),
    ("hparams.max_grad_norm=.inf", "hparams.max_grad_norm"),
    ("method.lora.r=0", "method.lora.r"),
    ("method.lora.alpha=.inf", "method.lora.alpha"),
    ("method.lora.dropout=.nan", "method.lora.dropout"),
    ("seed=1208925819614629174706176", "seed"),  # 2**80
    ("seed=-1", "seed"),
])
def test_untrainable_hparams_are_rejected_with_the_field_name(override, field):
    with pytest.raises(ConfigError) as err:
        load_recipe(None, [override])
    assert f"`{field}`" in str(err.value)


def test_sane_hparams_still_load():
    recipe = load_recipe(None, ["hparams.learning_rate=2e-4", "hparams.epochs=0.5", "seed=4294967295"])
    assert recipe.hparams.learning_rate == pytest.approx(2e-4) and recipe.hparams.epochs == 0.5


@pytest.mark.parametrize("name", ["../outside/escape", "a/b", "a\\b", "..", ".hidden", ""])
def test_run_names_with_path_parts_are_rejected(name):
    with pytest.raises(ConfigError, match="`name`"):
        load_recipe(None, [f"name={name!r}"])
