"""The recipe: one pydantic model for a recipe YAML, plus `key.sub=value` overrides.

    recipe = load_recipe("examples/demo.yaml", overrides=["hparams.learning_rate=1e-4"])
"""

from tuneforge.config.recipe import Recipe, load_recipe, parse_recipe, dump_recipe
from tuneforge.config.sections import (
    DataConfig,
    DataSource,
    EvalConfig,
    HParams,
    MethodConfig,
    ModelConfig,
)

__all__ = [
    "Recipe",
    "load_recipe",
    "parse_recipe",
    "dump_recipe",
    "DataConfig",
    "DataSource",
    "EvalConfig",
    "HParams",
    "MethodConfig",
    "ModelConfig",
]
