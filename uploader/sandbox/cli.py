"""`uploader sandbox`: run the sandbox in the foreground until Ctrl-C. A shell, no logic."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TypeVar

from uploader.errors import ConfigError
from uploader.sandbox import DEFAULT_API_KEY, DEFAULT_ORG, DEFAULT_PROJECT, DEFAULT_SOURCE, Sandbox
from uploader.sandbox.faults import check_positive, check_probability
from uploader.sandbox.server import LOG

NumberT = TypeVar("NumberT", int, float)
# How often the waiting main thread wakes to see a Ctrl-C (see run()).
WAIT_SLICE_S = 0.2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Numbers stay strings here and are checked in run(): a bad value is then one line on
    # stderr naming the flag, rather than argparse's usage block.
    where = parser.add_argument_group("where it listens and what it expects")
    where.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    where.add_argument("--port", default="8787", help="port, 0 for any free one (default: 8787)")
    where.add_argument(
        "--db", metavar="FILE", help="keep events in this SQLite file (default: in memory)"
    )
    where.add_argument("--org", default=DEFAULT_ORG, help="org name (default: %(default)s)")
    where.add_argument("--project", default=DEFAULT_PROJECT, help="project (default: %(default)s)")
    where.add_argument("--source", default=DEFAULT_SOURCE, help="source id (default: %(default)s)")
    where.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="expect the <prefix>.<secret> key in FILE (default: a throwaway sandbox key)",
    )
    where.add_argument(
        "--null", action="store_true", help="count requests, store nothing (benchmarks)"
    )

    faults = parser.add_argument_group("limits and faults to rehearse against")
    faults.add_argument("--max-body-bytes", metavar="N", help="answer 413 to bodies over N bytes")
    faults.add_argument("--rate-limit", metavar="R", help="answer 429 past R requests per second")
    faults.add_argument("--error-rate", metavar="P", help="answer 503 to this share of requests")
    faults.add_argument(
        "--drop-rate", metavar="P", help="store, then hang up unanswered, on this share"
    )
    faults.add_argument("--latency-ms", metavar="MS", help="add MS milliseconds to every request")
    faults.add_argument(
        "--transient-400-rate",
        metavar="P",
        help='answer the transient 400 "Can\'t create a collection" to this share',
    )
    faults.add_argument("--seed", metavar="N", help="make the faults repeatable")


def run(args: argparse.Namespace) -> int:
    try:
        sandbox = _sandbox(args)
        sandbox.start()
    except (ConfigError, OSError, sqlite3.Error) as exc:
        print(f"uploader sandbox: {_explain(exc, args)}", file=sys.stderr)
        return 2

    if not _loopback(args.host):
        print(
            f"uploader sandbox: warning: listening on {args.host}, so other machines can reach "
            "it; it stores what it is sent and accepts its key from anyone who reads this "
            "banner. Leave out --host to listen on 127.0.0.1 only",
            file=sys.stderr,
        )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    # Refused requests are worth seeing while rehearsing; successes would flood the terminal.
    level = LOG.level
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    stopped = threading.Event()
    restore = _on_sigterm(stopped.set)
    try:
        print(_banner(sandbox, args), flush=True)
        # In slices: a Ctrl-C the kernel hands to one of the server's threads only sets a
        # flag that this thread must wake up to see (an endless wait would never end).
        while not stopped.wait(WAIT_SLICE_S):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        restore()
        sandbox.stop()
        LOG.removeHandler(handler)
        LOG.setLevel(level)
    print("sandbox stopped", flush=True)
    return 0


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _sandbox(args: argparse.Namespace) -> Sandbox:
    """The Sandbox the options describe; every bad value is a ConfigError naming its flag."""
    rates = {
        name: check_probability(
            _number(getattr(args, name), _flag(name), float) or 0.0, _flag(name)
        )
        for name in ("error_rate", "drop_rate", "transient_400_rate")
    }
    max_body_bytes = _number(args.max_body_bytes, "--max-body-bytes", int)
    if max_body_bytes is not None:
        check_positive(max_body_bytes, "--max-body-bytes", integer=True)
    rate_limit = _number(args.rate_limit, "--rate-limit", float)
    if rate_limit is not None:
        check_positive(rate_limit, "--rate-limit")
    latency_ms = _number(args.latency_ms, "--latency-ms", int) or 0
    check_positive(latency_ms, "--latency-ms", zero=True, integer=True)
    port = _number(args.port, "--port", int)
    if port is None or not 0 <= port <= 65535:
        raise ConfigError(f"--port must be from 0 to 65535; got {args.port!r}")
    if args.null and args.db:
        raise ConfigError("--db and --null exclude each other: --null stores nothing")
    return Sandbox(
        org=args.org,
        project=args.project,
        source=args.source,
        api_key=_read_key(args.api_key_file) if args.api_key_file else DEFAULT_API_KEY,
        host=args.host,
        port=port,
        db=args.db,
        null=args.null,
        max_body_bytes=max_body_bytes,
        rate_limit=rate_limit,
        latency_ms=latency_ms,
        seed=_number(args.seed, "--seed", int),
        **rates,
    )


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _number(text: str | None, flag: str, kind: Callable[[str], NumberT]) -> NumberT | None:
    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise ConfigError(f"{flag} must be {noun}; got {text!r}") from None


def _read_key(path: str) -> str:
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"--api-key-file {path}: cannot read it ({exc})") from None
    prefix, _, secret = key.partition(".")
    if not prefix or not secret or any(c.isspace() for c in key):
        # Never quote the file's content: it is meant to be a secret.
        raise ConfigError(
            f'--api-key-file {path}: expected one key of the form "<prefix>.<secret>"'
        )
    return key


def _explain(exc: Exception, args: argparse.Namespace) -> str:
    if isinstance(exc, sqlite3.Error):
        return f"--db {args.db}: cannot use it as a SQLite database ({exc})"
    if isinstance(exc, OSError):
        return f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
    return str(exc)


def _banner(sandbox: Sandbox, args: argparse.Namespace) -> str:
    key = f"key from {args.api_key_file}" if args.api_key_file else sandbox.api_key
    storage = "none (--null)" if sandbox.null else (sandbox.db or "in memory")
    faults = [
        f"{name.replace('_', '-')}={value}"
        for name, value in vars(sandbox.faults).items()
        if value is not None and (value or name == "seed")
    ]
    lines = [
        f"Intempt sandbox listening on {sandbox.base_url}",
        f"  track URL  {sandbox.track_url}",
        f"  org        {sandbox.org}",
        f"  project    {sandbox.project}",
        f"  source     {sandbox.source}",
        f"  api key    {key}",
        f"  storage    {storage}",
        f"  faults     {', '.join(faults) or 'none'}",
        f"  stats      {sandbox.base_url}/_sandbox/stats",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def _on_sigterm(stop: Callable[[], None]) -> Callable[[], None]:
    """Treat SIGTERM like Ctrl-C, so a service manager's stop also closes the database."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handle(signum: int, frame: FrameType | None) -> None:
        stop()

    previous = signal.signal(signal.SIGTERM, handle)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore
