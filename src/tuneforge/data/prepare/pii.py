"""Step 3, anonymize PII with presidio: pattern recognizers on a blank spaCy pipeline, NER names when a
spaCy model is installed. Modes: mask (typed placeholders, consistent within an example), hash, drop_example.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from tuneforge.data.prepare.config import PiiConfig
from tuneforge.data.prepare.fields import clone, set_text, slots
from tuneforge.data.prepare.ledger import Item, Ledger
from tuneforge.errors import UnsupportedHere

PLACEHOLDER = {
    "EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CREDIT_CARD", "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP", "URL_CREDENTIALS": "URL_CREDENTIALS", "PERSON": "PERSON", "LOCATION": "LOCATION",
}
NER_ENTITIES = {"PERSON", "LOCATION"}
NER_CANDIDATES = ("en_core_web_lg", "en_core_web_md", "en_core_web_sm", "en_core_web_trf")
NER_MISSING = "person/location names: skipped, no NER model installed; install en_core_web_sm to enable"

# Presidio costs ~1-10 ms per text (phonenumbers' matcher, spaCy token objects), far too slow for every row
# of a 50k-row file. Cheap regexes gate which texts reach the analyzer, which recognizers run on them and
# which windows of the text are analyzed; each gate accepts a superset of what its presidio recognizer
# accepts. Every gate pattern starts at a rare character (@, :, a digit) so scanning stays cheap.
_DIGIT_RUN = re.compile(r"\d[\d \t().\-/+]{6,}")  # phone numbers have >= 7 digits, cards 13-19
_IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
_IPV6 = re.compile(r":[0-9A-Fa-f]{0,4}:")
_URL_CREDENTIALS = re.compile(r"://[^\s/@]+@")
_IBAN = re.compile(r"(?<=[A-Za-z]{2})\d\d(?:[ ]?[A-Za-z0-9]){11,}")  # >= 15 characters with the country


def gate_matches(text: str, entities: frozenset[str] | set[str]) -> list[tuple[str, int, int]]:
    """(entity, start, end) of every place a configured pattern entity could be."""
    out: list[tuple[str, int, int]] = []
    if "EMAIL_ADDRESS" in entities and "@" in text:
        out += [("EMAIL_ADDRESS", m.start(), m.end()) for m in re.finditer("@", text)]
    if "URL_CREDENTIALS" in entities and "://" in text:
        out += [("URL_CREDENTIALS", m.start(), m.end()) for m in _URL_CREDENTIALS.finditer(text)]
    if "IP_ADDRESS" in entities and ":" in text:
        out += [("IP_ADDRESS", m.start(), m.end()) for m in _IPV6.finditer(text)]
    if "IBAN_CODE" in entities:
        out += [("IBAN_CODE", m.start() - 2, m.end()) for m in _IBAN.finditer(text)]
    for m in _DIGIT_RUN.finditer(text):
        digits = sum(c.isdigit() for c in m.group())
        if "PHONE_NUMBER" in entities and digits >= 7:
            out.append(("PHONE_NUMBER", m.start(), m.end()))
        if "CREDIT_CARD" in entities and digits >= 13:
            out.append(("CREDIT_CARD", m.start(), m.end()))
        if "IP_ADDRESS" in entities and _IPV4.search(m.group()):
            out.append(("IP_ADDRESS", m.start(), m.end()))
    return out


@dataclass
class Engines:
    analyzer: object
    batch: object
    anonymizer: object
    entities: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def pattern_entities(self) -> frozenset[str]:
        return frozenset(self.entities) - NER_ENTITIES


def _url_credentials_recognizer():
    from presidio_analyzer import Pattern, PatternRecognizer

    pattern = Pattern("url with user:password", r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s/:@]+:[^\s/@]+@[^\s/?#]+[^\s]*", 0.9)
    return PatternRecognizer(supported_entity="URL_CREDENTIALS", patterns=[pattern], name="UrlCredentialsRecognizer")


def _offline_email_recognizer():
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    # presidio's EmailRecognizer validates domains with tldextract, whose default fetches the public suffix
    # list over the network; the bundled snapshot is enough and keeps runs offline.
    extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str):
            return extract(pattern_text).fqdn != ""

    return OfflineEmailRecognizer()


def _find_ner_model(name: str):
    """A loaded spaCy NER pipeline, or None (with the reason) when none is installed."""
    import spacy

    if name == "none":
        return None, "person/location names: skipped (pii.ner_model=none)"
    candidates = NER_CANDIDATES if name == "auto" else (name,)
    for candidate in candidates:
        if spacy.util.is_package(candidate) or (name != "auto" and Path(candidate).is_dir()):
            return spacy.load(candidate, disable=["parser", "lemmatizer"]), f"person/location names: spaCy {candidate}"
    if name != "auto":
        raise UnsupportedHere(f"pii.ner_model={name!r} is neither an installed spaCy package nor a pipeline "
                              "folder: pip install it (e.g. en_core_web_sm) or use ner_model=auto|none")
    return None, NER_MISSING


@lru_cache(maxsize=4)
def build_engines(entities: tuple[str, ...], ner_model: str) -> Engines:
    try:
        import spacy
        from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import SpacyNlpEngine
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer, IbanRecognizer, IpRecognizer, PhoneRecognizer, SpacyRecognizer,
        )
        from presidio_anonymizer import AnonymizerEngine
    except ImportError as exc:
        raise UnsupportedHere(
            f"the pii step needs presidio and spaCy ({exc.name} missing): pip install 'tuneforge[data]' "
            "or set data.prepare.pii.enabled=false"
        ) from None
    nlp, ner_note = _find_ner_model(ner_model) if NER_ENTITIES & set(entities) else (None, None)

    class LocalSpacyEngine(SpacyNlpEngine):
        """presidio's spaCy engine over an already-built pipeline (never downloads a model)."""

        def load(self) -> None:
            self.nlp = {"en": nlp if nlp is not None else spacy.blank("en")}

    engine = LocalSpacyEngine(models=[{"lang_code": "en", "model_name": "local"}])
    engine.load()
    registry = RecognizerRegistry(supported_languages=["en"])
    makers = {
        "EMAIL_ADDRESS": _offline_email_recognizer, "PHONE_NUMBER": PhoneRecognizer,
        "CREDIT_CARD": CreditCardRecognizer, "IBAN_CODE": IbanRecognizer, "IP_ADDRESS": IpRecognizer,
        "URL_CREDENTIALS": _url_credentials_recognizer,
    }
    active = [e for e in entities if e in makers]
    for name in active:
        registry.add_recognizer(makers[name]())
    if nlp is not None:
        ner = [e for e in entities if e in NER_ENTITIES]
        registry.add_recognizer(SpacyRecognizer(supported_entities=ner))
        active += ner
    analyzer = AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"])
    notes = [ner_note] if ner_note else []
    return Engines(analyzer, BatchAnalyzerEngine(analyzer), AnonymizerEngine(), active, notes)


