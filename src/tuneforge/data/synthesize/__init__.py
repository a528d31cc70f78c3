"""LLM-based data synthesis: grow a few seed tasks into many (Self-Instruct / Stanford Alpaca, adapted).

    from tuneforge.data.synthesize import synthesize, LocalGenerator
    result = synthesize("seed_tasks.jsonl", LocalGenerator.load("smollm2-135m-instruct"), n=50, out="synth/")
    result.accepted          # Alpaca rows (instruction, input, output, meta) -> synth/synthetic.jsonl
    result.rejected          # every rejected candidate with its reason -> synth/rejected.jsonl
    result.report            # counts, rejections per reason, ROUGE-L to seeds, distinct-n, tokens/s

`generator` may be any callable `list[str] -> list[str]`; `EndpointGenerator(base_url, model)` talks to an
OpenAI-compatible server (the production path: a strong model served elsewhere).
"""

from tuneforge.config.synthesize import SynthesizeConfig
from tuneforge.data.synthesize.generators import (
    CallableGenerator,
    Completion,
    EndpointGenerator,
    Generator,
    LocalGenerator,
    build_generator,
)
from tuneforge.data.synthesize.pipeline import SynthesisResult, synthesize, synthesize_recipe
from tuneforge.data.synthesize.prompts import ParsedTask, parse_task, task_prompt
from tuneforge.data.synthesize.seeds import Seed, load_seeds

__all__ = [
    "synthesize",
    "synthesize_recipe",
    "SynthesisResult",
    "SynthesizeConfig",
    "load_seeds",
    "Seed",
    "Generator",
    "LocalGenerator",
    "EndpointGenerator",
    "CallableGenerator",
    "Completion",
    "build_generator",
    "parse_task",
    "task_prompt",
    "ParsedTask",
]
