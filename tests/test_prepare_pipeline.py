"""The whole `data prepare` pipeline: accounting, outputs the readers load back, the report, the CLI."""

from __future__ import annotations

import json

import pytest

from tuneforge.cli import main
from tuneforge.data import read_source
from tuneforge.data.prepare import PrepareConfig, prepare
from tuneforge.data.prepare.ledger import CountMismatch, Item, Ledger
from tuneforge.data.prepare.report import SECTIONS
from tuneforge.data.records import Conversation, Labelled, Preference, Text, Turn
from tuneforge.errors import ConfigError


def _mixed_records() -> list:
    prompt = Conversation([Turn("user", "Pick one.")])
    out = []
    for n in range(12):
        out.append(Conversation([Turn("user", f"Question {n} about topic {n * 13}?"),
                                 Turn("assistant", f"Answer {n}: see item {n * 7} in the list of things.")]))
    out += [
        Conversation([Turn("user", "Question 3 about topic 39?"), Turn("assistant", "Answer 3: see item 21 in the list of things.")]),
        Conversation([Turn("user", "empty"), Turn("assistant", " ")]),
        Conversation([Turn("user", "Mail ann@example.com"), Turn("assistant", "Done, ann@example.com.")]),
        Preference(prompt, "The first option is better here.", "whatever"),
        Text("A plain text document about caf\u00c3\u00a9 culture in the old town."),
        Labelled("great product", "pos"),
        Labelled("   ", "neg"),
    ]
    return out


