"""inspect_source and `tuneforge data inspect` on the shared demo data and small fixtures."""

from __future__ import annotations

import json

import pytest

from tuneforge.cli import main
from tuneforge.data.inspect import inspect_source, percentiles


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert percentiles(values) == {"p50": 50, "p90": 90, "p99": 99, "max": 100}
    assert percentiles([7]) == {"p50": 7, "p90": 7, "p99": 7, "max": 7}
    assert percentiles([]) == {}


def test_inspect_shared_alpaca_reports_999_valid(shared_data):
    report = inspect_source(shared_data / "alpaca_en_demo.json", model="whitespace")
    assert (report.format, report.valid, report.rejected) == ("alpaca", 999, 0)
    assert report.turns == {"min": 2, "p50": 2, "max": 2, "mean": 2.0}
    assert report.tokens["measured"] == 999
    assert report.tokens["p50"] <= report.tokens["p90"] <= report.tokens["p99"] <= report.tokens["max"]
    assert "whitespace" in report.tokenizer_note
    assert len(report.examples) == 3
    json.loads(report.to_json())


def test_inspect_with_a_chat_template_tokenizer(tmp_path, tiny_tokenizer):
    rows = [{"instruction": f"say {'word ' * i}", "output": "ok"} for i in range(1, 21)]
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"instruction": "x"}\n')
    report = inspect_source(path, tokenizer=tiny_tokenizer, rejected_out=tmp_path / "rej.jsonl", n_examples=2)
    assert (report.valid, report.rejected, report.rejected_by_code) == (20, 1, {"missing_field": 1})
    assert "<|im_start|>user" in report.examples[0]  # rendered with the tokenizer's chat template
    longest = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": rows[-1]["instruction"]}, {"role": "assistant", "content": "ok"}], tokenize=False)
    assert report.tokens["max"] == len(tiny_tokenizer(longest, add_special_tokens=False)["input_ids"])
    assert report.rejected_out and json.loads(open(report.rejected_out).readline())["line"] == 21


def test_inspect_preferences_count_turns_and_both_answers(shared_data):
    report = inspect_source("dpo_en_demo", dataset_info=shared_data, model="whitespace")
    assert report.format == "preference" and report.kinds == {"preference": report.valid}
    assert report.turns["min"] == 2  # prompt turn(s) + the answer
    assert "[rejected]" in report.examples[0]


def test_cli_inspect_json_and_sets(shared_data, capsys):
    assert main(["data", "inspect", "identity", "--dataset-info", str(shared_data), "--model", "whitespace",
                 "--set", "name=Forge", "--set", "author=Ada", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rejected"] == 0 and report["valid"] > 0
    assert any("Forge" in e for e in report["examples"])
    assert main(["data", "inspect", "identity", "--dataset-info", str(shared_data), "--model", "whitespace",
                 "--set", "oops"]) == 2
    assert "expected name=value" in capsys.readouterr().err


def test_cli_inspect_text_output_and_rejected_out(shared_data, tmp_path, capsys):
    out_file = tmp_path / "rejected.jsonl"
    code = main(["data", "inspect", "identity", "--dataset-info", str(shared_data), "--model", "whitespace",
                 "--rejected-out", str(out_file)])
    assert code == 0
    out = capsys.readouterr().out
    assert "format: alpaca" in out and "unfilled_placeholder" in out
    assert out_file.is_file()
    assert main(["data", "inspect", str(shared_data / "alpaca_en_demo.json"), "--format", "nope"]) == 2
    assert "unknown data format 'nope'" in capsys.readouterr().err


@pytest.mark.real
def test_cli_inspect_default_tokenizer_on_shared_alpaca(shared_data, capsys):
    assert main(["data", "inspect", str(shared_data / "alpaca_en_demo.json")]) == 0
    out = capsys.readouterr().out
    assert "valid: 999" in out and "rejected: 0" in out
    assert "tokens (smollm2-135m-instruct): p50" in out
    assert "<|im_start|>assistant" in out
