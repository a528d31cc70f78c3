"""Candidate filters. Each returns a `Rejection(reason, detail)` or None; the reasons are the keys of the
report's `rejected_by_reason` and the `reason` field of rejected.jsonl.

Task filters run before an output is generated (no compute is spent answering a rejected instruction);
output filters run after. ROUGE-L is Self-Instruct's novelty test: F-measure of the longest common
subsequence of words between the new instruction and each seed / accepted instruction.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Callable

from tuneforge.config.synthesize import SynthFilterConfig
from tuneforge.data.prepare.filters import repeats_prompt, squash
from tuneforge.errors import UnsupportedHere

REASONS = (
    "unparseable", "truncated", "instruction_too_short", "instruction_too_long", "blocklist", "garbage",
    "language", "duplicate", "similar_to_existing", "empty_output", "output_too_short", "output_too_long",
    "output_repeats_instruction", "repetitive_output",
)
LANGUAGE_MIN_CHARS = 20  # langdetect guesses on shorter texts (as data.prepare's filter)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffd]")


@dataclass
class Rejection:
    reason: str
    detail: str


class InstructionPool:
    """Seed and accepted instructions, pre-tokenized once, for the duplicate and ROUGE-L tests."""

    def __init__(self) -> None:
        try:
            from rouge_score import rouge_scorer, tokenizers
        except ImportError:
            raise UnsupportedHere("data synthesis needs rouge-score: pip install 'tuneforge[synthesize]'") from None
        self._tokenizer = tokenizers.DefaultTokenizer(use_stemmer=False)
        # rouge_score's public `score()` re-tokenizes both texts on every call; Stanford Alpaca's generator
        # calls its LCS scorer on pre-tokenized instructions instead, and so do we (pool x candidates pairs).
        self._lcs = rouge_scorer._score_lcs
        self.texts: list[str] = []
        self.origins: list[str] = []  # seed id or synthetic id
        self._tokens: list[list[str]] = []
        self._exact: dict[str, str] = {}

    def tokenize(self, text: str) -> list[str]:
        return self._tokenizer.tokenize(text)

    def add(self, instruction: str, task_input: str, origin: str) -> None:
        self.texts.append(instruction)
        self.origins.append(origin)
        self._tokens.append(self.tokenize(instruction))
        self._exact.setdefault(squash(f"{instruction}\n{task_input}"), origin)

    def __len__(self) -> int:
        return len(self.texts)

    def duplicate_of(self, instruction: str, task_input: str) -> str | None:
        return self._exact.get(squash(f"{instruction}\n{task_input}"))

    def nearest(self, instruction: str, start: int = 0, stop: int | None = None) -> tuple[float, int]:
        """(best ROUGE-L F, index) over pool entries [start, stop); (0.0, -1) when there are none."""
        tokens = self.tokenize(instruction)
        best, where = 0.0, -1
        for i in range(start, len(self._tokens) if stop is None else stop):
            score = self._lcs(self._tokens[i], tokens).fmeasure if tokens else 0.0
            if score > best:
                best, where = score, i
        return best, where


def _words(text: str) -> int:
    return len(text.split())


def _blocked(text: str, blocklist: list[str]) -> str | None:
    lowered = text.casefold()
    for word in blocklist:
        if re.search(rf"\b{re.escape(word.casefold())}\b", lowered):
            return word
    return None


def _garbage_instruction(text: str, cfg: SynthFilterConfig) -> str | None:
    if text[0] in string.punctuation and text[0] not in "\"'([":
        return f"starts with {text[0]!r}"
    if not text[0].isascii():
        return f"starts with a non-ASCII character {text[0]!r}"
    if _CONTROL.search(text):
        return "holds control or replacement characters"
    chars = [c for c in text if not c.isspace()]
    letters = sum(c.isalpha() for c in chars) / max(1, len(chars))
    if letters < cfg.min_letter_ratio:
        return f"letters are {letters:.0%} of the characters (< {cfg.min_letter_ratio:.0%})"
    return None


def language_detector(languages: list[str] | None, seed: int) -> Callable[[str], str | None] | None:
    if not languages:
        return None
    from tuneforge.data.prepare.filters import _language_detector  # the workbench's seeded langdetect

    return _language_detector(seed)


def check_task(instruction: str, task_input: str, cfg: SynthFilterConfig, pool: InstructionPool,
               detect: Callable[[str], str | None] | None) -> tuple[Rejection | None, float, int]:
    """Instruction-level filters, cheapest first. Also returns the nearest pool entry (score, index)."""
    words = _words(instruction)
    if words < cfg.min_instruction_words:
        return Rejection("instruction_too_short", f"{words} words < {cfg.min_instruction_words}"), 0.0, -1
    if words > cfg.max_instruction_words:
        return Rejection("instruction_too_long", f"{words} words > {cfg.max_instruction_words}"), 0.0, -1
    word = _blocked(instruction, cfg.blocklist)
    if word:
        return Rejection("blocklist", f"mentions {word!r}"), 0.0, -1
    if cfg.garbage:
        why = _garbage_instruction(instruction, cfg)
        if why:
            return Rejection("garbage", f"instruction {why}"), 0.0, -1
    if detect is not None and len(f"{instruction}\n{task_input}") >= LANGUAGE_MIN_CHARS:
        lang = detect(f"{instruction}\n{task_input}")
        if lang not in cfg.languages:
            return Rejection("language", f"instruction detected as {lang!r}, allowed {cfg.languages}"), 0.0, -1
    dup = pool.duplicate_of(instruction, task_input)
    if dup is not None:
        return Rejection("duplicate", f"same instruction and input as {dup}"), 1.0, pool.origins.index(dup)
    score, where = pool.nearest(instruction)
    similar = similar_rejection(score, where, cfg, pool)
    return similar, score, where


def similar_rejection(score: float, where: int, cfg: SynthFilterConfig, pool: InstructionPool) -> Rejection | None:
    if cfg.rouge_threshold is None or where < 0 or score < cfg.rouge_threshold:
        return None
    return Rejection("similar_to_existing", f"ROUGE-L {score:.3f} >= {cfg.rouge_threshold} with "
                                            f"{pool.origins[where]}: {pool.texts[where][:120]!r}")


def repetition(text: str, n: int = 3) -> float:
    """Share of word n-grams that repeat an earlier one: 0 for fresh text, near 1 for a loop."""
    words = squash(text).split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if len(grams) >= 2 * n else 0.0


def check_output(instruction: str, task_input: str, output: str, finished: bool | None,
                 cfg: SynthFilterConfig, detect: Callable[[str], str | None] | None) -> Rejection | None:
    if not output.strip():
        return Rejection("empty_output", "the output is empty")
    if cfg.drop_truncated and finished is False:
        return Rejection("truncated", "the output was cut off at the token limit")
    words = _words(output)
    if words < cfg.min_output_words:
        return Rejection("output_too_short", f"{words} words < {cfg.min_output_words}")
    if words > cfg.max_output_words:
        return Rejection("output_too_long", f"{words} words > {cfg.max_output_words}")
    if cfg.repeat_similarity is not None:
        why = _repeats(instruction, task_input, output, cfg.repeat_similarity)
        if why:
            return Rejection("output_repeats_instruction", why)
    if cfg.max_repetition is not None:
        share = repetition(output)
        if share > cfg.max_repetition:
            return Rejection("repetitive_output", f"{share:.0%} of its word 3-grams repeat (> {cfg.max_repetition:.0%})")
    if cfg.garbage and _CONTROL.search(output):
        return Rejection("garbage", "output holds control or replacement characters")
    if detect is not None and len(output) >= LANGUAGE_MIN_CHARS:
        lang = detect(output)
        if lang not in cfg.languages:
            return Rejection("language", f"output detected as {lang!r}, allowed {cfg.languages}")
    return None


def _repeats(instruction: str, task_input: str, output: str, similarity: float) -> str | None:
    for name, text in (("instruction", instruction), ("input", task_input)):
        if text and repeats_prompt(text, output, similarity):
            return f"the output repeats the {name} (similarity >= {similarity})"
    # A copied sentence of the prompt; short outputs (labels, numbers) may rightly be words of the input.
    out = squash(output)
    if len(out.split()) >= 5 and out in squash(f"{instruction} {task_input}"):
        return "the output is a copy of part of the instruction/input"
    return None
