"""Load product-interaction history into Intempt's recommendation engine.

From Python (a notebook or a script): `validate(source, **options)` and
`upload(source, **options)`, and their `async` variants; see uploader/api.py.

Importing the package is cheap: the API (and with it pandas, pyarrow and httpx) loads on
first use of one of the names below, so that `uploader --help` starts at once.
"""

from __future__ import annotations

from typing import Any

from uploader.version import __version__

_FROM_API = ("upload", "upload_async", "validate", "validate_async")
_FROM_RESULTS = ("UploadResult", "ValidationResult")

__all__ = ["__version__", *_FROM_API, *_FROM_RESULTS]


def __getattr__(name: str) -> Any:
    if name in _FROM_API:
        from uploader import api

        return getattr(api, name)
    if name in _FROM_RESULTS:
        from uploader import results

        return getattr(results, name)
    raise AttributeError(f"module 'uploader' has no attribute {name!r}")
