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


class TrialResources(Section):
    """What one trial reserves on a Ray cluster (`search.backend: ray`); fractions share a GPU."""

    cpu: float = Field(1, gt=0, description="CPU cores; also the trial's torch threads unless hparams.threads")
    gpu: float = Field(0, ge=0, description="GPUs (Ray sets CUDA_VISIBLE_DEVICES for the trial)")


class SearchConfig(Section):
    """`tuneforge search recipe.yaml`: train `trials` variants of the recipe and keep the best by `metric`."""

    trials: int = Field(8, ge=1)
    space: dict[str, SearchParam] = Field(
        default_factory=dict, description="recipe field path (e.g. hparams.learning_rate) -> what to try")
    metric: Literal["val_loss"] = Field("val_loss", description="the best validation loss of each trial")
    direction: Literal["minimize", "maximize"] = "minimize"
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "asha", "none"] = Field(
        "median", description="median: stop a trial whose validation loss trails the median of the others at "
        "the same step; asha: asynchronous successive halving (keep the best quarter at each rung)")
    timeout_s: float | None = Field(None, gt=0, description="stop starting new trials after this long")
    points_to_evaluate: list[dict[str, Any]] = Field(
        default_factory=list, description="values tried first, in order (e.g. the recipe's current ones); "
        "keys are space keys, the others are sampled")
    backend: Literal["optuna", "ray"] = Field(
        "optuna", description="optuna: one trial at a time in this process; ray: trials in parallel on a Ray "
        "cluster (pip install 'tuneforge[cluster]')")
    address: str | None = Field(
        None, description="ray: join this cluster (`auto` after `ray start --head`, or host:port); default: "
        "a local Ray instance sized to this machine")
    resources_per_trial: TrialResources = Field(default_factory=TrialResources)
    max_concurrent: int | None = Field(None, ge=1, description="ray: trials at once (default: what fits)")

    @model_validator(mode="after")
    def _ray_settings_need_ray(self) -> "SearchConfig":
        # By value, not by fields_set: a dumped and re-read recipe carries every field.
        used = [name for name, value in (("address", self.address), ("max_concurrent", self.max_concurrent),
                                         ("resources_per_trial", self.resources_per_trial != TrialResources()))
                if value not in (None, False)]
        if self.backend == "optuna" and used:
            raise ValueError(f"search.{used[0]} is a setting of `backend: ray`; the optuna backend runs one "
                             "trial at a time in this process (set search.backend: ray)")
        return self
