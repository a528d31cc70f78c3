"""Hostile inputs (issue 15): every row in is valid or rejected with file:line, and whole-file errors name
the file and the real cause. Each test failed before its fix (traceback, vanished rows or a vague error)."""

from __future__ import annotations

import json
import os

import pytest

from tuneforge.cli import main
from tuneforge.config.sections import DataSource
from tuneforge.data import read_source
from tuneforge.data.inspect import inspect_source
from tuneforge.errors import DataError


def row(i: int, **extra) -> dict:
    return {"instruction": f"question {i}", "output": f"answer {i}", **extra}


def jsonl(path, lines: list[str]):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def accounted(result) -> None:
    assert result.rows == result.valid_rows + len(result.rejected)


# --- 4: reader tracebacks become row-level rejections -------------------------------------------------

def test_a_5001_digit_id_rejects_that_row_only(tmp_path):
    path = jsonl(tmp_path / "ids.jsonl", [json.dumps(row(0)), '{"id": ' + "7" * 5001 + ', "instruction": "q", '
                                          '"output": "a"}', json.dumps(row(2))])
    result = read_source(path)
    accounted(result)
    assert [r.turns[0].content for r in result.records] == ["question 0", "question 2"]
    (issue,) = result.rejected
    assert (issue.line, issue.code) == (2, "wrong_type") and "4300 digits" in issue.message
    assert str(issue).startswith(f"{path}:2: ")


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\uDBFF!"])
def test_a_lone_surrogate_escape_rejects_the_row_naming_the_field(tmp_path, escape):
    bad = '{"instruction": "q", "output": "broken ' + escape + '"}'
    paired = json.dumps(row(3, output="emoji \U0001F600"), ensure_ascii=True)  # \\ud83d\\ude00: a valid pair
    path = jsonl(tmp_path / "s.jsonl", [json.dumps(row(0)), bad, paired])
    result = read_source(path)
    accounted(result)
    assert [r.turns[1].content for r in result.records] == ["answer 0", "emoji \U0001F600"]
    (issue,) = result.rejected
    assert (issue.line, issue.code, issue.field) == (2, "encoding", "output")
    issue.raw.encode("utf-8")  # the rejected row stays writable


def test_lone_surrogates_reach_neither_the_tokenizer_nor_prepare_outputs(tmp_path, tiny_tokenizer):
    lines = [json.dumps(row(i)) for i in range(12)] + ['{"instruction": "q\\ud800", "output": "a"}']
    path = jsonl(tmp_path / "s.jsonl", lines)
    report = inspect_source(path, tokenizer=tiny_tokenizer, rejected_out=tmp_path / "rej.jsonl")
    assert (report.rows, report.valid_rows, report.rejected) == (13, 12, 1)
    from tuneforge.data.prepare import prepare

    result = prepare(path, out_dir=tmp_path / "out")
    assert (result.counts["rows"], result.counts["valid_rows"], result.counts["rejected"]) == (13, 12, 1)
    for name in ("quarantine.jsonl", "rejected.jsonl", "train.jsonl"):
        file = tmp_path / "out" / name
        if file.exists():
            file.read_bytes().decode("utf-8")  # strict: no surrogate made it into a file


# --- 5: silent drops ------------------------------------------------------------------------------------

def test_a_deeply_nested_row_does_not_swallow_the_lines_after_it(tmp_path):
    deep = '{"instruction": "q", "output": "a", "meta": ' + "[" * 5000 + "]" * 5000 + "}"
    path = jsonl(tmp_path / "d.jsonl", [json.dumps(row(0)), json.dumps(row(1)), deep,
                                        json.dumps(row(3)), json.dumps(row(4))])
    report = inspect_source(path, model="whitespace")
    assert (report.rows, report.valid_rows, report.rejected) == (5, 4, 1)
    assert report.issues[0].startswith(f"{path}:3: ") and "nested" in report.issues[0]


def test_a_broken_jsonl_line_never_hides_the_next_line(tmp_path):
    path = jsonl(tmp_path / "b.jsonl", ['{"instruction": "q", "output": "a"', json.dumps(row(1)),
                                        "not json at all", json.dumps(row(3))])
    result = read_source(path)
    accounted(result)
    assert result.rows == 4 and [r.turns[0].content for r in result.records] == ["question 1", "question 3"]
    assert [i.line for i in result.rejected] == [1, 3]


