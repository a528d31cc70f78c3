"""The data workbench behind `tuneforge data prepare`: normalize, filter, anonymize PII, deduplicate, split
and check leakage, with every removed or changed example kept in quarantine.jsonl."""

from tuneforge.data.prepare.config import PrepareConfig
from tuneforge.data.prepare.pipeline import PrepareResult, prepare, prepare_recipe

__all__ = ["PrepareConfig", "PrepareResult", "prepare", "prepare_recipe"]
