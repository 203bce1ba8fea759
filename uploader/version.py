"""The package version, apart from `uploader/__init__` so that any module can read it
without loading the Python API (and with it pandas and pyarrow)."""

__version__ = "0.1.0"