def test_an_unterminated_csv_quote_rejects_one_row_and_keeps_the_next(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('instruction,output\nq0,a0\nq1,"a1 never closed\nq2,a2\nq3,a3\n')
    result = read_source(path)
    accounted(result)
    assert [r.turns[0].content for r in result.records] == ["q0", "q2", "q3"]
    (issue,) = result.rejected
    assert issue.line == 3 and "unterminated quoted field" in issue.message


def test_a_stray_quote_after_a_closed_field_is_rejected_not_merged(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('instruction,output\nq0,"a0"x\nq1,a1\n')
    result = read_source(path)
    accounted(result)
    assert [r.turns[0].content for r in result.records] == ["q1"] and result.rejected[0].line == 2


def test_the_inspect_report_prints_rows_as_valid_plus_rejected(tmp_path, capsys):
    path = jsonl(tmp_path / "b.jsonl", [json.dumps(row(0)), "{", json.dumps(row(2))])
    assert main(["data", "inspect", str(path), "--model", "whitespace"]) == 0
    assert "rows: 3 = 2 valid + 1 rejected" in capsys.readouterr().out


# --- 8: whole-file errors name the file and the real cause ---------------------------------------------

def test_a_latin1_file_names_file_and_encoding_and_reads_with_encoding_set(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(("\n".join(json.dumps(row(i, output=f"café {i}"), ensure_ascii=False) for i in range(3))
                      + "\n").encode("latin-1"))
    with pytest.raises(DataError) as err:
        read_source(path)
    message = str(err.value)
    assert str(path) in message and "UTF-8" in message and "encoding:" in message
    assert "no JSON objects" not in message
    result = read_source(DataSource(path=str(path), encoding="latin-1"))
    assert [r.turns[1].content for r in result.records] == ["café 0", "café 1", "café 2"]


@pytest.mark.parametrize("codec, order", [("utf-16-le", "LE"), ("utf-16-be", "BE")])
def test_utf16_without_bom_names_file_and_encoding(tmp_path, codec, order, capsys):
    path = tmp_path / "u16.jsonl"
    path.write_bytes("".join(json.dumps(row(i)) + "\n" for i in range(3)).encode(codec))
    with pytest.raises(DataError, match=f"{path}: looks like UTF-16 \\({order}\\).*encoding: {codec}"):
        read_source(path)
    assert main(["data", "inspect", str(path), "--model", "whitespace", "--encoding", codec]) == 0
    assert "rows: 3 = 3 valid + 0 rejected" in capsys.readouterr().out


def test_200000_deep_nesting_names_file_and_depth(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(DataError) as err:
        read_source(path)
    assert str(path) in str(err.value) and "nested" in str(err.value) and "no JSON objects" not in str(err.value)


def test_a_symlink_loop_and_a_dangling_link_say_so(tmp_path, capsys):
    loop = tmp_path / "loop.jsonl"
    os.symlink(tmp_path / "other.jsonl", loop)
    os.symlink(loop, tmp_path / "other.jsonl")
    with pytest.raises(DataError, match="symbolic link loop"):
        read_source(loop)
    dangling = tmp_path / "gone.jsonl"
    os.symlink(tmp_path / "nowhere.jsonl", dangling)
    with pytest.raises(DataError, match="symbolic link to .*nowhere.jsonl, which does not exist"):
        read_source(dangling)
    assert main(["data", "inspect", str(loop), "--model", "whitespace"]) == 2
    assert "symbolic link loop" in capsys.readouterr().err


def test_an_unknown_encoding_is_a_recipe_field_error():
    with pytest.raises(ValueError, match="unknown text encoding 'latin-42'"):
        DataSource(path="x.jsonl", encoding="latin-42")
    assert DataSource(path="x.jsonl", encoding="Latin1").encoding == "iso8859-1"


# --- minor ------------------------------------------------------------------------------------------------

def test_nan_and_infinity_labels_are_rejected_not_classes(tmp_path):
    path = jsonl(tmp_path / "l.jsonl", ['{"text": "a", "label": NaN}', '{"text": "b", "label": Infinity}',
                                        '{"text": "c", "label": -Infinity}', '{"text": "d", "label": "pos"}'])
    result = read_source(path)
    assert [r.label for r in result.records] == ["pos"]
    assert [(i.line, i.code, i.field) for i in result.rejected] == [(1, "wrong_type", "label"),
                                                                     (2, "wrong_type", "label"),
                                                                     (3, "wrong_type", "label")]


def test_a_nan_turn_weight_is_rejected(tmp_path):
    path = jsonl(tmp_path / "w.jsonl", ['{"messages": [{"role": "user", "content": "q"}, '
                                        '{"role": "assistant", "content": "a", "weight": NaN}]}'])
    (issue,) = read_source(path, format="openai").rejected
    assert issue.field == "messages[1].weight"


def test_duplicate_keys_are_kept_with_a_warning(tmp_path, capsys):
    path = jsonl(tmp_path / "d.jsonl", ['{"instruction": "first", "instruction": "second", "output": "a"}',
                                        json.dumps(row(1))])
    result = read_source(path)
    assert result.records[0].turns[0].content == "second"
    assert result.warnings == [f"{path}:1: instruction: duplicate key in one object; the last value is used"]
    assert main(["data", "inspect", str(path), "--model", "whitespace"]) == 0
    assert "warning: " in capsys.readouterr().out


@pytest.mark.parametrize("message, got", [('{"role": "user", "content": null}', "got null"),
                                          ('{"role": "user"}', "got missing"),
                                          ('{"role": "user", "content": ""}', "got an empty string")])
def test_null_and_missing_content_are_reported_as_such(tmp_path, message, got):
    path = jsonl(tmp_path / "c.jsonl", ['{"messages": [' + message + ', {"role": "assistant", "content": "a"}]}'])
    (issue,) = read_source(path).rejected
    assert issue.field == "messages[0].content" and issue.message.endswith(got)