def _gated_entities(text: str, engines: Engines) -> frozenset[str]:
    found = {e for e, _, _ in gate_matches(text, engines.pattern_entities)}
    found |= NER_ENTITIES & set(engines.entities)  # NER has no cheap gate
    return frozenset(found)


class Replacer:
    """Typed placeholders, consistent within one example: the same value twice gets the same number."""

    def __init__(self, mode: str, salt: str, found: Counter) -> None:
        self.mode, self.salt, self.found = mode, salt, found
        self.numbers: dict[tuple[str, str], int] = {}
        self.per_type: Counter = Counter()

    def reserve(self, entity: str, value: str) -> int:
        key = (entity, value)
        if key not in self.numbers:
            self.per_type[entity] += 1
            self.numbers[key] = self.per_type[entity]
        return self.numbers[key]

    def __call__(self, entity: str, value: str) -> str:
        self.found[entity] += 1
        tag = PLACEHOLDER.get(entity, entity)
        if self.mode == "hash":
            digest = hashlib.sha256(f"{self.salt}|{value}".encode()).hexdigest()[:10]
            return f"<{tag}_{digest}>"
        return f"<{tag}_{self.reserve(entity, value)}>"


def _reserve_in_reading_order(replacer: Replacer, text: str, results) -> None:
    """presidio replaces right to left; numbering first in reading order makes <EMAIL_1> the first email.
    Spans inside another span are skipped, as the anonymizer drops them too."""
    end = -1
    for r in sorted(results, key=lambda r: (r.start, -(r.end - r.start))):
        if r.end <= end:
            continue
        end = max(end, r.end)
        replacer.reserve(r.entity_type, text[r.start:r.end])


WINDOW = 200  # characters of context kept around each gate match (presidio's context words are ~5 tokens)


def windows(text: str, ents: frozenset[str]) -> list[tuple[int, int]]:
    """Merged [start, end) spans around the gate matches, widened to whitespace so no token is cut."""
    spans = sorted((max(0, a - WINDOW), min(len(text), b + WINDOW)) for _, a, b in gate_matches(text, ents))
    merged: list[list[int]] = []
    for start, end in spans:
        while start > 0 and not text[start - 1].isspace():
            start -= 1
        while end < len(text) and not text[end].isspace():
            end += 1
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


_DECIMAL = re.compile(r"\(?\s*[+-]?\d*\.\d+\s*\)?")


