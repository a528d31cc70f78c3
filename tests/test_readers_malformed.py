"""Malformed inputs: each is reported as file:line: field: expected …, got … (never a traceback)."""

from __future__ import annotations

import json

import pytest

from tuneforge.cli import main
from tuneforge.data import read_source
from tuneforge.errors import DataError


def alpaca_rows(n: int) -> list[dict]:
    return [{"instruction": f"question {i}", "input": "", "output": f"answer {i}"} for i in range(n)]


def pretty(rows: list) -> str:
    return json.dumps(rows, indent=2)


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def test_pretty_array_lines_are_real_file_lines(tmp_path):
    text = pretty(alpaca_rows(4))
    path = tmp_path / "a.json"
    path.write_text(text)
    result = read_source(path)
    assert [r.meta["line"] for r in result.records] == [line_of(text, f'"question {i}"') - 1 for i in range(4)]
    assert all(r.meta["source"] == str(path) for r in result.records)


@pytest.mark.parametrize("cut_at, tail", [('"answer 2"', ""), ('"output": "answer 2"', "\n"), ("  }\n]", "\n\n")])
def test_truncated_json_keeps_elements_before_the_break(tmp_path, cut_at, tail):
    text = pretty(alpaca_rows(3)).rstrip("\n") + "\n"
    cut = text[: text.rindex(cut_at) + 4]  # stops inside the third element (or before the closing ']')
    path = tmp_path / "cut.json"
    path.write_text(cut + tail)
    result = read_source(path)
    kept = ["question 0", "question 1"] + (["question 2"] if cut_at.startswith("  }") else [])
    assert [r.turns[0].content for r in result.records] == kept
    assert len(result.rejected) == 1
    issue = result.rejected[0]
    assert issue.code == "invalid_json"
    assert issue.line == cut.rstrip().count("\n") + 1  # the last line with text, where it breaks off
    assert "truncated" in issue.message
    assert str(issue).startswith(f"{path}:{issue.line}: ")


def test_array_with_one_syntax_error_element_keeps_the_others(tmp_path):
    text = pretty(alpaca_rows(3)).replace('"output": "answer 1"', '"output": ,')
    path = tmp_path / "bad.json"
    path.write_text(text)
    result = read_source(path)
    assert [r.turns[1].content for r in result.records] == ["answer 0", "answer 2"]
    (issue,) = result.rejected
    assert (issue.code, issue.line) == ("invalid_json", line_of(text, '"output": ,'))


def test_array_with_one_wrong_element(tmp_path):
    rows = alpaca_rows(3)
    rows[1]["output"] = 5
    text = pretty(rows[:2]) [:-2] + ',\n  "just a string"\n]'
    path = tmp_path / "bad.json"
    path.write_text(text)
    result = read_source(path)
    assert len(result.records) == 1
    codes = {(i.code, i.field, i.line) for i in result.rejected}
    assert ("wrong_type", "output", line_of(text, '"question 1"') - 1) in codes
    assert ("wrong_type", "(row)", line_of(text, '"just a string"')) in codes
    wrong = next(i for i in result.rejected if i.field == "output")
    assert "expected a string, got int 5" in wrong.message


