"""The command line's way into Spark: a session, and the inputs read with Spark's readers.

CSV is read as text (every column a string, the header line for names), as the local tool
reads it, so that the mapping decides what each value means; Parquet as it is typed. Hive
folders (key=value) become columns by Spark's own partition discovery; object storage goes
through the cluster's filesystems (s3a:// on EMR and most clusters, gs:// on Dataproc).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from uploader.errors import ConfigError, InputError
from uploader.inputs import PARQUET_SUFFIXES

APP_NAME = "uploader"
# The driver's heap in local mode, unless the user gave one (see session()).
LOCAL_DRIVER_MEMORY = "2g"


def session(master: str | None) -> Any:
    """The active Spark session, or a new one (local[*] unless a master is given)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # PySpark 4 warns that it does not fully support pandas 3: the engine hands it Arrow.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ConfigError(
            "--engine spark needs PySpark: pip install 'uploader[spark]' (and Java 17)"
        ) from exc
    builder = SparkSession.builder.appName(APP_NAME).config("spark.ui.showConsoleProgress", "false")
    if master or SparkSession.getActiveSession() is None:
        master = master or "local[*]"
        builder = builder.master(master)
        if master.startswith("local") and not _driver_memory_given():
            # Local mode runs every task in the driver's JVM, whose heap defaults to 1 GB:
            # too little for the shuffle of a few million rows (OutOfMemoryError at 10M).
            builder = builder.config("spark.driver.memory", LOCAL_DRIVER_MEMORY)
    return builder.getOrCreate()


def _driver_memory_given() -> bool:
    """Whether the user chose the driver's memory where spark-submit looks for it."""
    submit_args = os.environ.get("PYSPARK_SUBMIT_ARGS", "")
    return "SPARK_DRIVER_MEMORY" in os.environ or any(
        flag in submit_args for flag in ("--driver-memory", "spark.driver.memory")
    )


def read_inputs(spark: Any, paths: Sequence[str], *, delimiter: str | None = None,
                encoding: str = "utf-8") -> Any:  # fmt: skip
    """One DataFrame of every input: Parquet if every path says so, else CSV as text."""
    parquet = all(p.lower().rstrip("/").endswith(PARQUET_SUFFIXES) for p in paths)
    try:
        if parquet:
            return spark.read.parquet(*paths)
        reader = spark.read.option("header", True).option("inferSchema", False)
        reader = reader.option("multiLine", True).option("escape", '"')
        reader = reader.option("encoding", encoding).option("sep", delimiter or ",")
        return reader.csv(list(paths))
    except Exception as exc:  # Spark's AnalysisException and friends: a path it cannot read
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{', '.join(paths)}: Spark cannot read it ({first})") from exc
