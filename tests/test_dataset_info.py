"""LLaMA-Factory dataset_info.json entries, read as-is: the shared demo file and custom entries."""

from __future__ import annotations

import json

import pytest

from tuneforge.config.sections import DataSource
from tuneforge.data import read_source
from tuneforge.data.records import Conversation, Preference, Text
from tuneforge.errors import DataError

IDENTITY_VARS = {"name": "Forge", "author": "the tuneforge team"}
EXPECTED_KIND = {"identity": Conversation, "alpaca_en_demo": Conversation, "dpo_en_demo": Preference,
                 "c4_demo": Text, "wiki_demo": Text}


def entries(shared_data) -> dict:
    return json.loads((shared_data / "dataset_info.json").read_text())


def rows_in(path) -> int:
    if path.suffix == ".txt":
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    if path.suffix == ".jsonl":
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    return len(json.loads(path.read_text()))


def test_every_local_entry_loads_by_name(shared_data):
    local = {name: e for name, e in entries(shared_data).items()
             if e.get("file_name") and (shared_data / e["file_name"]).exists()}
    assert set(local) == set(EXPECTED_KIND)
    for name, entry in local.items():
        result = read_source(name, dataset_info=shared_data, variables=IDENTITY_VARS, strict=True)
        assert len(result.records) == rows_in(shared_data / entry["file_name"]), name
        assert all(isinstance(r, EXPECTED_KIND[name]) for r in result.records), name
        assert all(r.meta["dataset"] == name and r.meta["line"] >= 1 for r in result.records)


def test_dpo_demo_multi_turn_prompts_end_with_the_user(shared_data):
    result = read_source(DataSource(name="dpo_en_demo", dataset_info=str(shared_data / "dataset_info.json")))
    assert result.format == "preference"
    assert all(p.prompt.turns[-1].role == "user" for p in result.records)
    assert any(len(p.prompt.turns) > 1 for p in result.records)
    assert any(p.prompt.system for p in result.records)  # rows with a leading system turn


def test_identity_without_variables_names_the_placeholder(shared_data):
    result = read_source("identity", dataset_info=shared_data)
    assert result.counts_by_code() == {"unfilled_placeholder": len(result.rejected)}
    assert len(result.rejected) > 0
    assert "{{name}}" in result.rejected[0].message
    filled = read_source("identity", dataset_info=shared_data, variables=IDENTITY_VARS)
    assert not filled.rejected
    assert not any("{{" in t.content for r in filled.records for t in r.turns)


def test_entries_whose_file_is_missing_name_the_file(shared_data):
    missing = {name: e["file_name"] for name, e in entries(shared_data).items()
               if e.get("file_name") and not (shared_data / e["file_name"]).exists()}
    assert missing
    for name, file_name in missing.items():
        with pytest.raises(DataError, match=f"names file {file_name}, which is missing"):
            read_source(name, dataset_info=shared_data)


def test_hub_entries_are_not_available_offline(shared_data):
    with pytest.raises(DataError, match="not available offline: entry alpaca_en points at hub dataset llamafactory/alpaca_en"):
        read_source("alpaca_en", dataset_info=shared_data)


def test_unknown_entry_suggests_close_names(shared_data):
    with pytest.raises(DataError, match="did you mean alpaca_en_demo"):
        read_source("alpaca_en_dem", dataset_info=shared_data)


def test_custom_entries_columns_tags_ranking_kto(tmp_path):
    (tmp_path / "qa.json").write_text(json.dumps([{"q": "Hi", "a": "Hello", "sys": "Be kind"}]))
    (tmp_path / "chat.json").write_text(json.dumps([{"msgs": [
        {"speaker": "person", "text": "Hi"}, {"speaker": "bot", "text": "Hello"}]}]))
    (tmp_path / "pairs.json").write_text(json.dumps([{"instruction": "Q", "chosen": "good", "rejected": "bad"}]))
    (tmp_path / "kto.json").write_text(json.dumps([{"messages": [
        {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}], "ok": False}]))
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "qa": {"file_name": "qa.json", "columns": {"prompt": "q", "response": "a", "system": "sys"}},
        "chat": {"file_name": "chat.json", "formatting": "sharegpt", "columns": {"messages": "msgs"},
                 "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "person", "assistant_tag": "bot"}},
        "pairs": {"file_name": "pairs.json", "ranking": True},
        "kto": {"file_name": "kto.json", "formatting": "sharegpt", "columns": {"messages": "messages", "kto_tag": "ok"},
                "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}},
    }))
    qa = read_source("qa", dataset_info=tmp_path).records[0]
    assert (qa.system, qa.turns[0].content, qa.turns[1].content) == ("Be kind", "Hi", "Hello")
    chat = read_source("chat", dataset_info=tmp_path).records[0]
    assert [(t.role, t.content) for t in chat.turns] == [("user", "Hi"), ("assistant", "Hello")]
    pair = read_source("pairs", dataset_info=tmp_path).records[0]
    assert (pair.prompt.turns[0].content, pair.chosen, pair.rejected) == ("Q", "good", "bad")
    kto = read_source("kto", dataset_info=tmp_path)
    assert kto.format == "kto" and kto.records[0].meta["label"] is False


def test_entry_whose_file_name_is_a_folder(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(2):
        (folder / f"part{i}.jsonl").write_text(json.dumps({"instruction": f"q{i}", "output": "a"}) + "\n")
    (tmp_path / "dataset_info.json").write_text(json.dumps({"parts": {"file_name": "parts"}}))
    result = read_source("parts", dataset_info=tmp_path / "dataset_info.json")
    assert [r.meta["source"] for r in result.records] == [str(folder / "part0.jsonl"), str(folder / "part1.jsonl")]


def test_bad_dataset_info_files(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="dataset_info.json not found"):
        read_source("x", dataset_info=tmp_path)
    (tmp_path / "dataset_info.json").write_text('{"x": {"file_name": "a.json",}')
    with pytest.raises(DataError, match=r"dataset_info.json:1: expected valid JSON"):
        read_source("x", dataset_info=tmp_path)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # no ./data/dataset_info.json to fall back on
    with pytest.raises(DataError, match="pass --dataset-info"):
        read_source("some_entry")
