"""Recipe sections. Each is strict (unknown keys fail with a did-you-mean) and documented by its fields."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from tuneforge.config.base import Section
from tuneforge.config.prepare import PrepareConfig

# A number the optimizer can use: finite and > 0 (nan/inf/negative fail at the recipe with the field's name).
PositiveFinite = Annotated[float, Field(gt=0, allow_inf_nan=False)]

DataFormat = Literal[
    "auto", "alpaca", "sharegpt", "openai", "preference", "text", "labelled", "ranking", "kto", "pairs"
]


class ModelConfig(Section):
    """Which base model to start from and how to load it safely."""

    name_or_path: str = Field(
        "smollm2-135m-instruct",
        description="alias (see `tuneforge models`), local HF folder, or .gguf file",
    )
    gguf_file: str | None = Field(None, description="GGUF file name inside a folder")
    tokenizer: str | None = Field(None, description="tokenizer path when it differs from the model")
    trust_remote_code: bool = False
    allow_pickle: bool = Field(False, description="allow pickle .bin weights (unsafe: runs code)")
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    init_from_run: str | None = Field(
        None, description="start from a previous run's adapter/model folder (incremental learning)"
    )
    chat_template: str | None = Field(None, description="override the tokenizer's chat template")


class DataSource(Section):
    """One data source: a file path or a dataset_info.json entry name."""

    path: str | None = None
    name: str | None = Field(None, description="entry name in a LLaMA-Factory dataset_info.json")
    dataset_info: str | None = Field(None, description="path to dataset_info.json (or its folder)")
    format: DataFormat = "auto"
    weight: float = Field(
        1.0, gt=0, description="examples of this source per epoch = rows x weight (2: each row twice; 0.5: half)"
    )
    task: str | None = Field(None, description="task name for multitask runs (default: the file stem)")
    split: Literal["train", "val", "test", "auto"] = "auto"
    columns: dict[str, str] = Field(default_factory=dict, description="rename columns, e.g. text: body")
    max_rows: int | None = Field(None, ge=1)
    ranking_pairs: Literal["all", "adjacent"] = Field(
        "all", description="rows ranking several answers: pair all better/worse answers or only neighbours"
    )
    encoding: str | None = Field(
        None, description="text encoding of the file when it is not UTF-8 (latin-1, cp1252, utf-16-le, ...)"
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        from tuneforge.data.io import check_encoding

        return None if value is None else check_encoding(value)

    @model_validator(mode="after")
    def _path_or_name(self) -> "DataSource":
        if not self.path and not self.name:
            raise ValueError("each data source needs `path` or `name` (a dataset_info.json entry)")
        return self


class DataConfig(Section):
    """Where the examples come from and how they are split."""

    sources: list[DataSource] = Field(default_factory=list)
    variables: dict[str, str] = Field(
        default_factory=dict, description="fill {{name}}-style placeholders in the data"
    )
    strict: bool = Field(False, description="fail on the first invalid row instead of rejecting it")
    val_ratio: float = Field(0.1, ge=0, lt=1)
    test_ratio: float = Field(0.0, ge=0, lt=1)
    min_examples: int = Field(10, ge=1)
    prepare: PrepareConfig = Field(
        default_factory=PrepareConfig, description="data workbench steps (see `tuneforge data prepare`)"
    )

    @model_validator(mode="before")
    @classmethod
    def _list_shorthand(cls, value: Any) -> Any:
        # `data: [ {path: a.json}, ... ]` is shorthand for `data: {sources: [...]}`.
        if isinstance(value, list):
            return {"sources": value}
        return value


class LoraConfig(Section):
    r: int = Field(16, ge=1, le=65536)
    alpha: float = Field(32, gt=0, allow_inf_nan=False)
    dropout: float = Field(0.05, ge=0, lt=1, allow_inf_nan=False)
    target_modules: Union[Literal["all-linear"], list[str]] = "all-linear"
    use_rslora: bool = False
    use_dora: bool = False


class FreezeConfig(Section):
    trainable_last_n: int | None = Field(None, ge=0, description="train only the last N layers")
    freeze_first_n: int | None = Field(None, ge=0, description="freeze the first N layers")
    train_embeddings: bool = False
    train_head: bool = Field(False, description="also train the output head and final norm")

    @model_validator(mode="after")
    def _one_rule(self) -> "FreezeConfig":
        if self.trainable_last_n is not None and self.freeze_first_n is not None:
            raise ValueError("set either `trainable_last_n` or `freeze_first_n`, not both")
        return self


class PromptConfig(Section):
    num_virtual_tokens: int = Field(16, ge=1)
    init_text: str | None = None
    encoder_hidden_size: int | None = None


class MethodConfig(Section):
    """How weights are adapted (`type`) and what is optimized (`objective`)."""

    type: Literal[
        "full", "freeze", "lora", "qlora", "prompt_tuning", "p_tuning", "prefix_tuning"
    ] = "lora"
    objective: Literal[
        "sft", "pretrain", "mlm", "contrastive", "classification", "multitask",
        "reward", "dpo", "orpo", "kto", "ppo", "distill",
    ] = "sft"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    freeze: FreezeConfig = Field(default_factory=FreezeConfig)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    options: dict[str, Any] = Field(
        default_factory=dict, description="objective-specific settings (e.g. dpo beta, loss_type)"
    )


class HParams(Section):
    """Training hyperparameters. `auto` values are resolved from the data and method, then saved."""

    learning_rate: Union[PositiveFinite, Literal["auto"]] = "auto"
    layerwise_lr_decay: float | None = Field(None, gt=0, le=1)
    batch_size: int = Field(4, ge=1, le=1_000_000)
    grad_accum: int = Field(1, ge=1, le=1_000_000)
    epochs: Union[PositiveFinite, Literal["auto"]] = "auto"
    max_steps: int | None = Field(None, ge=1, le=2**53)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    warmup_steps: int | None = Field(None, ge=0, le=2**53)
    scheduler: Literal[
        "linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts"
    ] = "linear"
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)
    attention_dropout: float | None = Field(None, ge=0, lt=1)
    hidden_dropout: float | None = Field(None, ge=0, lt=1)
    max_grad_norm: float | None = Field(1.0, gt=0, allow_inf_nan=False)
    optimizer: Literal["adamw", "adam", "sgd", "rmsprop", "adafactor"] = "adamw"
    momentum: float = Field(0.9, ge=0, lt=1)
    gradient_checkpointing: bool = False
    dtype: Literal["fp32", "bf16", "auto"] = "fp32"
    cutoff_len: int = Field(1024, ge=8, le=2**24)
    loss_on: Literal["answer", "all"] = "answer"
    packing: bool = False
    eval_every: int | None = Field(None, ge=1, description="validate every N optimizer steps")
    save_every: int | None = Field(None, ge=1, description="checkpoint every N optimizer steps")
    save_each_epoch: bool = True
    keep_last: int = Field(2, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1)
    early_stopping_min_delta: float = Field(0.0, ge=0, allow_inf_nan=False)
    report_to: list[Literal["tensorboard", "mlflow"]] = Field(default_factory=list)
    compile: bool = False
    threads: int | None = Field(None, ge=1)
    probe_steps: int = Field(
        2, ge=0, description="optimizer steps timed before training for the estimate (0: skip)"
    )
    loss_chunk_size: int = Field(1024, ge=1, description="tokens per chunk when computing the loss")


class EvalConfig(Section):
    """How a model is evaluated on the test split."""

    data: str | None = Field(None, description="test file (default: the test split)")
    metrics: list[str] = Field(
        default_factory=lambda: ["auto"],
        description="metric names or groups (auto = chosen from the task: text, label or JSON answers)",
    )
    max_new_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    batch_size: int = Field(8, ge=1)
    labels: list[str] | None = None
    group_field: str | None = Field(None, description="meta field holding group attributes")
    before_after: bool = True
    max_examples: int | None = Field(None, ge=1)
    bias_threshold: float = Field(0.1, ge=0, description="fairness gap above which the bias audit warns")

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        from tuneforge.evaluate.metrics import check_metric_names

        check_metric_names(value)  # ValueError with a did-you-mean
        return value
