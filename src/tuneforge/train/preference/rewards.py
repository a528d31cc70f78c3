"""Rule-based rewards for PPO, usable from a recipe without writing code:

    method:
      objective: ppo
      options:
        reward_fn: tuneforge.train.preference.rewards:ends_with_word
        reward_kwargs: {word: "thanks"}

A reward function takes `prompts` (plain user text) and `completions` (the sampled answers) as keyword
arguments and returns one float per completion. Write your own the same way and point `reward_fn` at it.
"""

from __future__ import annotations

import re

_WORDS = re.compile(r"[\w']+")


def ends_with_word(prompts: list[str], completions: list[str], word: str = "thanks") -> list[float]:
    """1.0 when the answer's last word is `word`, 0.5 when it appears elsewhere (a denser signal), else 0."""
    target = word.lower()
    scores = []
    for text in completions:
        words = [w.lower() for w in _WORDS.findall(text)]
        scores.append(1.0 if words and words[-1] == target else 0.5 if target in words else 0.0)
    return scores


def concise(prompts: list[str], completions: list[str], max_words: int = 20) -> list[float]:
    """Rewards short, finished answers: 1.0 at one word, falling linearly to 0 at `max_words`."""
    scores = []
    for text in completions:
        n = len(_WORDS.findall(text))
        scores.append(max(0.0, 1.0 - (max(n, 1) - 1) / max(max_words - 1, 1)))
    return scores
