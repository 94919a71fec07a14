"""Progress bars that show where a person is watching and stay out of logs and CI output."""
from __future__ import annotations

import importlib.util
import sys
from typing import Any, Optional


def progress_bar(progress: Optional[bool], **kwargs: Any):
    """A tqdm bar, or None.

    ``progress=None`` means: on in a terminal or in a notebook that can show widgets (ipywidgets
    installed), off otherwise -- a text bar stored in a notebook or a CI log is only noise.
    """
    in_notebook = "ipykernel" in sys.modules
    widgets = in_notebook and importlib.util.find_spec("ipywidgets") is not None
    if progress is None:
        progress = sys.stderr.isatty() or widgets
    if not progress:
        return None
    if widgets:
        from tqdm.notebook import tqdm
    else:
        from tqdm import tqdm
    return tqdm(**kwargs)
