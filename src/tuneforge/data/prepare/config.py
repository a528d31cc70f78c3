"""The `data.prepare` recipe section. The classes live in tuneforge.config.prepare so that
tuneforge.config.sections can use them without importing the tuneforge.data package (a cycle)."""

from tuneforge.config.prepare import (  # noqa: F401
    ALL_FIELDS, DedupConfig, FilterConfig, LeakageConfig, NormalizeConfig, PiiConfig, PrepareConfig,
    ReportConfig, SplitConfig, TextField,
)
