"""Each `data prepare` step on small handcrafted inputs with exact expectations."""

from __future__ import annotations

from collections import Counter

import pytest

from tuneforge.data.prepare import PrepareConfig, prepare
from tuneforge.data.records import Conversation, Labelled, Preference, Text, Turn

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def conv(prompt: str, answer: str, n: int = 0) -> Conversation:
    return Conversation([Turn("user", prompt), Turn("assistant", answer)], meta={"source": "mem", "line": n + 1})


def distinct_text(n: int, length: int = 40) -> str:
    """A text sharing no 3-word shingle with distinct_text(m) for m != n."""
    return " ".join(f"{WORDS[(n * 7 + i) % len(WORDS)]}{n}x{i}" for i in range(length))


def only(step: str, **overrides) -> PrepareConfig:
    """A config running just `step` (plus the always-on split, which removes nothing)."""
    cfg = {name: {"enabled": name == step} for name in ("normalize", "filter", "pii", "dedup", "leakage")}
    cfg["report"] = {"html": False}
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        cfg.setdefault(section, {})[field] = value
    return PrepareConfig.model_validate(cfg)


def run(records, cfg, tmp_path, **kw):
    return prepare(list(records), cfg, tmp_path / "out", **kw)


def quarantine(result) -> list[dict]:
    import json

    path = result.paths["quarantine"]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def all_out(result) -> list:
    return [r for split in ("train", "val", "test") for r in result.splits[split]]


# ---------------------------------------------------------------- normalize


def test_normalize_repairs_unicode_entities_controls_and_whitespace(tmp_path):
    records = [conv("caf\u00c3\u00a9 &amp; tea\x07  ", "the \ufb01le is   ready  \n\n\n\n\nend"), conv("ok", "fine")]
    result = run(records, only("normalize", split__val=0), tmp_path)
    fixed = all_out(result)[0]
    assert fixed.turns[0].content == "café & tea"
    assert fixed.turns[1].content == "the file is   ready\n\n\nend"  # inner spaces kept (code indentation)
    entries = quarantine(result)
    assert len(entries) == 1 and entries[0]["action"] == "modified" and entries[0]["step"] == "normalize"
    assert entries[0]["original"]["turns"][0]["content"] == "caf\u00c3\u00a9 &amp; tea\x07  "
    assert entries[0]["changed"]["turns"][0]["content"] == "café & tea"


def test_normalize_only_configured_fields(tmp_path):
    result = run([conv(" padded prompt ", " padded answer ")], only("normalize", normalize__fields=["answer"],
                                                                     split__val=0), tmp_path)
    out = all_out(result)[0]
    assert out.turns[0].content == " padded prompt " and out.turns[1].content == "padded answer"


# ---------------------------------------------------------------- filter


def test_filter_empty_short_long_and_repeated(tmp_path):
    records = [
        conv("q1", "   "),  # empty answer
        conv("q2", "tiny"),  # 2 words in total
        conv("q3 " + "w " * 50, "long answer"),  # too long
        conv("What is the capital of France?", "what is the capital of France"),  # repeats the prompt
        conv("Name a colour.", "Blue is a colour of the sky."),  # kept
    ]
    cfg = only("filter", filter__min_tokens=3, filter__max_tokens=30, split__val=0)
    result = run(records, cfg, tmp_path)
    reasons = Counter(e["reason"] for e in quarantine(result))
    assert reasons == {"empty_answer": 1, "too_short": 1, "too_long": 1, "repeats_prompt": 1}
    assert [r.turns[0].content for r in all_out(result)] == ["Name a colour."]
    assert result.report["tokens_counted_with"].startswith("whitespace")


