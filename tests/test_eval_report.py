"""The HTML/JSON report: every section present, charts inline, loss curves read from the run."""

from __future__ import annotations

import json
import re

import pytest

from tuneforge.data.records import Labelled
from tuneforge.evaluate.api import evaluate_model
from tuneforge.evaluate.report import SECTIONS, read_loss_curves, write_eval_report


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _records() -> list[Labelled]:
    texts = [("Classify the sentiment: I love this product.", "positive"),
             ("Classify the sentiment: this is terrible.", "negative")]
    return [Labelled(text=t, label=lab, groups={"lang": "ab"[i % 2]}) for i, (t, lab) in enumerate(texts * 3)]


def _run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lines = [json.dumps({"step": s, "loss": 3.0 - 0.5 * s, "lr": 1e-4}) for s in range(4)]
    lines.append(json.dumps({"step": 3, "eval_loss": 2.1}))
    lines.append('{"step": 4, "loss"')  # a half-written line of a running job is skipped
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_report_has_every_section_with_content(tiny_model, tiny_tokenizer, tmp_path):
    run = _run_dir(tmp_path)
    records = _records()
    before = evaluate_model(tiny_model, tiny_tokenizer, records, ["auto", "calibration"],
                            max_new_tokens=3, val_records=records)
    after = evaluate_model(tiny_model, tiny_tokenizer, records, ["auto", "calibration"], max_new_tokens=3)
    out = tmp_path / "report"
    path = write_eval_report({"before": before, "after": after}, out, run_dir=run)
    page = path.read_text()
    for section in SECTIONS:
        assert f"<section id='{section}'>" in page
    # Loss curves, metric bars, 2 reliability diagrams, 2 confusion matrices, all inline.
    assert len(re.findall(r"src='data:image/png;base64,", page)) == 6
    assert "No training run attached" not in page and "Not a label task" not in page
    assert "ECE before" in page and "lang" in page and "worst" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained
    data = json.loads((out / "report.json").read_text())
    assert {m["name"] for m in data["models"]} == {"before", "after"}
    assert data["loss_curves"]["loss"][0] == [0.0, 3.0] and "eval_loss" in data["loss_curves"]
    assert (out / "predictions" / "before.jsonl").is_file()


def test_report_says_when_sections_do_not_apply(tiny_model, tiny_tokenizer, tmp_path):
    from tuneforge.data.records import Conversation, Turn

    convs = [Conversation(turns=[Turn("user", "hi <b>there</b>"), Turn("assistant", "hello")])]
    result = evaluate_model(tiny_model, tiny_tokenizer, convs, max_new_tokens=2, out_dir=tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "No training run attached" in page and "Not a label task" in page
    assert "No group attributes" in page and "Not computed" in page
    assert "hi &lt;b&gt;there&lt;/b&gt;" in page  # data is escaped, not injected
    assert result.task == "text"


def test_read_loss_curves_missing_run(tmp_path):
    assert read_loss_curves(tmp_path) == {}
