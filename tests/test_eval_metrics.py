"""Generation metrics against the reference libraries, computed independently in each test."""

from __future__ import annotations

import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from tuneforge.errors import ConfigError
from tuneforge.evaluate import metrics as M
from tuneforge.evaluate.scoring import detect_task, score_generations

PREDS = ["the cat sat on the mat", "a quick brown fox", "hello world", "Paris is the capital"]
REFS = ["the cat is on the mat", "the quick brown fox jumps", "hello world", "The capital is Paris."]


def test_text_metrics_match_sacrebleu_and_rouge():
    wanted = ["exact_match", "bleu", "chrf", "rouge1", "rouge2", "rougeL"]
    corpus, per_example, _ = score_generations(PREDS, REFS, wanted)
    assert corpus["bleu"] == pytest.approx(sacrebleu.corpus_bleu(PREDS, [REFS]).score)
    assert corpus["chrf"] == pytest.approx(sacrebleu.corpus_chrf(PREDS, [REFS]).score)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    expected = [scorer.score(r, p) for p, r in zip(PREDS, REFS)]
    for kind in ("rouge1", "rouge2", "rougeL"):
        mean = sum(e[kind].fmeasure for e in expected) / len(expected) * 100
        assert corpus[kind] == pytest.approx(mean)
        assert per_example[0][kind] == pytest.approx(expected[0][kind].fmeasure * 100)
    assert per_example[1]["bleu"] == pytest.approx(sacrebleu.sentence_bleu(PREDS[1], [REFS[1]]).score)
    assert corpus["exact_match"] == pytest.approx(0.25)  # only "hello world"


def test_normalized_exact_match_ignores_case_punctuation_articles():
    assert M.normalized_exact_match("The Answer: Paris!", "answer paris") == 1.0
    assert M.exact_match("The Answer: Paris!", "answer paris") == 0.0
    assert M.normalized_exact_match("Paris", "London") == 0.0


def test_label_metrics_match_sklearn():
    labels = ["negative", "neutral", "positive"]
    refs = ["positive", "negative", "neutral", "positive", "negative", "neutral"]
    preds = ["Positive.", "negative", "positive", "I think positive", "blah", "neutral or positive"]
    corpus, per_example, extras = score_generations(preds, refs, ["accuracy", "macro_f1"], labels)
    mapped = ["positive", "negative", "positive", "positive", M.OTHER_LABEL, "neutral"]
    assert extras["predicted_labels"] == mapped
    assert corpus["accuracy"] == pytest.approx(accuracy_score(refs, mapped))
    assert corpus["macro_f1"] == pytest.approx(f1_score(refs, mapped, labels=labels, average="macro"))
    axis = labels + [M.OTHER_LABEL]
    assert extras["confusion"]["labels"] == axis
    assert extras["confusion"]["matrix"] == confusion_matrix(refs, mapped, labels=axis).tolist()
    assert [row["correct"] for row in per_example] == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]


def test_map_to_label_prefers_longest_label():
    assert M.map_to_label("very positive, clearly", ["positive", "very positive"]) == "very positive"
    assert M.map_to_label("neutral", ["positive"]) == M.OTHER_LABEL
    assert M.map_to_label("The sentiment of this review is Negative.", ["negative", "positive"]) == "negative"
    assert M.map_to_label("not positive but negative", ["negative", "positive"]) == M.OTHER_LABEL
    assert M.map_to_label("it is very positive", ["positive", "very positive"]) == "very positive"


def test_json_scores_parse_first_object_and_count_fields():
    ref = '{"category": "billing", "priority": "high", "meta": {"product": "router"}}'
    pred = 'Sure! ```json\n{"category": "billing", "priority": "low", "meta": {"product": "router"}}\n``` {"x": 1}'
    scores = M.json_scores(pred, ref)
    assert scores["json_valid"] == 1.0
    assert scores["json_field_accuracy"] == pytest.approx(2 / 3)
    assert scores["json_exact_match"] == 0.0
    assert M.json_scores(ref, ref)["json_exact_match"] == 1.0
    assert M.json_scores("no json {here", ref) == {"json_valid": 0.0, "json_field_accuracy": 0.0, "json_exact_match": 0.0}


def test_task_detection():
    assert detect_task(['{"a": 1}', '{"a": 2}'], None, False) == "json"
    assert detect_task(["yes", "no", "yes", "no", "yes"], None, False) == "label"
    assert detect_task(["a long free answer here", "another different one", "x y z w v", "q r s t"], None, False) == "text"
    assert detect_task(["anything"], ["a", "b"], False) == "label"


def test_resolve_metrics_expands_groups_and_suggests():
    assert M.resolve_metrics(["rouge,bleu"], "text") == ["rouge1", "rouge2", "rougeL", "bleu"]
    assert "accuracy" in M.resolve_metrics(None, "label")
    assert "json_valid" in M.resolve_metrics(["auto"], "json")
    with pytest.raises(ConfigError, match="did you mean 'accuracy'"):
        M.resolve_metrics(["acuracy"], "label")