def test_filter_counts_tokens_with_the_tokenizer(tmp_path, tiny_tokenizer):
    text = "The quick brown fox jumps over the lazy dog."
    n_tokens = len(tiny_tokenizer(text + "\n" + text, add_special_tokens=False)["input_ids"])
    cfg = only("filter", filter__max_tokens=n_tokens - 1, filter__repeat_prompt=False, split__val=0)
    result = run([conv(text, text)], cfg, tmp_path, tokenizer=tiny_tokenizer)
    assert quarantine(result)[0]["reason"] == "too_long"
    assert quarantine(result)[0]["tokens"] == n_tokens
    assert "tokenizer" in result.report["tokens_counted_with"]


def test_filter_language_is_seeded_and_keeps_listed_languages(tmp_path):
    english = conv("Tell me about the weather today.", "It is sunny and warm with a light breeze from the sea.")
    german = conv("Erzähl mir vom Wetter heute.", "Es ist sonnig und warm mit einer leichten Brise vom Meer her.")
    cfg = only("filter", filter__languages=["en"], split__val=0)
    result = run([english, german], cfg, tmp_path)
    assert [e["reason"] for e in quarantine(result)] == ["language"]
    assert all_out(result)[0].turns[0].content.startswith("Tell me")


# ---------------------------------------------------------------- PII


def test_pii_masks_luhn_valid_card_but_not_invalid(tmp_path):
    records = [conv("Pay with 4111 1111 1111 1111 please.", "Paid."), conv("Pay with 4111 1111 1111 1112 please.", "No.")]
    result = run(records, only("pii", split__val=0), tmp_path)
    out = {r.turns[1].content: r.turns[0].content for r in all_out(result)}
    assert out["Paid."] == "Pay with <CREDIT_CARD_1> please."
    assert out["No."] == "Pay with 4111 1111 1111 1112 please."
    assert result.report["steps"]["pii"]["found_by_type"] == {"CREDIT_CARD": 1}


def test_pii_same_email_same_placeholder_within_an_example(tmp_path):
    record = conv("Write to ann@example.com or bob@example.org.", "I wrote to ann@example.com.")
    result = run([record], only("pii", split__val=0), tmp_path)
    out = all_out(result)[0]
    assert out.turns[0].content == "Write to <EMAIL_1> or <EMAIL_2>."
    assert out.turns[1].content == "I wrote to <EMAIL_1>."
    entry = quarantine(result)[0]
    assert entry["action"] == "modified" and entry["original"]["turns"][1]["content"] == "I wrote to ann@example.com."


def test_pii_iban_ip_and_url_credentials(tmp_path):
    record = conv("IBAN DE89370400440532013000, host 192.168.1.20, repo https://joe:s3cret@git.example.com/x.git",
                  "Noted.")
    result = run([record], only("pii", split__val=0), tmp_path)
    assert all_out(result)[0].turns[0].content == "IBAN <IBAN_1>, host <IP_1>, repo <URL_CREDENTIALS_1>"


def test_pii_hash_and_drop_modes(tmp_path):
    records = [conv("mail ann@example.com", "ok ann@example.com"), conv("no pii here", "fine")]
    hashed = all_out(run(records, only("pii", pii__mode="hash", split__val=0), tmp_path / "h"))
    masked = hashed[0].turns[0].content.split()[1]
    assert masked.startswith("<EMAIL_") and masked != "<EMAIL_1>" and hashed[0].turns[1].content == f"ok {masked}"
    dropped = run(records, only("pii", pii__mode="drop_example", split__val=0), tmp_path / "d")
    assert [r.turns[0].content for r in all_out(dropped)] == ["no pii here"]
    assert quarantine(dropped)[0]["reason"] == "pii" and quarantine(dropped)[0]["entities"] == ["EMAIL_ADDRESS"]


def test_pii_names_are_reported_as_skipped_without_an_ner_model(tmp_path):
    import spacy

    if any(spacy.util.is_package(m) for m in ("en_core_web_sm", "en_core_web_md", "en_core_web_lg")):
        pytest.skip("an NER model is installed here")
    result = run([conv("Hi, I am John Smith from Paris.", "Hello.")], only("pii", split__val=0), tmp_path)
    assert any("no NER model installed" in n and "en_core_web_sm" in n for n in result.report["notes"])
    assert all_out(result)[0].turns[0].content == "Hi, I am John Smith from Paris."


