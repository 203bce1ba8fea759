"""The same upload as a Spark job, for inputs that live where the cluster is.

    import uploader.spark
    result = uploader.spark.upload(df, event="Product ordered", state="s3://bucket/state",
                                   org="acme", project="shop", source_id="7301…")

`df` is a Spark DataFrame; the options are `uploader.upload`'s (`concurrency` is per task,
`rate` for the whole job, `state` a folder every executor can reach, `rejects` a folder the
rejected rows are written to by Spark). Every partition is mapped, validated, identified
and sent by the same code as a local upload, on the executors; exact duplicates are found
across partitions by the engine's shuffle; what the API acknowledged is recorded in the
state folder as it happens, so a rerun or a retried task sends none of it again. The design
is in docs/spark.md. Needs PySpark: `pip install 'uploader[spark]'`.
"""

from __future__ import annotations

from typing import Any

from uploader.errors import ConfigError

__all__ = ["upload", "validate"]


def validate(df: Any, **options: Any) -> Any:
    return _job().validate(df, **options)


def upload(df: Any, **options: Any) -> Any:
    return _job().upload(df, **options)


def _job() -> Any:
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "the Spark engine needs PySpark: pip install 'uploader[spark]' (or run on a "
            "cluster that has it)"
        ) from exc
    from uploader.spark import job

    return job
