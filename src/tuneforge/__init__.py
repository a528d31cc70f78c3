"""tuneforge: fine-tune pretrained language models across their whole lifecycle.

The CLI (`tuneforge <verb>`) is a thin layer over this library; a notebook calls the same functions:

    from tuneforge.config import load_recipe
    from tuneforge.models import load_model
    from tuneforge.data import read_source
"""

__version__ = "0.1.0"