# ---------------------------------------------------------------- dedup


def test_dedup_exact_and_near_duplicates(tmp_path):
    base = distinct_text(1)
    near = base.replace(f"{WORDS[7]}1x0", "changed")  # one word of 40 differs
    records = [conv("q", base), conv("Q!", base.upper()), conv("q", near), conv("q", distinct_text(2))]
    result = run(records, only("dedup", split__val=0), tmp_path)
    assert len(all_out(result)) == 2
    removed = {e["uid"]: e["reason"] for e in quarantine(result)}
    assert removed == {1: "exact_duplicate", 2: "near_duplicate"}
    clusters = result.report["steps"]["dedup"]["biggest_clusters"]
    assert clusters[0]["size"] == 3 and clusters[0]["kept_uid"] == 0


def test_dedup_keep_longest(tmp_path):
    base = distinct_text(3)
    records = [conv("q", base), conv("q", base + " extra")]
    result = run(records, only("dedup", dedup__keep="longest", split__val=0), tmp_path)
    assert all_out(result)[0].turns[1].content.endswith("extra")


# ---------------------------------------------------------------- split


def test_near_duplicates_never_straddle_splits(tmp_path):
    records = []
    for n in range(30):
        text = distinct_text(n)
        records.append(conv("q", text))
        if n % 3 == 0:  # a near copy: two words changed
            words = text.split()
            words[20] = "zzz"  # one word of 40: Jaccard 35/41 on 3-word shingles
            records.append(conv("q", " ".join(words)))
    for seed in range(5):
        result = run(records, only("none", split__val=0.3, split__test=0.2), tmp_path / str(seed), seed=seed)
        where = {}
        for split, recs in result.splits.items():
            for r in recs:
                where.setdefault(r.turns[1].content.split()[0], set()).add(split)
        assert len(all_out(result)) == len(records)  # dedup is off: the copies are kept...
        assert all(len(s) == 1 for s in where.values())  # ...but each pair sits in one split


def test_stratified_split_keeps_label_ratios_and_is_seeded(tmp_path):
    records = [Labelled(distinct_text(n, 12), "pos" if n < 70 else "neg") for n in range(100)]
    result = run(records, only("none", split__val=0.2, split__test=0.1), tmp_path / "a", seed=7)
    balance = result.report["steps"]["split"]["label_balance"]
    assert balance["val"] == {"pos": 14, "neg": 6} and balance["test"] == {"pos": 7, "neg": 3}
    again = run(records, only("none", split__val=0.2, split__test=0.1), tmp_path / "b", seed=7)
    other = run(records, only("none", split__val=0.2, split__test=0.1), tmp_path / "c", seed=8)
    texts = lambda r: [x.text for x in r.splits["val"]]  # noqa: E731
    assert texts(result) == texts(again) and texts(result) != texts(other)


def test_split_counts(tmp_path):
    records = [Text(distinct_text(n, 10)) for n in range(40)]
    result = run(records, only("none", split__val=5, split__test=3), tmp_path)
    assert result.counts["val"] == 5 and result.counts["test"] == 3 and result.counts["train"] == 32


# ---------------------------------------------------------------- leakage


