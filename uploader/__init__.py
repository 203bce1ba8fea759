"""Load product-interaction history into Intempt's recommendation engine.

From Python (a notebook or a script): `validate(source, **options)` and
`upload(source, **options)`, and their `async` variants; see uploader/api.py.
"""

from __future__ import annotations

__version__ = "0.1.0"

# Imported eagerly, after __version__ (which the modules below read): importing the API
# loads the `uploader.validate` stage module first, so the function bound here is what
# `uploader.validate` names from then on. (A lazy __getattr__ would lose that race.)
from uploader.api import upload, upload_async, validate, validate_async
from uploader.results import UploadResult, ValidationResult

__all__ = [
    "UploadResult",
    "ValidationResult",
    "__version__",
    "upload",
    "upload_async",
    "validate",
    "validate_async",
]
