"""`data.prepare` recipe section: which data-workbench steps run and how (tuneforge.data.prepare). Strict like every section."""

from __future__ import annotations

from typing import Literal, Union

from pydantic import Field, model_validator

from tuneforge.config.base import Section

TextField = Literal["system", "prompt", "answer", "text"]
ALL_FIELDS: list[str] = ["system", "prompt", "answer", "text"]
PiiEntity = Literal[
    "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS",
    "URL_CREDENTIALS", "PERSON", "LOCATION",
]


class NormalizeConfig(Section):
    """Unicode repair (ftfy), normalization form, whitespace and control characters."""

    enabled: bool = True
    fields: list[TextField] = Field(default_factory=lambda: list(ALL_FIELDS))
    fix_unicode: bool = Field(True, description="repair mojibake, stray HTML entities, control chars (ftfy)")
    unicode_form: Literal["NFKC", "NFC", "none"] = "NFKC"
    strip: bool = Field(True, description="strip leading/trailing whitespace and trailing spaces per line")
    collapse_spaces: bool = Field(False, description="collapse runs of spaces (off: keeps code indentation)")
    max_blank_lines: int = Field(2, ge=0, description="collapse longer runs of newlines")


class FilterConfig(Section):
    """Drop examples that cannot teach anything useful."""

    enabled: bool = True
    empty_answer: bool = True
    min_tokens: int | None = Field(1, ge=0, description="whole-example token count lower bound")
    max_tokens: int | None = Field(None, ge=1, description="whole-example token count upper bound")
    repeat_prompt: bool = Field(True, description="drop answers that just repeat the prompt")
    repeat_similarity: float = Field(0.95, gt=0, le=1)
    languages: list[str] | None = Field(None, description="keep only these langdetect codes, e.g. [en]")
    language_min_chars: int = Field(20, ge=1, description="shorter texts are not language-checked")


class PiiConfig(Section):
    """Anonymize personal data with presidio (pattern recognizers; NER names when a spaCy model exists)."""

    enabled: bool = True
    mode: Literal["mask", "hash", "drop_example"] = "mask"
    entities: list[PiiEntity] = Field(
        default_factory=lambda: [
            "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS",
            "URL_CREDENTIALS", "PERSON", "LOCATION",
        ]
    )
    fields: list[TextField] = Field(default_factory=lambda: list(ALL_FIELDS))
    score_threshold: float = Field(0.4, ge=0, le=1)
    ner_model: str = Field(
        "auto", description="spaCy NER for names: auto (en_core_web_lg/md/sm if installed), none, a package or a folder"
    )
    hash_salt: str = Field("tuneforge", description="salt for mode=hash")
    batch_size: int = Field(64, ge=1)


class DedupConfig(Section):
    """Exact (normalized hash) and near-duplicate (MinHash LSH) removal."""

    enabled: bool = True
    exact: bool = True
    near: bool = True
    threshold: float = Field(0.7, gt=0, le=1, description="Jaccard similarity (word shingles) for near duplicates")
    num_perm: int = Field(128, ge=16)
    shingle_size: int = Field(3, ge=1, description="words per shingle")
    on: Literal["all", "prompt", "answer"] = Field("all", description="which text is compared")
    keep: Literal["first", "longest"] = "first"


class SplitConfig(Section):
    """Seeded train/val/test split; near-duplicate clusters never straddle two splits."""

    enabled: bool = True
    val: Union[int, float, None] = Field(None, ge=0, description="ratio (<1) or count; default data.val_ratio")
    test: Union[int, float, None] = Field(None, ge=0, description="ratio (<1) or count; default data.test_ratio")
    stratify: Literal["auto", "none", "label"] = Field("auto", description="auto: by label for labelled data")
    keep_source_splits: bool = Field(True, description="sources with split=train/val/test keep it")

    @model_validator(mode="after")
    def _ratios(self) -> "SplitConfig":
        for name in ("val", "test"):
            value = getattr(self, name)
            if isinstance(value, float) and value >= 1:
                raise ValueError(f"split.{name}: a ratio must be < 1 (or give an integer count), got {value}")
        return self


class LeakageConfig(Section):
    """Exact and near-duplicate overlap between splits and against an eval file."""

    enabled: bool = True
    eval_data: str | None = Field(None, description="extra eval file to check (default: recipe eval.data)")
    threshold: float | None = Field(None, gt=0, le=1, description="default: dedup.threshold")
    max_pairs: int = Field(50, ge=0, description="pairs listed in the report per split pair")


class ReportConfig(Section):
    html: bool = True
    plots: bool = True
    max_clusters: int = Field(10, ge=0)
    max_text_chars: int = Field(300, ge=20)


class PrepareConfig(Section):
    """The data workbench: normalize -> filter -> anonymize -> deduplicate -> split -> leakage check."""

    normalize: NormalizeConfig = Field(default_factory=NormalizeConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    leakage: LeakageConfig = Field(default_factory=LeakageConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
