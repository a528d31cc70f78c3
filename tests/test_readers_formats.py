"""Each supported format -> the right canonical records; detection, overrides, placeholders, min_examples."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tuneforge.config.sections import DataConfig, DataSource
from tuneforge.data import collect_records, detect_format, read_data, read_source
from tuneforge.data.records import Conversation, Labelled, Preference, Text
from tuneforge.errors import DataError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def one(tmp_path, row, **kwargs):
    result = read_source(write_jsonl(tmp_path / "d.jsonl", [row]), **kwargs)
    assert not result.rejected, [str(i) for i in result.rejected]
    (record,) = result.records
    return result.format, record


def roles(conv: Conversation) -> list[str]:
    return [t.role for t in conv.turns]


def test_alpaca_with_system_and_history(tmp_path):
    fmt, conv = one(tmp_path, {"instruction": "Add", "input": "2 and 3", "output": "5", "system": "Be terse.",
                               "history": [["hi", "hello"], ["how are you", "fine"]]})
    assert fmt == "alpaca"
    assert conv.system == "Be terse."
    assert roles(conv) == ["user", "assistant"] * 3
    assert conv.turns[4].content == "Add\n2 and 3"
    assert conv.turns[-1].content == "5" and conv.turns[-1].trainable
    assert conv.meta == {"source": str(tmp_path / "d.jsonl"), "line": 1}


def test_sharegpt_roles_tools_and_system(tmp_path):
    tools = '[{"name": "weather", "parameters": {}}]'
    fmt, conv = one(tmp_path, {"conversations": [
        {"from": "system", "value": "You help."},
        {"from": "human", "value": "Weather in Paris?"},
        {"from": "function_call", "value": '{"name": "weather", "arguments": {"city": "Paris"}}'},
        {"from": "observation", "value": '{"temp": 20}'},
        {"from": "gpt", "value": "20 degrees."},
    ], "tools": tools})
    assert fmt == "sharegpt"
    assert conv.system == "You help."
    assert roles(conv) == ["user", "assistant", "tool", "assistant"]
    assert conv.turns[1].tool_call and not conv.turns[3].tool_call
    assert conv.tools == tools


def test_openai_weights_tools_and_tool_calls(tmp_path):
    fmt, conv = one(tmp_path, {"messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "bad answer", "weight": 0},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "f"}}]},
        {"role": "tool", "content": "42"},
        {"role": "assistant", "content": [{"type": "text", "text": "It is "}, {"type": "text", "text": "42."}]},
    ], "tools": [{"type": "function", "function": {"name": "f"}}]})
    assert fmt == "openai"
    assert conv.system == "sys"
    assert [t.trainable for t in conv.turns] == [False, False, False, True, False, True]
    assert conv.turns[3].tool_call and json.loads(conv.turns[3].content)[0]["function"]["name"] == "f"
    assert conv.turns[-1].content == "It is 42."
    assert json.loads(conv.tools) == [{"type": "function", "function": {"name": "f"}}]


def test_openai_all_weights_zero_has_nothing_to_train(tmp_path):
    path = write_jsonl(tmp_path / "w.jsonl", [{"messages": [
        {"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0}]}])
    (issue,) = read_source(path).rejected
    assert issue.code == "no_assistant_turn"


@pytest.mark.parametrize("label, expected", [(True, True), (False, False), ("false", False), (1, True)])
def test_kto_unpaired_rows(tmp_path, label, expected):
    fmt, conv = one(tmp_path, {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                               "label": label})
    assert fmt == "kto" and conv.meta["label"] is expected


def test_kto_bad_label(tmp_path):
    path = write_jsonl(tmp_path / "k.jsonl", [{"messages": [{"role": "user", "content": "q"},
                                                            {"role": "assistant", "content": "a"}], "label": "maybe"}])
    (issue,) = read_source(path).rejected
    assert (issue.code, issue.field) == ("wrong_type", "label")


PREFERENCE_ROWS = {
    "llamafactory_alpaca": {"instruction": "Q", "input": "ctx", "chosen": "good", "rejected": "bad"},
    "llamafactory_sharegpt": {"conversations": [{"from": "human", "value": "Q\nctx"}],
                              "chosen": {"from": "gpt", "value": "good"}, "rejected": {"from": "gpt", "value": "bad"}},
    "trl_strings": {"prompt": "Q\nctx", "chosen": "good", "rejected": "bad"},
    "trl_messages": {"prompt": [{"role": "user", "content": "Q\nctx"}],
                     "chosen": [{"role": "assistant", "content": "good"}],
                     "rejected": [{"role": "assistant", "content": "bad"}]},
    "trl_implicit_prompt": {"chosen": [{"role": "user", "content": "Q\nctx"}, {"role": "assistant", "content": "good"}],
                            "rejected": [{"role": "user", "content": "Q\nctx"}, {"role": "assistant", "content": "bad"}]},
    "openai_dpo": {"input": {"messages": [{"role": "user", "content": "Q\nctx"}]},
                   "preferred_output": [{"role": "assistant", "content": "good"}],
                   "non_preferred_output": [{"role": "assistant", "content": "bad"}]},
}


@pytest.mark.parametrize("style", list(PREFERENCE_ROWS))
def test_preference_styles_give_the_same_pair(tmp_path, style):
    fmt, pref = one(tmp_path, PREFERENCE_ROWS[style])
    assert fmt == "preference" and isinstance(pref, Preference)
    assert roles(pref.prompt) == ["user"] and pref.prompt.turns[0].content == "Q\nctx"
    assert (pref.chosen, pref.rejected) == ("good", "bad")


@pytest.mark.parametrize("row, code", [
    ({"prompt": "Q", "chosen": "same", "rejected": " same "}, "identical_pair"),
    ({"prompt": "", "chosen": "a", "rejected": "b"}, "empty_content"),
    ({"instruction": "", "input": "", "chosen": "a", "rejected": "b"}, "empty_content"),
    ({"input": {"messages": []}, "preferred_output": "a", "non_preferred_output": "b"}, "empty_content"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
      "chosen": {"from": "gpt", "value": "x"}, "rejected": {"from": "gpt", "value": "y"}}, "turn_order"),
    ({"prompt": "Q", "chosen": "a"}, "missing_field"),
])
def test_bad_preference_pairs_are_rejected_with_reason(tmp_path, row, code):
    path = write_jsonl(tmp_path / "p.jsonl", [PREFERENCE_ROWS["trl_strings"], row])
    result = read_source(path, format="preference")
    assert len(result.records) == 1
    (issue,) = result.rejected
    assert issue.code == code and issue.line == 2


def test_ranking_rows_expand_to_pairs(tmp_path):
    row = {"prompt": "Q", "responses": [{"text": "best", "rank": 1}, {"text": "ok", "rank": 2},
                                        {"text": "worst", "rank": 3}]}
    path = write_jsonl(tmp_path / "r.jsonl", [row])
    everything = read_source(path)
    assert everything.format == "ranking"
    assert {(p.chosen, p.rejected) for p in everything.records} == {("best", "ok"), ("best", "worst"), ("ok", "worst")}
    assert all(p.meta["line"] == 1 and p.meta["source"] == str(path) for p in everything.records)
    adjacent = read_source(path, ranking_pairs="adjacent")
    assert {(p.chosen, p.rejected) for p in adjacent.records} == {("best", "ok"), ("ok", "worst")}


def test_raw_text_file_one_document_per_nonempty_line(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("first doc\n\n  \nsecond doc\r\nthird\n")
    result = read_source(path)
    assert result.format == "text"
    assert [(r.text, r.meta["line"]) for r in result.records] == [("first doc", 1), ("second doc", 4), ("third", 5)]
    assert all(isinstance(r, Text) for r in result.records)


def test_labelled_csv_with_group_columns(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("text,label,group.gender,group.age\ngreat film,pos,f,30\nawful,neg,m,\n")
    result = read_source(path)
    assert result.format == "labelled"
    assert [(r.text, r.label, r.groups) for r in result.records] == [
        ("great film", "pos", {"gender": "f", "age": "30"}), ("awful", "neg", {"gender": "m"})]


def test_labelled_renamed_columns_and_group_objects(tmp_path):
    rows = [{"body": "a", "sentiment": 1, "groups": {"lang": "en"}},
            {"body": "b", "sentiment": 0, "meta": {"group": {"lang": "de"}}},
            {"body": "c", "sentiment": 0, "meta": {"group": "x"}}]
    source = DataSource(path=str(write_jsonl(tmp_path / "l.jsonl", rows)), columns={"text": "body", "label": "sentiment"})
    result = read_source(source)
    assert result.format == "labelled"
    assert [(r.text, r.label, r.groups) for r in result.records] == [
        ("a", "1", {"lang": "en"}), ("b", "0", {"lang": "de"}), ("c", "0", {"group": "x"})]
    assert all(isinstance(r, Labelled) for r in result.records)


def test_tsv_and_parquet(tmp_path):
    rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(3)]
    pd.DataFrame(rows).to_parquet(tmp_path / "a.parquet")
    (tmp_path / "a.tsv").write_text("instruction\tinput\toutput\n" + "".join(f"q{i}\t\ta{i}\n" for i in range(3)))
    for name in ("a.parquet", "a.tsv"):
        result = read_source(tmp_path / name)
        assert result.format == "alpaca" and not result.rejected
        assert [r.turns[1].content for r in result.records] == ["a0", "a1", "a2"]


def test_messages_column_in_parquet(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}]
    pd.DataFrame(rows).to_parquet(tmp_path / "m.parquet")
    result = read_source(tmp_path / "m.parquet")
    assert result.format == "openai" and roles(result.records[0]) == ["user", "assistant"]


def test_detect_format():
    assert detect_format([{"instruction": "a", "output": "b"}]) == "alpaca"
    assert detect_format([{"conversations": []}]) == "sharegpt"
    assert detect_format([{"messages": [{"from": "human", "value": "x"}]}]) == "sharegpt"
    assert detect_format([{"messages": []}]) == "openai"
    assert detect_format([{"prompt": "p", "chosen": "a", "rejected": "b"}]) == "preference"
    assert detect_format([{"text": "t", "label": "x"}]) == "labelled"
    assert detect_format([{"text": "t"}, {"text": "u"}, {"instruction": "i"}]) == "text"
    with pytest.raises(DataError, match="cannot detect the data format.*body"):
        detect_format([{"body": "x"}])


def test_explicit_format_overrides_detection(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "hello", "label": "greeting"}])
    assert read_source(path).format == "labelled"
    forced = read_source(DataSource(path=str(path), format="text"))
    assert forced.format == "text" and isinstance(forced.records[0], Text)


def test_placeholders_filled_and_unfilled(tmp_path):
    path = write_jsonl(tmp_path / "id.jsonl", [
        {"instruction": "Who are you?", "output": "I am {{name}} by {{author}}."},
        {"instruction": "Jinja {{ x }} stays", "output": "ok"}])
    filled = read_source(path, variables={"name": "Forge", "author": "Ada"})
    assert filled.records[0].turns[1].content == "I am Forge by Ada."
    assert filled.records[1].turns[0].content == "Jinja {{ x }} stays"
    partial = read_source(path, variables={"name": "Forge"})
    (issue,) = partial.rejected
    assert (issue.code, issue.field, issue.line) == ("unfilled_placeholder", "output", 1)
    assert "{{author}}" in issue.message


def test_collect_records_enforces_min_examples(tmp_path):
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(12)]
    good = write_jsonl(tmp_path / "good.jsonl", rows)
    small = write_jsonl(tmp_path / "small.jsonl", rows[:5] + [{"instruction": "x"}])
    config = DataConfig(sources=[DataSource(path=str(good)), DataSource(path=str(small))])
    results = read_data(config)
    assert [len(r.records) for r in results] == [12, 5]
    assert len(collect_records(config)) == 17
    with pytest.raises(DataError, match="expected at least 10 usable examples, got 5 .1 rows rejected"):
        collect_records(DataConfig(sources=[DataSource(path=str(small))]))


def test_max_rows(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"text": f"t{i}"} for i in range(20)])
    assert len(read_source(DataSource(path=str(path), max_rows=7)).records) == 7


def test_csv_json_cells_only_for_structured_columns(tmp_path):
    messages = json.dumps([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a, b"}])
    chat = tmp_path / "chat.csv"
    chat.write_text('messages\n"' + messages.replace('"', '""') + '"\n')
    conv = read_source(chat).records[0]
    assert read_source(chat).format == "openai" and conv.turns[1].content == "a, b"
    labelled = tmp_path / "l.csv"
    labelled.write_text('text,label\n"[1, 2] is a list",x\n' + "long," + "y" * 200_000 + "\n")
    result = read_source(labelled)
    assert [r.text for r in result.records] == ["[1, 2] is a list", "long"]
    assert len(result.records[1].label) == 200_000