@pytest.mark.parametrize(
    "row, code, field",
    [
        ({"instruction": "q"}, "missing_field", "output"),
        ({"instruction": ["q"], "output": "a"}, "wrong_type", "instruction"),
        ({"instruction": "q", "output": "  "}, "empty_content", "output"),
        ({"instruction": "q", "output": "a", "history": [["only one"]]}, "wrong_type", "history[0]"),
        ({"conversations": "hello"}, "wrong_type", "conversations"),
        ({"conversations": [{"from": "bot", "value": "x"}]}, "unrecognized_role", "conversations[0].from"),
        ({"conversations": [{"from": "human", "value": "x"}]}, "no_assistant_turn", "conversations"),
        ({"conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]}, "turn_order", "conversations[0]"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                       {"role": "assistant", "content": "c"}]}, "turn_order", "messages[1]"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": 3}]}, "wrong_type", "messages[1].content"),
    ],
)
def test_row_problems_are_reported_with_code_and_field(tmp_path, row, code, field):
    path = tmp_path / "rows.jsonl"
    key = next(iter(row))
    good = {"instruction": "fine", "output": "ok"} if key == "instruction" else (
        {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}
        if key == "conversations" else {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    result = read_source(path)
    assert len(result.records) == 1
    (issue,) = result.rejected
    assert (issue.code, issue.field, issue.line) == (code, field, 2)
    assert "expected" in issue.message and "got" in issue.message


def test_non_utf8_bytes_are_an_encoding_issue_with_line(tmp_path):
    lines = [json.dumps(r).encode() for r in alpaca_rows(3)]
    lines[1] = lines[1].replace(b"answer 1", b"answer \xff\xfe 1")
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = read_source(path)
    assert len(result.records) == 2
    (issue,) = result.rejected
    assert (issue.code, issue.line) == ("encoding", 2)


def test_non_utf8_inside_a_pretty_array(tmp_path):
    text = pretty(alpaca_rows(3)).encode().replace(b"answer 2", b"answer \xe9 2")
    path = tmp_path / "latin.json"
    path.write_bytes(text)
    result = read_source(path)
    assert len(result.records) == 2
    (issue,) = result.rejected
    assert issue.code == "encoding"
    assert issue.line == text[: text.index(b"answer \xe9")].count(b"\n") + 1


@pytest.mark.parametrize("content", [b"", b"  \n\n"])
def test_empty_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match="empty"):
        read_source(path)


def test_ten_megabyte_line(tmp_path):
    big = "x" * (10 * 1024 * 1024)
    rows = [{"instruction": "q", "output": big}, {"instruction": "q2", "output": "short"}]
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n" + '{"instruction": "' + big + "\n")
    result = read_source(path)
    assert [len(r.turns[1].content) for r in result.records] == [len(big), 5]
    assert [r.meta["line"] for r in result.records] == [1, 2]
    (issue,) = result.rejected
    assert (issue.code, issue.line) == ("invalid_json", 3)
    assert len(issue.raw) < 10_000  # the rejected row is kept, clipped


def test_bom_and_crlf(tmp_path):
    jsonl = "\r\n".join(json.dumps(r) for r in alpaca_rows(3)) + "\r\n"
    (tmp_path / "a.jsonl").write_bytes(b"\xef\xbb\xbf" + jsonl.encode())
    array = pretty(alpaca_rows(3)).replace("\n", "\r\n")
    (tmp_path / "a.json").write_bytes(b"\xef\xbb\xbf" + array.encode())
    csv_text = "instruction,input,output\r\nq0,,a0\r\n\"multi\r\nline\",,a1\r\nq2,,a2\r\n"
    (tmp_path / "a.csv").write_bytes(b"\xef\xbb\xbf" + csv_text.encode())
    a = read_source(tmp_path / "a.jsonl")
    assert [r.meta["line"] for r in a.records] == [1, 2, 3]
    b = read_source(tmp_path / "a.json")
    assert [r.meta["line"] for r in b.records] == [2, 7, 12]
    c = read_source(tmp_path / "a.csv")
    assert c.format == "alpaca" and not c.rejected
    assert [r.meta["line"] for r in c.records] == [2, 3, 5]
    assert c.records[1].turns[0].content == "multi\r\nline"
    assert all("\r" not in r.turns[1].content for r in a.records + b.records + c.records)


def test_a_utf16_bom_on_bytes_that_are_not_utf16_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "odd.jsonl"
    path.write_bytes(b"\xff\xfe" + b'{"instruction": "q", "output": "ab"}\n')  # odd length: not UTF-16
    with pytest.raises(DataError, match=r"odd\.jsonl: starts with a UTF-16 byte-order mark but is not valid UTF-16"):
        read_source(path)
    assert main(["data", "inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert "expected UTF-8 or UTF-16 text" in err and "Traceback" not in err


def test_directory_and_missing_path(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        read_source(tmp_path)
    with pytest.raises(DataError, match="not found"):
        read_source(tmp_path / "nope.json")
    with pytest.raises(DataError, match="unsupported file type"):
        (tmp_path / "x.xml").write_text("<a/>")
        read_source(tmp_path / "x.xml")


def test_strict_raises_on_first_problem(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"instruction": "q", "output": "a"}) + "\n" + json.dumps({"instruction": "q"}) + "\n")
    with pytest.raises(DataError, match=rf"s.jsonl:2: output: expected a string, got nothing"):
        read_source(path, strict=True)


def test_rejected_rows_are_written_with_reason(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"instruction": "q", "output": "a"}\n{"instruction": "q"}\n{broken\n')
    result = read_source(path)
    out = result.write_rejected(tmp_path / "out" / "rejected.jsonl")
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(w["line"], w["code"]) for w in written] == [(2, "missing_field"), (3, "invalid_json")]
    assert written[0]["raw"] == '{"instruction": "q"}'
    assert result.counts_by_code() == {"missing_field": 1, "invalid_json": 1}


def test_cli_reports_problems_without_traceback(tmp_path, capsys):
    missing = tmp_path / "missing.json"
    assert main(["data", "inspect", str(missing), "--model", "whitespace"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["data", "inspect", str(tmp_path), "--model", "whitespace"]) == 2
    assert "directory" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(pretty(alpaca_rows(12))[:-40])
    assert main(["data", "inspect", str(bad), "--model", "whitespace"]) == 0
    out = capsys.readouterr().out
    assert "rejected by code: invalid_json 1" in out and "valid: 11" in out


def test_absurdly_nested_json_is_a_row_issue(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text(json.dumps({"instruction": "q", "output": "a"}) + "\n" + "[" * 100_000 + "\n")
    result = read_source(path)
    assert len(result.records) == 1
    (issue,) = result.rejected
    assert (issue.code, issue.line) == ("invalid_json", 2)
