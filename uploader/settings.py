"""Where an upload goes and how hard it pushes, from options and the INTEMPT_* environment.

Both shells (the command line and the Python API) build their target here, so that a
missing setting is reported with the same words whichever way the upload was started.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from uploader.errors import ConfigError
from uploader.target import DEFAULT_BASE_URL, Credentials, Target


def resolve_target(
    *,
    org: str | None = None,
    project: str | None = None,
    source_id: str | None = None,
    api_key: str | None = None,
    api_key_file: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[Target, Credentials]:
    """The target and key from what was given, falling back on INTEMPT_ORG, INTEMPT_PROJECT,
    INTEMPT_SOURCE_ID, INTEMPT_API_KEY and INTEMPT_BASE_URL. Every missing setting is named
    at once, so that a first run does not fail four times."""
    env = os.environ if env is None else env
    if api_key is not None and api_key_file is not None:
        raise ConfigError("give the API key or a file holding it (--api-key-file), not both")
    values = {
        "org": (org or env.get("INTEMPT_ORG"), "--org ORG or INTEMPT_ORG"),
        "project": (project or env.get("INTEMPT_PROJECT"), "--project NAME or INTEMPT_PROJECT"),
        "source id": (
            source_id or env.get("INTEMPT_SOURCE_ID"),
            "--source ID or INTEMPT_SOURCE_ID",
        ),
    }
    key = api_key
    if api_key_file is not None:
        key = _read_key_file(os.fspath(api_key_file))
    elif key is None:
        key = env.get("INTEMPT_API_KEY")
    values["API key"] = (key, "INTEMPT_API_KEY or --api-key-file FILE")
    missing = [f"{name} (give {how})" for name, (value, how) in values.items() if not value]
    if missing:
        raise ConfigError(
            "missing " + "; ".join(missing) + ". Or use --sandbox to rehearse against the "
            "built-in local API"
        )
    assert key is not None
    target = Target(
        base_url or env.get("INTEMPT_BASE_URL") or DEFAULT_BASE_URL,
        str(values["org"][0]),
        str(values["project"][0]),
        str(values["source id"][0]).strip(),
    )
    return target, Credentials.from_key(key)


def check_sending(concurrency: int, rate: float | None) -> None:
    """Sending limits that make sense; the retry budget is checked by RetryPolicy."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, not {concurrency}")
    if rate is not None and not (isinstance(rate, int | float) and rate > 0):
        raise ConfigError(f"--rate must be above 0, not {rate}")


def _read_key_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"--api-key-file {path}: cannot read ({exc.strerror})") from exc
