"""A tiny Llama that has learnt something (full fine-tune on the sentiment-style chat data), as a finished
run folder with a test split: a teacher worth distilling and a model whose quality pruning can hurt."""

from __future__ import annotations

from pathlib import Path

from test_train_common import make_recipe


def train_tiny_run(root: Path, model_dir: Path, *overrides: str, n: int = 32):
    from tuneforge.train import train

    recipe = make_recipe(root, model_dir, "name=teacher", "method.type=full", "hparams.learning_rate=3e-3",
                         "hparams.epochs=8", "hparams.batch_size=8", "data.test_ratio=0.25",
                         "eval.metrics=[likelihood]", *overrides, n=n)
    return train(recipe, quiet=True)
