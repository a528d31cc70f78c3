"""The `synthesize:` section: LLM-based data synthesis from a few seed tasks (tuneforge.data.synthesize).

Self-Instruct / Stanford Alpaca, adapted: few-shot prompts of seed (and accepted) tasks -> a new
instruction (+ input) -> its output -> filters with named reasons. Strict like every section.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tuneforge.config.base import Section

# Self-Instruct's list (tasks a text-only model cannot do), matched as whole words, case-insensitive.
DEFAULT_BLOCKLIST: list[str] = [
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
]


class SynthGeneratorConfig(Section):
    """Which model writes the candidates: a local model, or an OpenAI-compatible endpoint."""

    model: str = Field(
        "smollm2-135m-instruct",
        description="local: alias, HF folder, .gguf or a tuneforge run folder; with base_url: the endpoint's model name",
    )
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL of an OpenAI-compatible endpoint, e.g. "
                             "http://127.0.0.1:8000/v1")
        return value

    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the endpoint's key")
    temperature: float = Field(0.8, ge=0, description="sampling temperature for new tasks (0: greedy)")
    top_p: float = Field(0.95, gt=0, le=1)
    output_temperature: float = Field(0.0, ge=0, description="temperature for outputs (output_mode chat)")
    batch_size: int = Field(8, ge=1, description="local: rows per generate call; endpoint: requests in flight")
    threads: int | None = Field(None, ge=1, description="local: torch threads (default: physical cores)")
    timeout_s: float = Field(120.0, gt=0, description="endpoint: seconds per request")


class SynthPromptConfig(Section):
    """How the few-shot prompt is built and how outputs are produced."""

    num_examples: int = Field(4, ge=1, le=16, description="tasks shown per prompt (Self-Instruct: 8)")
    machine_examples: int = Field(
        1, ge=0, description="of those, taken from already accepted synthetic tasks once there are any")
    task_prompt: Literal["completion", "chat"] = Field(
        "completion", description="completion: the model continues the example list; chat: the list is sent as a user message")
    output_mode: Literal["chat", "inline"] = Field(
        "chat", description="chat: a second call answers the new instruction with the chat template; "
        "inline: the output is written in the same completion as the instruction")
    max_task_tokens: int | None = Field(
        None, ge=8, description="new tokens for a task: instruction + input (default 64), + output when inline "
        "(default 64 + max_output_tokens)")
    max_output_tokens: int = Field(192, ge=8, description="new tokens for an output (output_mode chat)")
    example_output_chars: int = Field(400, ge=20, description="inline mode: seed outputs shown are clipped to this")
    header: str | None = Field(None, description="replace the instruction text at the top of the prompt")

    @model_validator(mode="after")
    def _machine_fits(self) -> "SynthPromptConfig":
        if self.machine_examples >= self.num_examples:
            raise ValueError(f"machine_examples ({self.machine_examples}) must be less than num_examples "
                             f"({self.num_examples}): every prompt shows at least one seed")
        return self


class SynthFilterConfig(Section):
    """Each filter rejects with a named reason (written to rejected.jsonl); None / false switches one off."""

    min_instruction_words: int = Field(3, ge=1, description="Self-Instruct drops <= 3 words; here: fewer than this")
    max_instruction_words: int = Field(150, ge=1)
    min_output_words: int = Field(1, ge=1)
    max_output_words: int = Field(400, ge=1)
    rouge_threshold: float | None = Field(
        0.7, gt=0, le=1, description="reject when ROUGE-L F to any seed or accepted instruction is >= this")
    blocklist: list[str] = Field(default_factory=lambda: list(DEFAULT_BLOCKLIST),
                                 description="whole words/phrases that reject an instruction")
    repeat_similarity: float | None = Field(
        0.8, gt=0, le=1, description="reject outputs this similar to (or contained in) the instruction or input")
    max_repetition: float | None = Field(
        0.5, gt=0, le=1, description="reject outputs whose share of repeated word 3-grams is above this (loops)")
    garbage: bool = Field(True, description="reject text that starts with punctuation or is mostly non-letters")
    min_letter_ratio: float = Field(0.5, ge=0, le=1, description="garbage: letters / non-space characters")
    drop_truncated: bool = Field(True, description="reject outputs cut off at max_output_tokens")
    languages: list[str] | None = Field(None, description="keep only these langdetect codes, e.g. [en]")

    @model_validator(mode="after")
    def _ranges(self) -> "SynthFilterConfig":
        for name in ("instruction", "output"):
            low, high = getattr(self, f"min_{name}_words"), getattr(self, f"max_{name}_words")
            if low > high:
                raise ValueError(f"min_{name}_words ({low}) is above max_{name}_words ({high})")
        return self


class SynthesizeConfig(Section):
    """`tuneforge data synthesize`: grow `seeds` to `n` accepted examples with `generator`."""

    seeds: str | None = Field(None, description="seed file: Self-Instruct seed_tasks.jsonl, Alpaca, ShareGPT, OpenAI")
    max_seeds: int | None = Field(None, ge=1, description="use only the first N seeds")
    out: str | None = Field(None, description="output folder (default <output_dir>/<name>-synth)")
    n: int = Field(100, ge=1, description="accepted examples to reach (counting earlier ones when resuming)")
    max_candidates: int | None = Field(
        None, ge=1, description="stop after this many candidates in all (default 10 x n)")
    if_exists: Literal["error", "resume", "overwrite"] = Field(
        "error", description="when the output folder already holds synthetic.jsonl")
    generator: SynthGeneratorConfig = Field(default_factory=SynthGeneratorConfig)
    prompt: SynthPromptConfig = Field(default_factory=SynthPromptConfig)
    filter: SynthFilterConfig = Field(default_factory=SynthFilterConfig)
