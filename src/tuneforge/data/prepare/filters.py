"""Step 2, filter: empty answers, too short/long (tokens), answers repeating the prompt, language."""

from __future__ import annotations

import difflib
import re
from typing import Any

from tuneforge.data.prepare.config import FilterConfig
from tuneforge.data.prepare.fields import answer_texts, compare_text, prompt_text
from tuneforge.data.prepare.ledger import Item, Ledger
from tuneforge.data.records import Conversation
from tuneforge.errors import UnsupportedHere

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


class TokenCounter:
    """Counts tokens with the model's tokenizer when given, else whitespace-separated words."""

    def __init__(self, tokenizer: Any = None) -> None:
        self.tokenizer = tokenizer
        if tokenizer is None:
            self.name = "whitespace words (no tokenizer given)"
        else:
            self.name = f"tokenizer {getattr(tokenizer, 'name_or_path', '') or type(tokenizer).__name__}"

    def count_many(self, texts: list[str], batch: int = 512) -> list[int]:
        if self.tokenizer is None:
            return [len(t.split()) for t in texts]
        out: list[int] = []
        for start in range(0, len(texts), batch):
            enc = self.tokenizer(texts[start:start + batch], add_special_tokens=False)["input_ids"]
            out.extend(len(ids) for ids in enc)
        return out


def example_lengths(items: list[Item], counter: TokenCounter) -> list[int]:
    return counter.count_many([compare_text(i.record) for i in items])


def squash(text: str) -> str:
    """Case- and punctuation-insensitive form, for exact-duplicate and containment tests."""
    return _NON_WORD.sub(" ", text.casefold()).strip()


def repeats_prompt(prompt: str, answer: str, similarity: float) -> bool:
    p, a = squash(prompt), squash(answer)
    if not p or not a:
        return False
    if p == a:
        return True
    if 2 * min(len(p), len(a)) < similarity * (len(p) + len(a)):
        return False  # ratio() can never reach `similarity`; skips difflib for almost every pair
    matcher = difflib.SequenceMatcher(None, p, a, autojunk=False)
    # quick_ratio is an upper bound on ratio: skips the quadratic exact ratio for most pairs.
    return matcher.quick_ratio() >= similarity and matcher.ratio() >= similarity


def _language_detector(seed: int):
    try:
        from langdetect import DetectorFactory, LangDetectException, detect
    except ImportError:
        raise UnsupportedHere("filter.languages needs langdetect: pip install 'tuneforge[data]'") from None
    DetectorFactory.seed = seed  # langdetect is randomized; a fixed seed makes it deterministic

    def detect_or_none(text: str) -> str | None:
        try:
            return detect(text)
        except LangDetectException:
            return None

    return detect_or_none


def _reason(item: Item, length: int, cfg: FilterConfig, detect) -> tuple[str, str] | None:
    record = item.record
    answers = answer_texts(record)
    if cfg.empty_answer and any(not a.strip() for a in answers):
        return "empty_answer", "an answer/text is empty or whitespace only"
    if getattr(record, "label", None) is not None and not str(record.label).strip():
        return "empty_answer", "the label is empty"
    if cfg.min_tokens is not None and length < cfg.min_tokens:
        return "too_short", f"{length} tokens < min_tokens {cfg.min_tokens}"
    if cfg.max_tokens is not None and length > cfg.max_tokens:
        return "too_long", f"{length} tokens > max_tokens {cfg.max_tokens}"
    prompt = prompt_text(record)
    if cfg.repeat_prompt and prompt and answers:
        # a preference's rejected answer may legitimately be bad, so only the chosen one is checked
        checked = answers if isinstance(record, Conversation) else answers[:1]
        if any(repeats_prompt(prompt, a, cfg.repeat_similarity) for a in checked):
            return "repeats_prompt", "the answer repeats the prompt"
    if detect is not None:
        text = compare_text(record)
        if len(text) >= cfg.language_min_chars:
            lang = detect(text)
            if lang not in cfg.languages:
                return "language", f"detected {lang!r}, allowed {cfg.languages}"
    return None


def run_filter(items: list[Item], cfg: FilterConfig, ledger: Ledger, counter: TokenCounter, seed: int) -> list[Item]:
    if not cfg.enabled:
        return ledger.skip("filter", items, "disabled")
    ledger.begin("filter", items)
    detect = _language_detector(seed) if cfg.languages else None
    lengths = example_lengths(items, counter) if (cfg.min_tokens or cfg.max_tokens) else [0] * len(items)
    kept: list[Item] = []
    for item, length in zip(items, lengths):
        why = _reason(item, length, cfg, detect)
        if why is None:
            kept.append(item)
        else:
            ledger.remove(item, why[0], why[1], tokens=length)
    return ledger.end(kept)
