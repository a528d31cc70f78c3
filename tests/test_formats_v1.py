"""LLaMA-Factory "v1" data (issue 15): messages with typed content parts, per-message loss_weight, and
preference rows as chosen_messages/rejected_messages. Fixtures are small and synthetic, shaped like
LLaMA-Factory's v1 demo files (500 SFT rows, of which 50 are identity rows with {{name}} placeholders)."""

from __future__ import annotations

import json

import pytest

from tuneforge.data import read_source
from tuneforge.data.records import Conversation, Preference
from tuneforge.data.render import IGNORE_INDEX, render_conversation


def part(text: str, kind: str = "text") -> dict:
    return {"type": kind, "value": text}


def msg(role: str, *parts: dict, loss_weight: float | None = None) -> dict:
    out = {"role": role, "content": list(parts)}
    if loss_weight is not None:
        out["loss_weight"] = loss_weight
    return out


def v1_sft_rows() -> list[dict]:
    rows = []
    for i in range(450):
        if i % 3 == 0:  # OpenAI's own spelling of a text part
            user = {"role": "user", "content": [{"type": "text", "text": f"question {i}"}]}
        else:
            user = msg("user", part(f"question {i}"), loss_weight=0.0)
        answer = msg("assistant", part(f"answer {i}"), loss_weight=1.0)
        messages = [msg("system", part("You are helpful."), loss_weight=0.0), user, answer]
        if i % 5 == 0:  # multi-turn: the first answer is context only
            messages[2:2] = [msg("assistant", part(f"draft {i}"), loss_weight=0.0), msg("user", part("again"))]
        rows.append({"messages": messages})
    for i in range(50):
        rows.append({"messages": [msg("user", part("who are you?"), loss_weight=0.0),
                                  msg("assistant", part("I am {{name}}, made by {{author}}."), loss_weight=1.0)]})
    return rows


def v1_dpo_rows() -> list[dict]:
    rows = []
    for i in range(40):
        prompt = [msg("system", part("Be brief."), loss_weight=0.0), msg("user", part(f"task {i}"), loss_weight=0.0)]
        rows.append({"chosen_messages": prompt + [msg("assistant", part(f"good {i}"), loss_weight=1.0)],
                     "rejected_messages": prompt + [msg("assistant", part(f"bad {i}"), loss_weight=1.0)]})
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_500_row_v1_sft_file_reads_whole(tmp_path):
    path = write_jsonl(tmp_path / "v1_sft.jsonl", v1_sft_rows())
    result = read_source(path, variables={"name": "Forge", "author": "us"})
    assert (result.format, result.rows, result.valid_rows, result.rejected) == ("openai", 500, 500, [])
    first, multi, identity = result.records[1], result.records[0], result.records[-1]
    assert first.system == "You are helpful." and [t.content for t in first.turns] == ["question 1", "answer 1"]
    assert [(t.content, t.trainable) for t in multi.turns] == [
        ("question 0", False), ("draft 0", False), ("again", False), ("answer 0", True)]
    assert identity.turns[1].content == "I am Forge, made by us."


def test_v1_sft_without_variables_rejects_only_the_placeholder_rows(tmp_path):
    result = read_source(write_jsonl(tmp_path / "v1_sft.jsonl", v1_sft_rows()))
    assert result.valid_rows == 450 and result.counts_by_code() == {"unfilled_placeholder": 50}


def test_a_v1_dpo_file_reads_as_preferences(tmp_path):
    result = read_source(write_jsonl(tmp_path / "v1_dpo.jsonl", v1_dpo_rows()))
    assert (result.format, result.valid_rows, result.rejected) == ("preference", 40, [])
    pref = result.records[3]
    assert isinstance(pref, Preference)
    assert pref.prompt.system == "Be brief." and [t.content for t in pref.prompt.turns] == ["task 3"]
    assert (pref.chosen, pref.rejected) == ("good 3", "bad 3")


@pytest.mark.parametrize("kind, what", [("image", "image"), ("image_url", "image"), ("audio", "audio"),
                                        ("video_url", "video")])
def test_media_parts_are_a_not_supported_rejection(tmp_path, kind, what):
    rows = v1_sft_rows()[:3]
    rows[1]["messages"][1]["content"].append({"type": kind, "value": "pic.png"})
    result = read_source(write_jsonl(tmp_path / "media.jsonl", rows))
    (issue,) = result.rejected
    assert (issue.line, issue.code, issue.field) == (2, "not_supported", "messages[1].content[1]")
    assert issue.message.startswith(f"not supported: {what} content")


def test_media_in_a_v1_dpo_answer_is_not_supported(tmp_path):
    rows = v1_dpo_rows()[:2]
    rows[0]["rejected_messages"][-1]["content"] = [{"type": "image_url", "image_url": {"url": "x"}}]
    (issue,) = read_source(write_jsonl(tmp_path / "d.jsonl", rows)).rejected
    assert issue.code == "not_supported" and "image content" in issue.message


