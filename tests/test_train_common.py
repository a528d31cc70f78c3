"""Shared helpers for the training tests (no tests here): tiny chat data and fast recipes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneforge.config.recipe import Recipe, apply_override, parse_recipe

PROMPTS = ["I love this product", "this is terrible", "good morning", "what a lazy dog", "the quick brown fox",
           "give three tips", "who are you", "hello hi"]


def write_chat_data(path: Path, n: int = 12, answer: str | None = None) -> Path:
    """OpenAI-messages JSONL: sentiment-style prompts with one-word answers."""
    rows = []
    for i in range(n):
        reply = answer or ("positive" if i % 2 else "negative")
        rows.append({"messages": [
            {"role": "user", "content": f"Classify the sentiment: {PROMPTS[i % len(PROMPTS)]} {i}"},
            {"role": "assistant", "content": reply},
        ]})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_recipe(tmp_path: Path, model_dir: Path, *overrides: str, data: list[dict[str, Any]] | None = None,
                n: int = 12) -> Recipe:
    """A fast recipe on the tiny model: one thread, no timing probe, whole-set batches, no val split."""
    if data is None:
        data = [{"path": str(write_chat_data(tmp_path / "train.jsonl", n))}]
    raw: dict[str, Any] = {
        "name": "t",
        "model": {"name_or_path": str(model_dir)},
        "data": {"sources": data, "val_ratio": 0.0},
        "method": {"type": "lora"},
        "output_dir": str(tmp_path / "runs"),
        "hparams": {"learning_rate": 1e-2, "epochs": 6, "batch_size": 16, "threads": 1, "probe_steps": 0,
                    "save_each_epoch": False},
    }
    for item in overrides:
        apply_override(raw, item)
    return parse_recipe(raw)
