"""Comparative ranking: a prompt with several ranked answers becomes preference pairs.

A ranking row looks like
    {"prompt": "...", "responses": [{"text": "...", "rank": 1}, {"text": "...", "rank": 2}, ...]}
(`prompt` may also be `instruction` [+ `input`], or a `messages`/`conversations` list ending with a user
turn; an answer's text may be under `text`, `content`, `response` or `value`). Rank 1 is the best answer;
equal ranks are ties and never form a pair.

`pairs="all"` pairs every better answer with every worse one (n*(n-1)/2 pairs without ties): most signal
per prompt, but one prompt dominates the batch. `pairs="adjacent"` pairs only neighbouring rank levels
(n-1 pairs): fewer, harder comparisons, each prompt weighted more evenly.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, Literal

from tuneforge.data.formats import RowProblem
from tuneforge.data.records import Conversation, Preference, Turn

PairMode = Literal["all", "adjacent"]
TEXT_KEYS = ("text", "content", "response", "value", "answer")
ROLE_ALIASES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant"}


class RankingRowError(RowProblem):
    """A ranking row cannot be expanded; the reader turns it into a `RowIssue` (code, field, message)."""

    def __init__(self, field: str, message: str, code: str = "wrong_type") -> None:
        super().__init__(code, field, message)


def expand_ranking_row(row: dict[str, Any], pairs: PairMode = "all") -> list[Preference]:
    """Expand one ranked row into (chosen, rejected) pairs; raises `RankingRowError` on a bad row."""
    if pairs not in ("all", "adjacent"):
        raise RankingRowError("ranking_pairs", f"expected 'all' or 'adjacent', got {pairs!r}")
    prompt = ranking_prompt(row)
    answers = _ranked_answers(row)
    meta = {k: row[k] for k in ("id", "source", "line") if k in row}
    out: list[Preference] = []
    for better, worse in _pair_indices(answers, pairs):
        (b_text, b_rank), (w_text, w_rank) = answers[better], answers[worse]
        if b_text.strip() == w_text.strip():
            continue  # the same text ranked twice carries no preference
        pair_meta = {**meta, "rank_chosen": b_rank, "rank_rejected": w_rank,
                     "n_responses": len(answers), "ranking_pairs": pairs}
        out.append(Preference(prompt=prompt, chosen=b_text, rejected=w_text, meta=pair_meta))
    return out


def _pair_indices(answers: list[tuple[str, float]], pairs: PairMode) -> list[tuple[int, int]]:
    """(better, worse) index pairs, best pairs first; ties (equal rank) never pair."""
    order = sorted(range(len(answers)), key=lambda i: answers[i][1])
    if pairs == "all":
        return [(a, b) for a, b in combinations(order, 2) if answers[a][1] < answers[b][1]]
    levels = sorted({rank for _, rank in answers})
    groups = [[i for i in order if answers[i][1] == level] for level in levels]
    return [(a, b) for upper, lower in zip(groups, groups[1:]) for a in upper for b in lower]


def _ranked_answers(row: dict[str, Any]) -> list[tuple[str, float]]:
    responses = row.get("responses")
    if not isinstance(responses, list):
        raise RankingRowError("responses", f"expected a list of {{text, rank}}, got {type(responses).__name__}",
                              "missing_field" if responses is None else "wrong_type")
    if len(responses) < 2:
        raise RankingRowError("responses", f"expected at least 2 ranked answers, got {len(responses)}",
                              "missing_field")
    answers = []
    for i, item in enumerate(responses):
        where = f"responses[{i}]"
        if not isinstance(item, dict):
            raise RankingRowError(where, f"expected an object with text and rank, got {type(item).__name__}")
        text = next((item[k] for k in TEXT_KEYS if k in item), None)
        if not isinstance(text, str) or not text.strip():
            raise RankingRowError(f"{where}.text", "expected a non-empty answer text", "empty_content")
        rank = item.get("rank")
        if isinstance(rank, bool) or not isinstance(rank, (int, float)):
            raise RankingRowError(f"{where}.rank", f"expected a number (1 = best), got {rank!r}",
                                  "missing_field" if rank is None else "wrong_type")
        answers.append((text, float(rank)))
    if len({rank for _, rank in answers}) < 2:
        raise RankingRowError("responses", "all answers share one rank: no preference to learn",
                              "identical_pair")
    return answers


def ranking_prompt(row: dict[str, Any]) -> Conversation:
    """The shared prompt of a ranking row as a Conversation ending with a user turn."""
    system = row.get("system") if isinstance(row.get("system"), str) else None
    messages = row.get("messages", row.get("conversations"))
    if isinstance(messages, list):
        first = messages[0] if messages and isinstance(messages[0], dict) else {}
        if first.get("role", first.get("from")) == "system":
            system, messages = str(first.get("content", first.get("value")) or ""), messages[1:]
        turns = [_turn(m, i) for i, m in enumerate(messages)]
    else:
        text = row.get("prompt", row.get("instruction"))
        if isinstance(text, str) and isinstance(row.get("input"), str) and row["input"].strip():
            text = f"{text}\n{row['input']}"
        if not isinstance(text, str):
            raise RankingRowError("prompt", "expected a prompt string or a messages list", "missing_field")
        turns = [Turn(role="user", content=text)]
    if not turns or not turns[-1].content.strip():
        raise RankingRowError("prompt", "expected a non-empty prompt", "empty_content")
    if turns[-1].role != "user":
        raise RankingRowError("prompt", f"expected the prompt to end with a user turn, got {turns[-1].role}",
                              "turn_order")
    return Conversation(turns=turns, system=system)


def _turn(message: Any, index: int) -> Turn:
    if not isinstance(message, dict):
        raise RankingRowError(f"messages[{index}]", f"expected an object, got {type(message).__name__}")
    role = str(message.get("role", message.get("from", "")))
    content = message.get("content", message.get("value"))
    if role not in ROLE_ALIASES:
        raise RankingRowError(f"messages[{index}].role", f"expected user/assistant (system first), got {role!r}",
                              "unrecognized_role")
    if not isinstance(content, str):
        raise RankingRowError(f"messages[{index}].content", "expected text", "wrong_type")
    return Turn(role=ROLE_ALIASES[role], content=content)  # type: ignore[arg-type]