def test_reasoning_and_tool_call_parts(tmp_path):
    call = json.dumps({"name": "lookup", "arguments": {"q": "x"}})
    row = {"messages": [msg("user", part("find x")),
                        msg("assistant", part("need a lookup", "reasoning"), part(call, "tool_call")),
                        {"role": "tool", "content": [part("x=1")]},
                        msg("assistant", part("x is 1"))]}
    (conv,) = read_source(write_jsonl(tmp_path / "t.jsonl", [row])).records
    assert conv.turns[1].tool_call and conv.turns[1].content == f"<think>\nneed a lookup\n</think>\n\n\n{call}"
    assert conv.turns[3].content == "x is 1"


def test_bad_parts_and_weights_name_the_field(tmp_path):
    rows = [{"messages": [msg("user", {"type": "text", "value": 3}), msg("assistant", part("a"))]},
            {"messages": [msg("user", part("q")), msg("assistant", part("a"), loss_weight=-1)]},
            {"messages": [msg("user", part("q")), msg("assistant", part("a"), loss_weight=0.0)]}]
    issues = read_source(write_jsonl(tmp_path / "b.jsonl", rows), format="openai").rejected
    assert [(i.code, i.field) for i in issues] == [("wrong_type", "messages[0].content[0]"),
                                                  ("wrong_type", "messages[1].loss_weight"),
                                                  ("no_assistant_turn", "messages")]


def test_loss_weight_zero_is_not_trained_on_in_render(tmp_path, tiny_tokenizer):
    row = {"messages": [msg("user", part("q1"), loss_weight=0.0), msg("assistant", part("skip me"), loss_weight=0.0),
                        msg("user", part("q2"), loss_weight=0.0), msg("assistant", part("learn me"), loss_weight=1.0)]}
    (conv,) = read_source(write_jsonl(tmp_path / "w.jsonl", [row])).records
    assert isinstance(conv, Conversation)
    ex = render_conversation(conv, tiny_tokenizer, cutoff_len=512)
    trained = tiny_tokenizer.decode([t for t in ex.labels if t != IGNORE_INDEX])
    assert "learn me" in trained and "skip me" not in trained
    everything = tiny_tokenizer.decode(ex.input_ids)
    assert "skip me" in everything  # still in the context, only not trained on


def test_a_user_message_with_loss_weight_one_is_trained_on(tmp_path, tiny_tokenizer):
    row = {"messages": [msg("user", part("echo this"), loss_weight=1.0), msg("assistant", part("ok"), loss_weight=1.0)]}
    (conv,) = read_source(write_jsonl(tmp_path / "u.jsonl", [row])).records
    ex = render_conversation(conv, tiny_tokenizer, cutoff_len=512)
    assert "echo this" in tiny_tokenizer.decode([t for t in ex.labels if t != IGNORE_INDEX])


def test_inspect_a_dataset_info_lists_offline_entries_with_row_counts(shared_data, capsys):
    from tuneforge.cli import main

    assert main(["data", "inspect", str(shared_data / "dataset_info.json")]) == 0
    out = capsys.readouterr().out
    assert "alpaca_en_demo           alpaca      rows 999 = 999 valid + 0 rejected" in out
    assert "dpo_en_demo              preference  rows 300 = 300 valid + 0 rejected" in out
    assert "not offline: 90 hub entries" in out and "cannot detect" not in out


def test_inspect_a_dataset_info_folder_with_v1_hub_missing_and_broken_entries(tmp_path, capsys):
    from tuneforge.cli import main

    write_jsonl(tmp_path / "v1_sft.jsonl", v1_sft_rows()[:20])
    write_jsonl(tmp_path / "v1_dpo.jsonl", v1_dpo_rows()[:7])
    (tmp_path / "broken.json").write_text("")
    (tmp_path / "odd.json").write_text('{"nothing": 1}\n')
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "v1_sft": {"file_name": "v1_sft.jsonl", "formatting": "sharegpt"},
        "v1_dpo": {"file_name": "v1_dpo.jsonl", "formatting": "sharegpt", "ranking": True},
        "on_hub": {"hf_hub_url": "someone/data"}, "gone": {"file_name": "gone.json"},
        "broken": {"file_name": "broken.json"}, "odd": {"file_name": "odd.json"}}))
    assert main(["data", "inspect", str(tmp_path), "--json"]) == 0
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert (entries["v1_sft"]["rows"], entries["v1_sft"]["valid_rows"]) == (20, 20)
    assert (entries["v1_dpo"]["format"], entries["v1_dpo"]["valid_rows"]) == ("preference", 7)
    assert entries["on_hub"]["unavailable"] == "hub" and entries["gone"]["unavailable"] == "missing file"
    assert "broken.json: the file is empty" in entries["broken"]["unavailable"]
    assert entries["odd"]["rejected_by_code"] == {"missing_field": 1} and entries["odd"]["unavailable"] is None
