"""An Ollama Modelfile beside an exported GGUF: `ollama create NAME -f Modelfile` then `ollama run NAME`.

Ollama prompts with a Go template, not the model's Jinja chat template. For ChatML models (SmolLM2, Qwen,
the tiny test model) the Go template is written out, with the Jinja template's default system prompt; for
other templates it is left to Ollama, which recognises the common ones from the GGUF's
`tokenizer.chat_template`. Stop words are the end-of-turn markers the tokenizer actually has.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tuneforge.models.stopping import END_OF_TURN_MARKERS, has_token

CHATML_TEMPLATE = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""
_SYSTEM_TURN = re.compile(r"<\|im_start\|>system\n(.+?)<\|im_end\|>", re.S)


def default_system_prompt(tokenizer: Any) -> str | None:
    """The system prompt a ChatML template inserts when a conversation has none (SmolLM2: "You are a
    helpful AI assistant named SmolLM…"), read off a rendered one-turn conversation."""
    from jinja2 import TemplateError

    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    except (TemplateError, ValueError, TypeError, KeyError, IndexError):
        return None  # a template that needs more than one plain user turn: no default to copy
    found = _SYSTEM_TURN.search(text)
    return found.group(1) if found else None


def modelfile_text(tokenizer: Any, gguf_name: str, *, system: str | None = None,
                   temperature: float | None = None, num_ctx: int | None = None) -> str:
    template = tokenizer.chat_template or ""
    lines = [f"# Written by tuneforge export. Build: ollama create <name> -f Modelfile", f"FROM ./{gguf_name}"]
    if "<|im_start|>" in template:
        lines.append(f'TEMPLATE """{CHATML_TEMPLATE}"""')
        system = system if system is not None else default_system_prompt(tokenizer)
    else:
        lines.append("# TEMPLATE: taken by Ollama from the GGUF's tokenizer.chat_template")
    if system:
        lines.append(f'SYSTEM """{system}"""')
    for marker in END_OF_TURN_MARKERS:
        if has_token(tokenizer, marker):
            lines.append(f'PARAMETER stop "{marker}"')
    if temperature is not None:
        lines.append(f"PARAMETER temperature {temperature}")
    if num_ctx:
        lines.append(f"PARAMETER num_ctx {num_ctx}")
    return "\n".join(lines) + "\n"


def write_modelfile(folder: str | Path, tokenizer: Any, gguf_name: str, **options: Any) -> Path:
    path = Path(folder) / "Modelfile"
    path.write_text(modelfile_text(tokenizer, gguf_name, **options), encoding="utf-8")
    return path