def test_quarantine_plus_output_equals_input(tmp_path):
    records = _mixed_records()
    result = prepare(records, PrepareConfig(), tmp_path / "out", val=0.2, test=0.1)
    entries = [json.loads(x) for x in (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()]
    removed = [e for e in entries if e["action"] == "removed"]
    # mixed kinds in one file: count rows (the readers load one kind per file; see the next test)
    written = sum(len((tmp_path / "out" / f"{s}.jsonl").read_text().splitlines()) for s in ("train", "val", "test"))
    assert written + len(removed) == len(records) == result.counts["records"]
    assert {e["reason"] for e in removed} == {"exact_duplicate", "empty_answer"}
    assert {e["reason"] for e in entries if e["action"] == "modified"} >= {"normalized", "pii_mask"}
    assert all("original" in e for e in entries)
    assert all("changed" in e for e in entries if e["action"] == "modified")
    assert result.counts["train"] + result.counts["val"] + result.counts["test"] == written
    for s in result.report["step_counts"]:
        assert s["in"] == s["out"] + s["removed"]


def test_outputs_load_back_with_the_readers(tmp_path):
    records = [r for r in _mixed_records() if isinstance(r, Conversation)]
    result = prepare(records, PrepareConfig(), tmp_path / "out", val=0, test=0)
    loaded = read_source(tmp_path / "out" / "train.jsonl")
    assert not loaded.rejected
    assert [type(r).__name__ for r in loaded.records] == [type(r).__name__ for r in result.splits["train"]]
    assert any(isinstance(r, Conversation) and "<EMAIL_1>" in r.turns[0].content for r in loaded.records)


def test_ledger_refuses_to_lose_examples():
    ledger = Ledger()
    items = [Item(0, Text("a")), Item(1, Text("b"))]
    ledger.begin("buggy", items)
    with pytest.raises(CountMismatch, match="2 in != 1 out"):
        ledger.end(items[:1])  # one example vanished without a quarantine entry


def test_reader_rejects_are_counted_and_written(tmp_path):
    src = tmp_path / "data.jsonl"
    good = [json.dumps({"instruction": f"Say {w}.", "output": f"{w} it is, said plainly."})
            for w in ("alpha", "bravo", "charlie")]
    src.write_text("\n".join(good[:2] + ['{"instruction": "no output here"}'] + good[2:]) + "\n", encoding="utf-8")
    result = prepare(src, PrepareConfig(), tmp_path / "out", val=0)
    assert result.counts["rows"] == 4 and result.counts["rejected"] == 1 and result.counts["records"] == 3
    rejected = [json.loads(x) for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert rejected[0]["line"] == 3 and rejected[0]["code"] == "missing_field"


def test_report_html_renders_every_section(tmp_path):
    records = [Labelled(f"text number {n} with words {n * 3}", "a" if n % 3 else "b") for n in range(30)]
    records.append(Labelled("text number 1 with words 3", "a"))  # an exact duplicate: a cluster to show
    result = prepare(records, PrepareConfig(), tmp_path / "out", val=0.2)
    page = result.paths["report_html"].read_text(encoding="utf-8")
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    assert page.count("data:image/png;base64,") == 3  # steps, token lengths, label balance
    assert "text number 1 with words 3" in page  # the duplicate cluster's text
    report = json.loads(result.paths["report_json"].read_text())
    assert set(report["token_length_histograms"]) == {"train", "val", "test"}
    assert report["token_length_histograms"]["train"]["n"] == result.counts["train"]
    assert report["steps"]["split"]["label_balance"]["train"]
    assert report["steps"]["dedup"]["biggest_clusters"][0]["size"] == 2


def test_strict_config_errors_name_the_key():
    from tuneforge.config.recipe import load_recipe

    with pytest.raises(ConfigError, match="did you mean `threshold`"):
        load_recipe(None, ["data.prepare.dedup.treshold=0.9"])
    with pytest.raises(ConfigError, match="ratio must be < 1"):
        load_recipe(None, ["data.prepare.split.val=1.5"])


def test_cli_on_shared_alpaca_demo(tmp_path, shared_data, capsys):
    out = tmp_path / "prepared"
    rc = main(["data", "prepare", "--input", str(shared_data / "alpaca_en_demo.json"), "--out", str(out),
               "split.test=0.1", "report.plots=false"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "quarantine.jsonl", "rejected.jsonl",
                 "report.json", "report.html"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    counts = report["counts"]
    assert counts["records"] == 999 and counts["out"] + counts["removed"] == 999
    assert counts["val"] > 50 and counts["test"] > 50
    assert len(read_source(out / "val.jsonl").records) == counts["val"]
    assert "dedup" in printed and "quarantined" in printed


def test_cli_bad_input_is_one_line_error(tmp_path, capsys):
    rc = main(["data", "prepare", "--input", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "missing.json" in capsys.readouterr().err


def test_cli_with_a_recipe_user_splits_and_eval_file(tmp_path, capsys):
    from tuneforge.data import write_records

    def conv(text: str) -> Conversation:
        return Conversation([Turn("user", "Summarize."), Turn("assistant", text)])

    texts = [" ".join(f"w{n}x{i}" for i in range(30)) for n in range(12)]
    write_records([conv(t) for t in texts[:8]], tmp_path / "train.jsonl")
    write_records([conv(t) for t in texts[8:]] + [conv(texts[0])], tmp_path / "val.jsonl")  # planted leak
    write_records([conv(texts[9])], tmp_path / "eval.jsonl")
    (tmp_path / "recipe.yaml").write_text(
        "data:\n  sources:\n    - {path: train.jsonl, split: train}\n    - {path: val.jsonl, split: val}\n"
        "  prepare:\n    pii: {enabled: false}\neval:\n  data: " + str(tmp_path / "eval.jsonl") + "\n",
        encoding="utf-8")
    out = tmp_path / "prepared"
    rc = main(["data", "prepare", str(tmp_path / "recipe.yaml"), "--out", str(out), "--tokenizer", "none",
               "report.html=false"])
    assert rc == 0, capsys.readouterr().err
    leak = json.loads((out / "report.json").read_text())["steps"]["leakage"]
    assert leak["counts"] == {"train/val exact": 1, "val/eval exact": 1}
    assert not (out / "report.html").exists()
    assert "leakage: 2 overlapping pair(s)" in capsys.readouterr().out
