"""One run's settings: a frozen record that checks itself, built the same way by both shells.

The command line and the Python API both call `build_config` with the same option names
(`event_map`, `source_id`, `max_retry_time`…), so that a missing or bad setting is reported
with the same words whichever way the run was started. Building reads no rows and sends
nothing: it parses the mapping (and its TOML file), resolves the target from the options and
the INTEMPT_* environment, and finds the inputs (their columns, not their rows).

This module stays light (no pandas, pyarrow or httpx at import): the command line reads its
defaults from here before it knows whether it will need them.
"""

from __future__ import annotations

import math
import os
import stat
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from uploader.errors import ConfigError, ExposedKeyWarning
from uploader.options import Options, build_options
from uploader.target import DEFAULT_BASE_URL, Credentials, Target

DEFAULT_STATE = ".uploader/state.db"
# Requests in flight to start with: enough to hide latency, few enough not to flood an
# unpublished limit. Unless pinned with --concurrency, the limit then adapts (pacing.py).
DEFAULT_CONCURRENCY = 4
# The adaptive limit's ceiling: with 500-event requests and a 100 ms round trip, 64 in
# flight carry 320k events/s, more than one machine builds; beyond, an unpublished limit
# of the API is the risk.
AUTO_MAX = 64
# Ten minutes rides out a deploy or a short outage; longer and a dead API hangs the run.
DEFAULT_MAX_RETRY_TIME = 600.0

MAPPING_OPTIONS = (*(f.name for f in fields(Options)), "config")
OUTPUT_OPTIONS = ("rejects", "report")
TARGET_OPTIONS = ("org", "project", "source_id", "api_key", "api_key_file", "base_url", "sandbox")
SENDING_OPTIONS = ("state", "concurrency", "rate", "max_retry_time", "force", "restart", "wait")
VALIDATE_OPTIONS = (*MAPPING_OPTIONS, *OUTPUT_OPTIONS)
UPLOAD_OPTIONS = (*VALIDATE_OPTIONS, *TARGET_OPTIONS, *SENDING_OPTIONS)


@dataclass(frozen=True)
class Sending:
    """How hard an upload pushes, and where it records what was delivered."""

    state: str = DEFAULT_STATE
    concurrency: int | None = None  # pinned requests in flight; None: adaptive (pacing.py)
    rate: float | None = None  # requests per second, at most
    max_retry_time: float = DEFAULT_MAX_RETRY_TIME
    force: bool = False  # send inputs again even if they were delivered
    restart: bool = False  # start changed inputs over
    wait: bool = False  # wait for another run that holds the state file (lease.py)

    def __post_init__(self) -> None:
        concurrency = self.concurrency
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ConfigError(f"--concurrency must be at least 1, not {concurrency!r}")
        rate = self.rate
        if rate is not None and not (_is_number(rate) and math.isfinite(rate) and rate > 0):
            raise ConfigError(f"--rate must be above 0, not {rate!r}")
        value = self.max_retry_time
        if not (_is_number(value) and math.isfinite(value) and value > 0):
            raise ConfigError(f"max_retry_time must be a number of seconds above 0; got {value!r}")


@dataclass(frozen=True)
class Outputs:
    """What a run writes and keeps besides sending: every path is written whole or not at
    all (a temporary name, renamed at the end)."""

    rejects: str | None = None  # CSV of every rejected row
    report: str | None = None  # the figures as JSON
    bodies: str | None = None  # request bodies, one per line in send order (--dry-run)
    keep_rejects: int = 0  # rejected rows kept in the result (the notebook's `.rejects`)
    keep_bodies: int = 0  # request bodies kept in the result (`.sample_payload()`)


@dataclass(frozen=True)
class Destination:
    """Where events go: a target with its key, or a sandbox (`True`: one started for the
    run; a running `uploader.sandbox.Sandbox`: that one)."""

    target: Target | None = None
    credentials: Credentials | None = field(default=None, repr=False)
    sandbox: Any = None

    def __post_init__(self) -> None:
        if (self.target is None) == (self.sandbox is None):
            raise ConfigError("give a target (org, project, source id and key) or a sandbox")
        if self.target is not None and self.credentials is None:
            raise ConfigError("a target needs its API key")


@dataclass(frozen=True)
class RunConfig:
    """Everything one validation or upload needs. `inputs` are found (columns known) but
    not read; `destination` is None for a run that sends nothing."""

    inputs: tuple[Any, ...]  # uploader.inputs.Source
    mapping: Options
    outputs: Outputs = field(default_factory=Outputs)
    sending: Sending = field(default_factory=Sending)
    destination: Destination | None = None

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("no input given: name one or more CSV or Parquet files or folders")


