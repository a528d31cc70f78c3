"""The `search:` section: which recipe fields a hyperparameter search varies, and how it runs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from tuneforge.config.base import Section


class SearchParam(Section):
    """One searched field. `float`/`int` sample between low and high (log scale with `log: true`);
    `categorical` picks one of `choices`."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, description="grid step for float/int (not with log)")
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> "SearchParam":
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty `choices` list")
            return self
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"{self.type} needs `low` < `high`, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError("log scale needs `low` > 0")
        if self.log and self.step is not None:
            raise ValueError("`step` and `log: true` cannot be combined")
        return self


class SearchConfig(Section):
    """`tuneforge search recipe.yaml`: train `trials` variants of the recipe and keep the best by `metric`."""

    trials: int = Field(8, ge=1)
    space: dict[str, SearchParam] = Field(
        default_factory=dict, description="recipe field path (e.g. hparams.learning_rate) -> what to try")
    metric: Literal["val_loss"] = Field("val_loss", description="the best validation loss of each trial")
    direction: Literal["minimize", "maximize"] = "minimize"
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "none"] = Field(
        "median", description="stop a trial whose validation loss trails the median of earlier trials")
    timeout_s: float | None = Field(None, gt=0, description="stop starting new trials after this long")
