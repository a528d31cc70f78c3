"""Preference data: invalid pairs are rejected with reasons, splits keep a prompt's pairs together,
KTO accepts unpaired thumbs-up/down rows."""

import json

import pytest

from tuneforge.config.recipe import parse_recipe
from tuneforge.data.records import Conversation, Preference, Turn
from tuneforge.errors import DataError
from tuneforge.train.preference.data import (
    load_preference_data,
    pair_problem,
    split_by_prompt,
    unpaired_rows,
)


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _recipe(path, **data):
    return parse_recipe({"data": {"sources": [{"path": str(path)}], "min_examples": 2, **data}})


def _pref(prompt, chosen="good answer", rejected="bad answer"):
    return Preference(Conversation([Turn("user", prompt)]), chosen, rejected)


def test_pair_problems_name_the_reason():
    assert pair_problem(_pref("q")) is None
    assert pair_problem(_pref("q", "same", " same "))[0] == "identical_pair"
    assert pair_problem(_pref("   "))[:2] == ("empty_content", "prompt")
    assert pair_problem(_pref("q", rejected=""))[:2] == ("empty_content", "rejected")
    assert pair_problem(Conversation([Turn("user", "q"), Turn("assistant", "a")]))[0] == "wrong_type"


def test_invalid_pairs_are_rejected_with_file_line_and_reason(tmp_path):
    rows = [{"prompt": f"question {i}", "chosen": "right", "rejected": "wrong"} for i in range(4)]
    rows.insert(1, {"prompt": "q", "chosen": "same", "rejected": "same"})
    rows.insert(3, {"prompt": "", "chosen": "a", "rejected": "b"})
    path = _write(tmp_path / "pairs.jsonl", rows)
    data = load_preference_data(_recipe(path, val_ratio=0.0))
    assert len(data.train) == 4
    by_line = {issue.line: issue for issue in data.rejected}
    assert set(by_line) == {2, 4}
    assert by_line[2].code == "identical_pair"
    assert by_line[4].code == "empty_content" and "prompt" in by_line[4].field + by_line[4].message


def test_too_few_pairs_is_a_data_error_with_counts(tmp_path):
    path = _write(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "x", "rejected": "x"}] * 3)
    with pytest.raises(DataError, match="identical_pair: 3"):
        load_preference_data(_recipe(path))


def test_split_keeps_pairs_of_one_prompt_on_one_side():
    records = [_pref(f"prompt {i // 3}", f"c{i}", f"r{i}") for i in range(60)]
    train, val = split_by_prompt(records, 0.2, seed=1)
    assert train and val and len(train) + len(val) == 60
    assert not {r.prompt.prompt_text() for r in train} & {r.prompt.prompt_text() for r in val}
    assert split_by_prompt(records, 0.2, seed=1) == (train, val)  # deterministic


def test_ranking_rows_expand_through_the_reader(tmp_path):
    row = {"prompt": "Pick", "responses": [{"text": t, "rank": r} for t, r in (("a", 1), ("b", 2), ("c", 3))]}
    path = _write(tmp_path / "rank.jsonl", [row, {**row, "prompt": "Other"}])
    all_pairs = load_preference_data(_recipe(path, val_ratio=0.0))
    adjacent = parse_recipe({"data": {"sources": [{"path": str(path), "ranking_pairs": "adjacent"}],
                                      "min_examples": 2, "val_ratio": 0.0}})
    assert len(all_pairs.train) == 6
    assert len(load_preference_data(adjacent).train) == 4


def test_kto_accepts_unpaired_labels(tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
             "label": i % 2 == 0} for i in range(6)]
    rows.append({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                 "label": "maybe"})
    path = _write(tmp_path / "feedback.jsonl", rows)
    with pytest.raises(DataError):  # unpaired rows are not pairs: DPO refuses them
        load_preference_data(_recipe(path, val_ratio=0.0))
    data = load_preference_data(_recipe(path, val_ratio=0.0), unpaired_ok=True)
    assert len(data.train) == 6 and len(data.rejected) == 1
    out = unpaired_rows(data.train)
    assert [r["label"] for r in out] == [True, False, True, False, True, False]
    assert out[0]["prompt"] == [{"role": "user", "content": "q0"}]
    assert out[0]["completion"] == [{"role": "assistant", "content": "a0"}]
    # a pair also feeds KTO: one desirable and one undesirable row
    assert [r["label"] for r in unpaired_rows([_pref("q")])] == [True, False]