def _decimal_phone(result, text: str) -> bool:
    """presidio's phone recognizer accepts long decimals (0.3571428571 on alpaca_en_demo); a number with a
    single decimal point and nothing else is never a phone number."""
    if result.entity_type != "PHONE_NUMBER":
        return False
    start = result.start
    while start > 0 and (text[start - 1].isdigit() or text[start - 1] == "."):
        start -= 1  # presidio may match only the digits after the point: 1.<9360000000>
    return bool(_DECIMAL.fullmatch(text[start:result.end]))


def _analyze(pending: list[tuple[int, tuple, str, frozenset]], engines: Engines, cfg: PiiConfig):
    """Batch the gated texts through presidio, grouped by which recognizers they need.

    Without NER only windows around the gate matches are analyzed, not whole texts: spaCy tokenization
    and phonenumbers' matcher cost grows with text length, and a 2,000-character answer with one phone
    number then costs as much as a 400-character one. Offsets are shifted back to the full text."""
    ner = bool(NER_ENTITIES & set(engines.entities))
    pieces: list[tuple[int, int, str, frozenset]] = []  # (pending index, offset, text, entities)
    for n, (_, _, text, ents) in enumerate(pending):
        spans = [(0, len(text))] if ner else windows(text, ents)
        pieces += [(n, a, text[a:b], ents) for a, b in spans]
    results: dict[tuple[int, tuple], list] = {}
    groups: dict[frozenset, list[int]] = defaultdict(list)
    for p, piece in enumerate(pieces):
        groups[piece[3]].append(p)
    for ents, members in sorted(groups.items(), key=lambda kv: sorted(kv[0])):
        found = engines.batch.analyze_iterator(
            [pieces[p][2] for p in members], language="en", batch_size=cfg.batch_size,
            entities=sorted(ents), score_threshold=cfg.score_threshold,
        )
        for p, res in zip(members, found):
            n, offset, text, _ = pieces[p]
            res = [r for r in res if not _decimal_phone(r, text)]
            for r in res:
                r.start, r.end = r.start + offset, r.end + offset
            if res:
                results.setdefault((pending[n][0], pending[n][1]), []).extend(res)
    return results


def run_pii(items: list[Item], cfg: PiiConfig, ledger: Ledger, report: dict) -> list[Item]:
    if not cfg.enabled:
        return ledger.skip("pii", items, "disabled")
    engines = build_engines(tuple(cfg.entities), cfg.ner_model)
    ledger.begin("pii", items)
    fields = set(cfg.fields)
    pending = []
    for idx, item in enumerate(items):
        for slot in slots(item.record):
            if slot.role in fields and slot.text:
                ents = _gated_entities(slot.text, engines)
                if ents:
                    pending.append((idx, slot.key, slot.text, ents))
    results = _analyze(pending, engines, cfg)
    by_item: dict[int, list] = defaultdict(list)
    for (idx, key), res in results.items():
        by_item[idx].append((key, res))
    found: Counter = Counter()
    kept = [item for idx, item in enumerate(items) if _apply(item, by_item.get(idx), cfg, engines, ledger, found)]
    report.update({"found_by_type": dict(found), "texts_analyzed": len(pending), "entities": engines.entities,
                   "notes": engines.notes, "mode": cfg.mode})
    return ledger.end(kept)


def _apply(item: Item, hits, cfg: PiiConfig, engines: Engines, ledger: Ledger, found: Counter) -> bool:
    """Anonymize one example in place; False when it is dropped."""
    if not hits:
        return True
    from presidio_anonymizer.entities import OperatorConfig

    types = sorted({r.entity_type for _, res in hits for r in res})
    if cfg.mode == "drop_example":
        for _, res in hits:
            found.update(r.entity_type for r in res)
        ledger.remove(item, "pii", detail=", ".join(types), entities=types)
        return False
    replacer = Replacer(cfg.mode, cfg.hash_salt, found)
    operators = {
        e: OperatorConfig("custom", {"lambda": (lambda value, e=e: replacer(e, value))}) for e in types
    }
    original = clone(item.record)
    texts = {s.key: s.text for s in slots(item.record)}
    order = {key: n for n, key in enumerate(texts)}
    hits = sorted(hits, key=lambda h: order[h[0]])
    if cfg.mode == "mask":
        for key, res in hits:
            _reserve_in_reading_order(replacer, texts[key], res)
    for key, res in hits:
        text = texts[key]
        anonymized = engines.anonymizer.anonymize(text=text, analyzer_results=res, operators=operators)
        set_text(item.record, key, anonymized.text)
    ledger.modify(item, original, "pii_" + cfg.mode, detail=", ".join(types), entities=types)
    return True
