"""Load product-interaction history into Intempt's recommendation engine."""

__version__ = "0.1.0"
