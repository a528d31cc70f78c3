"""Comparative ranking rows expand to the expected preference pairs; bad rows say why."""

import pytest

from tuneforge.data.ranking import RankingRowError, expand_ranking_row

ROW = {
    "prompt": "Name a colour.",
    "responses": [
        {"text": "C", "rank": 3},
        {"text": "A", "rank": 1},
        {"text": "B", "rank": 2},
        {"text": "D", "rank": 4},
    ],
}


def _pairs(prefs):
    return {(p.chosen, p.rejected) for p in prefs}


def test_all_pairs_every_better_with_every_worse():
    prefs = expand_ranking_row(ROW, "all")
    assert _pairs(prefs) == {("A", "B"), ("A", "C"), ("A", "D"), ("B", "C"), ("B", "D"), ("C", "D")}
    assert all(p.prompt.turns[-1].role == "user" and p.prompt.turns[-1].content == "Name a colour." for p in prefs)
    assert all(p.meta["rank_chosen"] < p.meta["rank_rejected"] for p in prefs)


def test_adjacent_pairs_only_neighbouring_ranks():
    assert _pairs(expand_ranking_row(ROW, "adjacent")) == {("A", "B"), ("B", "C"), ("C", "D")}


def test_ties_never_pair_and_adjacent_spans_tie_groups():
    row = {"instruction": "Q", "input": "ctx", "responses": [
        {"content": "x", "rank": 1}, {"content": "y", "rank": 1}, {"content": "z", "rank": 2}]}
    assert _pairs(expand_ranking_row(row, "all")) == {("x", "z"), ("y", "z")}
    assert _pairs(expand_ranking_row(row, "adjacent")) == {("x", "z"), ("y", "z")}
    assert expand_ranking_row(row)[0].prompt.turns[0].content == "Q\nctx"


def test_messages_prompt_with_system_and_history():
    row = {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "hi"},
                             {"from": "gpt", "value": "hello"}, {"from": "human", "value": "more"}],
           "responses": [{"value": "good", "rank": 1}, {"value": "bad", "rank": 2}]}
    (pref,) = expand_ranking_row(row, "all")
    assert pref.prompt.system == "S"
    assert [t.role for t in pref.prompt.turns] == ["user", "assistant", "user"]


@pytest.mark.parametrize("row, field, code", [
    ({"prompt": "q", "responses": [{"text": "a", "rank": 1}]}, "responses", "missing_field"),
    ({"prompt": "q"}, "responses", "missing_field"),
    ({"prompt": "q", "responses": [{"text": "a", "rank": 1}, {"text": "b"}]}, "responses[1].rank", "missing_field"),
    ({"prompt": "q", "responses": [{"text": "a", "rank": 1}, {"text": " ", "rank": 2}]}, "responses[1].text",
     "empty_content"),
    ({"prompt": "q", "responses": [{"text": "a", "rank": 1}, {"text": "b", "rank": 1}]}, "responses", "identical_pair"),
    ({"prompt": "", "responses": [{"text": "a", "rank": 1}, {"text": "b", "rank": 2}]}, "prompt", "empty_content"),
])
def test_bad_rows_raise_with_field_and_code(row, field, code):
    with pytest.raises(RankingRowError) as info:
        expand_ranking_row(row, "all")
    assert info.value.field == field and info.value.code == code


def test_unknown_pair_mode_is_an_error():
    with pytest.raises(RankingRowError, match="adjacent"):
        expand_ranking_row(ROW, "some")  # type: ignore[arg-type]


def test_read_source_honours_the_sources_ranking_pairs(tmp_path):
    import json

    from tuneforge.config.sections import DataSource
    from tuneforge.data import read_source

    row = {"prompt": "q", "responses": [{"text": t, "rank": r} for t, r in (("a", 1), ("b", 2), ("c", 3))]}
    path = tmp_path / "ranked.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    every = read_source(DataSource(path=str(path), ranking_pairs="all")).records
    adjacent = read_source(DataSource(path=str(path), ranking_pairs="adjacent")).records
    assert sorted((p.chosen, p.rejected) for p in every) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert sorted((p.chosen, p.rejected) for p in adjacent) == [("a", "b"), ("b", "c")]