def build_config(
    inputs: Any,
    *,
    command: str,
    env: Mapping[str, str] | None = None,
    bodies: str | None = None,
    keep_rejects: int = 0,
    keep_bodies: int = 0,
    **options: Any,
) -> RunConfig:
    """The config of a `command` ("validate" or "upload") from option names as keyword
    arguments (None means not given); `bodies`, `keep_rejects` and `keep_bodies` are what
    the shell wants kept (see Outputs). Cheap checks come first (option names, the mapping,
    the sending limits), then the inputs are found, then the target."""
    settings = build_settings(
        command=command,
        bodies=bodies,
        keep_rejects=keep_rejects,
        keep_bodies=keep_bodies,
        **options,
    )
    from uploader.inputs import resolve_inputs  # pyarrow: only once the options are sound

    mapping = settings.mapping
    sources = tuple(resolve_inputs(inputs, encoding=mapping.encoding, delimiter=mapping.delimiter))
    given = {k: v for k, v in options.items() if v is not None}
    destination = _destination(given, env) if command == "upload" else None
    return RunConfig(sources, settings.mapping, settings.outputs, settings.sending, destination)


@dataclass(frozen=True)
class Settings:
    """A config without its inputs: what an engine that reads them itself needs."""

    mapping: Options
    outputs: Outputs
    sending: Sending
    given: Mapping[str, Any]


def build_settings(
    *,
    command: str,
    bodies: str | None = None,
    keep_rejects: int = 0,
    keep_bodies: int = 0,
    known: Sequence[str] | None = None,
    **options: Any,
) -> Settings:
    """Option names, the mapping and the sending limits checked, as build_config does."""
    check_known(options, known or (VALIDATE_OPTIONS if command == "validate" else UPLOAD_OPTIONS),
                command)  # fmt: skip
    given = {k: v for k, v in options.items() if v is not None}
    mapping = _mapping(given)
    outputs = Outputs(
        rejects=_path(given.get("rejects")),
        report=_path(given.get("report")),
        bodies=bodies,
        keep_rejects=keep_rejects,
        keep_bodies=keep_bodies,
    )
    sending = Sending(
        state=_path(given.get("state")) or DEFAULT_STATE,
        concurrency=given.get("concurrency"),
        rate=given.get("rate"),
        max_retry_time=given.get("max_retry_time", DEFAULT_MAX_RETRY_TIME),
        force=bool(given.get("force")),
        restart=bool(given.get("restart")),
        wait=bool(given.get("wait")),
    )
    return Settings(mapping, outputs, sending, given)


def build_destination(settings: Settings, env: Mapping[str, str] | None = None) -> Destination:
    return _destination(settings.given, env)


def check_known(given: Mapping[str, Any], known: Sequence[str], command: str) -> None:
    unknown = sorted(set(given) - set(known))
    if not unknown:
        return
    hint = ""
    if command == "validate" and all(name in UPLOAD_OPTIONS for name in unknown):
        hint = " (upload options: validate sends nothing)"
    raise ConfigError(
        f"unknown option {', '.join(unknown)}{hint}; known options: {', '.join(sorted(known))}"
    )


def _mapping(given: Mapping[str, Any]) -> Options:
    config = given.get("config")
    names = {f.name for f in fields(Options)}
    return build_options(
        os.fspath(config) if config is not None else None,
        **{k: v for k, v in given.items() if k in names},
    )


def _destination(given: Mapping[str, Any], env: Mapping[str, str] | None) -> Destination:
    sandbox = given.get("sandbox")
    if sandbox is None or sandbox is False:
        api_key = given.get("api_key")
        if api_key is not None and not isinstance(api_key, str):
            raise ConfigError("api_key must be a string, the key PREFIX.SECRET")
        target, credentials = resolve_target(
            org=given.get("org"),
            project=given.get("project"),
            source_id=given.get("source_id"),
            api_key=api_key,
            api_key_file=given.get("api_key_file"),
            base_url=given.get("base_url"),
            env=env,
        )
        return Destination(target, credentials)
    clash = [k for k in TARGET_OPTIONS if k != "sandbox" and given.get(k) is not None]
    if clash:
        raise ConfigError(f"sandbox= uploads to the local sandbox; leave out {', '.join(clash)}")
    if sandbox is not True:
        from uploader.sandbox import Sandbox

        if not isinstance(sandbox, Sandbox):
            raise ConfigError(f"sandbox= takes True or a running Sandbox; got {sandbox!r}")
        if not sandbox.running:
            raise ConfigError(
                "sandbox=: this Sandbox is not running; use `with Sandbox() as sb:` or sb.start()"
            )
    return Destination(sandbox=sandbox)


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


def _read_key_file(path: str) -> str:
    try:
        mode = os.stat(path).st_mode
        with open(path, encoding="utf-8") as fh:
            key = fh.read()
    except OSError as exc:
        raise ConfigError(f"--api-key-file {path}: cannot read ({exc.strerror})") from exc
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.warn(
            f"--api-key-file {path} can be read by other users (mode {stat.filemode(mode)}); "
            f"keep it to yourself: chmod 600 {path}",
            ExposedKeyWarning,
            stacklevel=2,
        )
    return key


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _path(value: Any) -> str | None:
    return None if value is None else os.fspath(value)
