"""write_records -> read_source gives back equal records (all fields, meta except the new location)."""

from __future__ import annotations

import json

from tuneforge.data import read_source, write_records
from tuneforge.data.records import Conversation, Labelled, Preference, Text, Turn, record_to_dict


def without_location(record) -> dict:
    data = record_to_dict(record)
    data["meta"] = {k: v for k, v in data["meta"].items() if k not in ("source", "line")}
    return data


def sample_records() -> dict[str, list]:
    tools = json.dumps([{"type": "function", "function": {"name": "lookup", "parameters": {}}}])
    chat = [
        Conversation(turns=[Turn("user", "Hi"), Turn("assistant", "Hello!")], system="Be brief.", meta={"id": "c1"}),
        Conversation(turns=[
            Turn("user", "Find x"), Turn("assistant", '{"name": "lookup"}', tool_call=True),
            Turn("tool", "x=1"), Turn("assistant", "draft", weight=0.0), Turn("user", "again"),
            Turn("assistant", "x is 1", train=True, weight=0.5),
        ], tools=tools),
        Conversation(turns=[Turn("user", "rate me"), Turn("assistant", "no")], tools="not json tools",
                     meta={"label": False}),
    ]
    prefs = [
        Preference(prompt=Conversation(turns=[Turn("user", "Q")], system="sys", tools=tools), chosen="good", rejected="bad"),
        Preference(prompt=Conversation(turns=[Turn("user", "a"), Turn("assistant", "b"), Turn("user", "c")]),
                   chosen="yes", rejected="no", meta={"id": 7}),
    ]
    texts = [Text("plain document"), Text("ünïcode ✓ text", meta={"id": "t2"})]
    labelled = [Labelled("great", "pos", {"gender": "f"}), Labelled("bad", "neg")]
    return {"chat": chat, "preference": prefs, "text": texts, "labelled": labelled}


def test_round_trip_every_record_kind(tmp_path):
    for name, records in sample_records().items():
        path = write_records(records, tmp_path / f"{name}.jsonl")
        result = read_source(path)
        assert not result.rejected, [str(i) for i in result.rejected]
        assert [without_location(r) for r in result.records] == [without_location(r) for r in records], name
        assert [r.meta["line"] for r in result.records] == list(range(1, len(records) + 1))


def test_written_conversations_are_openai_messages(tmp_path):
    path = write_records(sample_records()["chat"], tmp_path / "chat.jsonl")
    first, second, _ = [json.loads(line) for line in path.read_text().splitlines()]
    assert first["messages"][0] == {"role": "system", "content": "Be brief."}
    assert isinstance(second["tools"], list)  # OpenAI's tools shape when the text is canonical JSON
    assert second["messages"][3]["weight"] == 0.0


def test_round_trip_of_a_real_file(tmp_path, shared_data):
    original = read_source(shared_data / "dpo_en_demo.json")
    again = read_source(write_records(original.records, tmp_path / "dpo.jsonl"))
    assert [without_location(r) for r in again.records] == [without_location(r) for r in original.records]
