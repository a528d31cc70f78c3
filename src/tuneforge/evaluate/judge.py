"""LLM-as-judge through any OpenAI-compatible endpoint (vLLM, llama.cpp server, Ollama, OpenAI, tuneforge serve).

Off by default. `rubric` asks for a 1-10 score of one answer against the reference; `pairwise` asks which of
two answers is better (the order is swapped on odd examples to cancel position bias).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Sequence

from tuneforge.errors import ConfigError, ModelError, UnsupportedHere

RUBRIC_PROMPT = """You are grading an AI assistant's answer.
Question:
{prompt}

Reference answer:
{reference}

Assistant's answer:
{prediction}

Rate the assistant's answer from 1 (wrong or useless) to 10 (as good as the reference) for correctness,
completeness and clarity. Reply with one line: "Score: <1-10>" followed by a short reason."""

PAIRWISE_PROMPT = """You are comparing two AI assistants' answers to the same question.
Question:
{prompt}

Reference answer:
{reference}

Answer A:
{a}

Answer B:
{b}

Which answer is better (more correct, complete and clear)? Reply with one line: "Winner: A", "Winner: B" or
"Winner: tie", followed by a short reason."""

_SCORE = re.compile(r"score\s*[:=]\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_WINNER = re.compile(r"winner\s*[:=]\s*\**\s*(A|B|tie)\b", re.IGNORECASE)


def rubric_prompt(prompt: str, reference: str, prediction: str) -> str:
    return RUBRIC_PROMPT.format(prompt=prompt, reference=reference, prediction=prediction)


def pairwise_prompt(prompt: str, reference: str, a: str, b: str) -> str:
    return PAIRWISE_PROMPT.format(prompt=prompt, reference=reference, a=a, b=b)


def parse_score(reply: str) -> float | None:
    """The 1-10 score scaled to [0, 1]; None when the judge did not follow the format."""
    match = _SCORE.search(reply)
    if not match:
        return None
    value = float(match.group(1))
    return (min(max(value, 1.0), 10.0) - 1.0) / 9.0


def parse_winner(reply: str) -> Literal["A", "B", "tie"] | None:
    match = _WINNER.search(reply)
    if not match:
        return None
    value = match.group(1)
    return "tie" if value.lower() == "tie" else value.upper()  # type: ignore[return-value]


@dataclass
class JudgeConfig:
    base_url: str
    model: str
    api_key: str = "not-needed"
    mode: Literal["rubric", "pairwise"] = "rubric"
    max_tokens: int = 128
    timeout: float = 60.0


class Judge:
    def __init__(self, config: JudgeConfig, client=None):
        if config.mode not in ("rubric", "pairwise"):
            raise ConfigError(f"judge mode must be 'rubric' or 'pairwise', got {config.mode!r}")
        self.config = config
        if client is None:
            try:
                from openai import OpenAI
            except ImportError:
                raise UnsupportedHere("LLM-as-judge needs the openai client: pip install 'tuneforge[eval]'") from None

            client = OpenAI(base_url=config.base_url, api_key=config.api_key, timeout=config.timeout, max_retries=1)
        self.client = client

    def _ask(self, content: str) -> str:
        import openai

        try:
            reply = self.client.chat.completions.create(
                model=self.config.model,
                messages=[{"role": "user", "content": content}],
                temperature=0.0,
                max_tokens=self.config.max_tokens,
            )
        except openai.APIError as exc:  # unreachable endpoint, bad model name, auth: the user's settings
            raise ModelError(f"judge endpoint {self.config.base_url}: {type(exc).__name__}: {exc}") from None
        return reply.choices[0].message.content or ""

    def rubric(self, prompts: Sequence[str], references: Sequence[str], predictions: Sequence[str]) -> list[float | None]:
        return [parse_score(self._ask(rubric_prompt(p, r, y))) for p, r, y in zip(prompts, references, predictions)]

    def pairwise(
        self, prompts: Sequence[str], references: Sequence[str], first: Sequence[str], second: Sequence[str]
    ) -> list[float | None]:
        """Per example: 1.0 when `first` wins, 0.0 when `second` wins, 0.5 for a tie."""
        out: list[float | None] = []
        for i, (p, r, x, y) in enumerate(zip(prompts, references, first, second)):
            swap = i % 2 == 1
            winner = parse_winner(self._ask(pairwise_prompt(p, r, y, x) if swap else pairwise_prompt(p, r, x, y)))
            if winner is None:
                out.append(None)
            elif winner == "tie":
                out.append(0.5)
            else:
                out.append(1.0 if (winner == "A") != swap else 0.0)
        return out


def summarize(scores: Sequence[float | None]) -> dict[str, float]:
    valid = [s for s in scores if s is not None]
    return {
        "judge_score": sum(valid) / len(valid) if valid else float("nan"),
        "judge_parsed": len(valid) / len(scores) if scores else 0.0,
    }