def test_leakage_finds_planted_pair_between_user_splits(tmp_path):
    from tuneforge.config.sections import DataSource
    from tuneforge.data import write_records

    planted = distinct_text(99)
    train = [conv("q", distinct_text(n)) for n in range(10)] + [conv("q", planted)]
    val = [conv("q", distinct_text(n)) for n in range(20, 25)] + [conv("q", planted.replace("golf", "gulf", 1) + " end")]
    write_records(train, tmp_path / "train.jsonl")
    write_records(val, tmp_path / "val.jsonl")
    sources = [DataSource(path=str(tmp_path / "train.jsonl"), split="train"),
               DataSource(path=str(tmp_path / "val.jsonl"), split="val")]
    result = prepare(sources, PrepareConfig(), tmp_path / "out")
    leak = result.report["steps"]["leakage"]
    assert leak["total"] == 1 and leak["counts"] == {"train/val near": 1}
    pair = leak["pairs"]["train/val"][0]
    assert pair["a"]["line"] == 11 and pair["b"]["line"] == 6 and pair["b"]["source"].endswith("val.jsonl")
    # dedup keeps the train copy; the leak in the user's splits is still reported
    assert pair["b"]["removed_by_dedup"] is True and pair["a"]["removed_by_dedup"] is False
    assert result.counts["train"] == 11 and result.counts["val"] == 5
    kept = prepare(sources, only("leakage"), tmp_path / "out2")  # without dedup both stay, still reported
    assert kept.report["steps"]["leakage"]["total"] == 1 and kept.counts["val"] == 6


def test_leakage_against_eval_file(tmp_path):
    from tuneforge.data import write_records

    records = [conv("q", distinct_text(n)) for n in range(12)]
    write_records([conv("q", distinct_text(4)), conv("q", distinct_text(50))], tmp_path / "eval.jsonl")
    result = prepare(records, only("leakage", split__val=0), tmp_path / "out", eval_data=str(tmp_path / "eval.jsonl"))
    leak = result.report["steps"]["leakage"]
    assert leak["counts"] == {"train/eval exact": 1}
    assert leak["pairs"]["train/eval"][0]["a"]["uid"] == 4


def test_our_own_splits_do_not_leak(tmp_path):
    prompt = Conversation([Turn("user", "q")])
    records = [Preference(prompt, distinct_text(n), "bad answer") for n in range(30)]
    result = run(records, only("leakage", split__val=0.3), tmp_path)
    assert result.report["steps"]["leakage"]["total"] == 0


def test_pii_offsets_in_long_texts_are_exact(tmp_path):
    # only windows around the regex gates reach presidio: offsets must map back to the full text
    filler = " ".join(f"word{i}" for i in range(300))
    text = f"ann@example.com {filler} card 4111 1111 1111 1111 end {filler} again ann@example.com"
    result = run([conv(text, "ok")], only("pii", split__val=0), tmp_path)
    assert all_out(result)[0].turns[0].content == (
        f"<EMAIL_1> {filler} card <CREDIT_CARD_1> end {filler} again <EMAIL_1>")


def test_pii_decimals_are_not_phone_numbers(tmp_path):
    record = conv("Compute arccos(-0.3571428571) and call 212.555.0199.", "It is 1.9360000000 rad.")
    out = all_out(run([record], only("pii", split__val=0), tmp_path))[0]
    assert out.turns[0].content == "Compute arccos(-0.3571428571) and call <PHONE_1>."
    assert out.turns[1].content == "It is 1.9360000000 rad."


def test_pii_names_and_places_with_an_ner_pipeline(tmp_path):
    import spacy

    # a tiny rule-based NER pipeline saved as a folder stands in for en_core_web_sm (not installable here)
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PERSON", "pattern": "John Smith"}, {"label": "GPE", "pattern": "Paris"}])
    nlp.to_disk(tmp_path / "ner")
    cfg = only("pii", pii__ner_model=str(tmp_path / "ner"), pii__score_threshold=0.3, split__val=0)
    result = run([conv("Hi, I am John Smith from Paris. John Smith again.", "Hello.")], cfg, tmp_path)
    assert all_out(result)[0].turns[0].content == "Hi, I am <PERSON_1> from <LOCATION_1>. <PERSON_1> again."
    assert result.report["steps"]["pii"]["found_by_type"] == {"PERSON": 2, "LOCATION": 1}
