"""Command-line shell: parse options, call the core, show the result. No business logic.

Exit codes: 0 all rows valid (and, for upload, delivered); 1 finished with rejected rows;
2 bad options or unreadable input, nothing sent; 3 aborted, resumable; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from uploader import workers
from uploader.config import (
    AUTO_MAX,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_RETRY_TIME,
    DEFAULT_STATE,
    MAPPING_OPTIONS,
    build_config,
)
from uploader.errors import ConfigError, ExposedKeyWarning, UploaderError
from uploader.options import DEFAULT_BATCH_SIZE, DEFAULT_MAX_REQUEST_BYTES
from uploader.target import DEFAULT_BASE_URL
from uploader.version import __version__

# The shell imports the core (pandas, pyarrow, httpx) only once a command runs, so that
# `uploader --help` and `uploader --version` answer at once.

EXIT_OK, EXIT_REJECTS, EXIT_USAGE, EXIT_ABORTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

EPILOG = """\
exit codes: 0 every row valid; 1 some rows rejected; 2 bad options or input (nothing sent).
"""
UPLOAD_EPILOG = """\
target settings: --org, --project, --source (or INTEMPT_ORG, INTEMPT_PROJECT,
INTEMPT_SOURCE_ID); the API key from INTEMPT_API_KEY or --api-key-file (there is no flag
for the key itself: it would show in the process list); --base-url or INTEMPT_BASE_URL.

exit codes: 0 every valid row delivered and no rejects (or no more than --max-rejects);
1 finished with rejected rows; 2 bad options or input, nothing sent; 3 aborted (auth
failure, retries exhausted, API unreachable): run the same command to resume;
130 interrupted (Ctrl-C): run the same command to resume.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uploader",
        description="Load product-interaction history into Intempt's recommendation engine.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"uploader {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    validate = commands.add_parser(
        "validate",
        help="read, map and validate the input; print what would be sent and rejected",
        description="Read, map and validate the input, and print what would be sent and "
        "what would be rejected and why. Nothing is sent.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_input_arguments(validate)
    validate.set_defaults(run=run_validate)

    upload = commands.add_parser(
        "upload",
        help="upload the input to Intempt: concurrent, retrying, resumable",
        description="Upload the input to Intempt's track API. Delivered rows are recorded in "
        "a state file after every acknowledged request: run the same command again to resume, "
        "and nothing delivered is sent twice.",
        epilog=UPLOAD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_input_arguments(upload)
    _add_upload_arguments(upload)
    upload.set_defaults(run=run_upload)

    init = commands.add_parser(
        "init",
        help="write a commented config (TOML) for an input to standard output",
        description="Look at an input's columns and first rows and write a commented TOML "
        "config to standard output, ready for --config: the mapping found by names, what the "
        "values suggest where names say nothing, and every other key with its default. "
        "Flags given here are written as given.",
        epilog="exit codes: 0 the config is complete; 1 it is written, but something is left "
        "to choose (marked CHOOSE in it); 2 bad options or input.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_input_arguments(init)
    init.set_defaults(run=run_init)

    status = commands.add_parser(
        "status",
        help="list the runs and files of a state file",
        description="List the runs and files recorded in a state file, with what was "
        "delivered, rejected and what remains.",
    )
    status.add_argument("--state", metavar="FILE", default=DEFAULT_STATE, help="state file")
    status.set_defaults(run=run_status)

    from uploader.sandbox import cli as sandbox_cli

    sandbox = commands.add_parser(
        "sandbox",
        help="run a local Intempt-compatible track API to rehearse against",
        description="Run a local Intempt-compatible track API to rehearse against.",
    )
    sandbox_cli.add_arguments(sandbox)
    sandbox.set_defaults(run=sandbox_cli.run)
    return parser


def _add_input_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="CSV (.csv, .csv.gz, .csv.bz2, .csv.zst) or Parquet files, folders or globs",
    )
    mapping = parser.add_argument_group("mapping (also as keys of a TOML file given to --config)")
    mapping.add_argument("--config", metavar="FILE", help="TOML file with any of these options")
    mapping.add_argument(
        "--event",
        metavar="NAME",
        help="every row is this event: 'Product viewed', 'Added to cart', "
        "'Removed from cart' or 'Product ordered'",
    )
    mapping.add_argument("--event-column", metavar="COL", help="column that holds the event")
    mapping.add_argument(
        "--event-map",
        action="append",
        metavar="VALUE=NAME",
        help="raw event value to event name (repeatable); NAME 'ignore' leaves such rows out. "
        "view, cart, addtocart, remove_from_cart, purchase, transaction… are known already",
    )
    mapping.add_argument(
        "--map",
        dest="mapping",
        action="append",
        metavar="FIELD=COLUMN",
        help="fill FIELD from COLUMN (repeatable): productId, userId, profileId, "
        "anotherUserId, accountId, sessionId, eventId, timestamp, data.KEY[:TYPE] with TYPE "
        "string|number|integer|boolean, e.g. --map productId=StockCode --map data.quantity=Qty",
    )
    mapping.add_argument(
        "--timestamp-unit",
        choices=("s", "ms", "us", "ns"),
        help="unit of numeric timestamps (default: inferred from magnitude, and reported)",
    )
    mapping.add_argument(
        "--timestamp-format",
        metavar="FMT",
        help="strptime layout of text timestamps that are not ISO 8601, e.g. '%%m/%%d/%%Y %%H:%%M'",
    )
    mapping.add_argument(
        "--timezone", metavar="TZ", help="zone of timestamps written without one (default UTC)"
    )
    mapping.add_argument(
        "--encoding",
        metavar="ENC",
        help="encoding of CSV files (default utf-8; a byte order mark wins), e.g. cp1252, "
        "latin-1, utf-16",
    )
    mapping.add_argument(
        "--delimiter",
        metavar="CHAR",
        help="delimiter of CSV files: one character, or 'tab' (default: found in each "
        "file's header line among , ; tab |, and reported)",
    )
    mapping.add_argument(
        "--decimal",
        metavar="MARK",
        help="decimal mark of numbers written as text: '.' (default) or ',' for 94,86 as "
        "European Excel writes",
    )
    mapping.add_argument(
        "--no-timestamp",
        action="store_true",
        default=None,
        help="send without timestamps: the API then stamps the upload time (not for history)",
    )
    mapping.add_argument(
        "--duplicates",
        choices=("collapse", "keep", "quantity"),
        help="what repeated identical rows become: one event (collapse, the default but for "
        "'Product ordered', which must choose), one each (keep, ids numbered by occurrence) "
        "or one whose data.quantity adds them up (quantity)",
    )
    mapping.add_argument(
        "--keep-duplicates",
        action="store_true",
        default=None,
        help="the same as --duplicates keep",
    )
    mapping.add_argument(
        "--catalog",
        metavar="FILE[:COLUMN]",
        help="a catalogue export (CSV or Parquet, a path or URI): every productId must be in "
        "it; COLUMN is found like productId when not given",
    )
    mapping.add_argument(
        "--catalog-mode",
        choices=("reject", "warn"),
        help="reject rows of products not in --catalog (default), or only count them",
    )
    packing = parser.add_argument_group("requests and output")
    packing.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help=f"events per request (default {DEFAULT_BATCH_SIZE})",
    )
    packing.add_argument(
        "--max-request-bytes",
        type=int,
        metavar="N",
        help=f"largest request body in bytes (default {DEFAULT_MAX_REQUEST_BYTES})",
    )
    packing.add_argument("--rejects", metavar="FILE", help="write every rejected row to this CSV")
    packing.add_argument("--report", metavar="FILE", help="write the figures as JSON")
    packing.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _add_upload_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("target")
    target.add_argument("--org", metavar="ORG", help="organisation name (env INTEMPT_ORG)")
    target.add_argument("--project", metavar="PROJECT", help="project name (env INTEMPT_PROJECT)")
    target.add_argument(
        "--source", metavar="ID", help="source id, 19 digits (env INTEMPT_SOURCE_ID)"
    )
    target.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="file holding the API key PREFIX.SECRET (default: env INTEMPT_API_KEY)",
    )
    target.add_argument(
        "--base-url",
        metavar="URL",
        help=f"API address (env INTEMPT_BASE_URL, default {DEFAULT_BASE_URL})",
    )
    target.add_argument(
        "--sandbox",
        action="store_true",
        help="start the built-in local sandbox API and upload to it (no credentials needed)",
    )
    sending = parser.add_argument_group("sending and resuming")
    sending.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help=f"pin the requests in flight to N (default: adaptive, from {DEFAULT_CONCURRENCY} "
        f"up to {AUTO_MAX}, growing while throughput grows)",
    )
    sending.add_argument("--rate", type=float, metavar="R", help="at most R requests per second")
    sending.add_argument(
        "--max-retry-time",
        type=float,
        metavar="S",
        default=DEFAULT_MAX_RETRY_TIME,
        help="give up on a request after retrying it this many seconds; the run then stops "
        f"as aborted and can be resumed (default {DEFAULT_MAX_RETRY_TIME:.0f})",
    )
    sending.add_argument(
        "--state",
        metavar="FILE",
        default=DEFAULT_STATE,
        help=f"state file recording what was delivered (default {DEFAULT_STATE})",
    )
    sending.add_argument(
        "--force",
        action="store_true",
        help="send files again even if they were delivered before (sends events twice)",
    )
    sending.add_argument(
        "--restart",
        action="store_true",
        help="start files that changed since a partial upload over from their first row",
    )
    sending.add_argument(
        "--wait",
        action="store_true",
        help="if another run is using the state file, wait for it to end (default: exit 2)",
    )
    sending.add_argument(
        "--max-rejects",
        type=int,
        metavar="N",
        default=0,
        help="exit 0 even with up to N rejected rows (default 0)",
    )
    sending.add_argument(
        "--dry-run",
        action="store_true",
        help="do everything but send: write the request bodies to OUT/requests.jsonl",
    )
    sending.add_argument(
        "--out", metavar="DIR", help="with --dry-run: folder for requests.jsonl and the rest"
    )


def _mapping(args: argparse.Namespace) -> dict[str, Any]:
    # The flags' destinations are the option names (--map -> mapping, --config -> config).
    return {name: getattr(args, name) for name in MAPPING_OPTIONS}


def run_validate(args: argparse.Namespace) -> int:
    from uploader import core
    from uploader.console import ReadDisplay, format_result

    config = build_config(
        args.paths, command="validate", rejects=args.rejects, report=args.report, **_mapping(args)
    )
    display = ReadDisplay() if not args.quiet and sys.stderr.isatty() else None
    try:
        result = core.validate(config, display)
    finally:
        if display is not None:
            display.close()
    print(format_result(result))
    return EXIT_REJECTS if result.events_rejected else EXIT_OK


def run_init(args: argparse.Namespace) -> int:
    from uploader.starter import write_starter

    if args.rejects or args.report:
        raise ConfigError("init writes a config to standard output; --rejects and --report "
                          "go with validate and upload")  # fmt: skip
    config = build_config(args.paths, command="validate", **_mapping(args))
    starter = write_starter(config, args.argv[1:])
    sys.stdout.write(starter.text)
    if starter.to_choose:
        print(
            f"uploader: init: the config is written, but choose {', '.join(starter.to_choose)} "
            "in it (see CHOOSE)",
            file=sys.stderr,
        )
        return EXIT_REJECTS
    return EXIT_OK


def run_upload(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _dry_run(args)
    if args.out:
        raise ConfigError("--out goes with --dry-run; an upload writes --report and --rejects")
    from uploader import core
    from uploader.console import UploadDisplay, format_result
    from uploader.progress import Event, SandboxStarted

    # With --sandbox the target flags are left aside, so that a real upload's command line
    # can rehearse by adding --sandbox.
    target = (
        {"sandbox": True}
        if args.sandbox
        else {
            "org": args.org,
            "project": args.project,
            "source_id": args.source,
            "api_key_file": args.api_key_file or None,
            "base_url": args.base_url,
        }
    )
    config = build_config(
        args.paths,
        command="upload",
        rejects=args.rejects,
        report=args.report,
        state=args.state,
        concurrency=args.concurrency,
        rate=args.rate,
        max_retry_time=args.max_retry_time,
        force=args.force,
        restart=args.restart,
        wait=args.wait,
        **target,
        **_mapping(args),
    )
    display = UploadDisplay(
        args.quiet,
        stopping="\nuploader: stopping after the requests in flight (Ctrl-C again to quit now)",
    )

    def observe(event: Event) -> None:
        if isinstance(event, SandboxStarted):
            print(f"Uploading to the built-in sandbox at {event.base_url}", file=sys.stderr)
        else:
            display(event)

    try:
        with _sigterm_as_interrupt():
            result = core.upload(config, observe)
    finally:
        display.close()
    print(format_result(result))
    if result.status == "aborted":
        print(f"uploader: aborted: {result.message}", file=sys.stderr)
        print("Delivered rows are recorded; run the same command to resume.", file=sys.stderr)
        return EXIT_ABORTED
    if result.status == "interrupted":
        print("uploader: interrupted; run the same command to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_REJECTS if result.events_rejected > args.max_rejects else EXIT_OK


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler stopping the job) stops the run like a first Ctrl-C: the
    requests in flight finish and the state file records them."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: no signals here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_status(args: argparse.Namespace) -> int:
    from uploader.checkpoint import Checkpoint
    from uploader.console import format_status

    if not os.path.exists(args.state):
        raise ConfigError(f"no state file at {args.state}; give --state FILE")
    checkpoint = Checkpoint.for_reading(args.state)
    try:
        print(format_status(checkpoint.runs(), checkpoint.files()))
    finally:
        checkpoint.close()
    return EXIT_OK


def _dry_run(args: argparse.Namespace) -> int:
    if not args.out:
        raise UploaderError("--dry-run needs --out DIR, the folder for requests.jsonl")
    from uploader import core
    from uploader.console import format_result

    config = build_config(
        args.paths,
        command="validate",
        rejects=args.rejects or os.path.join(args.out, "rejects.csv"),
        report=args.report or os.path.join(args.out, "report.json"),
        bodies=os.path.join(args.out, "requests.jsonl"),
        **_mapping(args),
    )
    result = core.validate(config)
    print(format_result(result))
    return EXIT_REJECTS if result.events_rejected else EXIT_OK


def _show_warning(message: Warning | str, *_: Any, **__: Any) -> None:
    print(f"uploader: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command in ("validate", "upload"):
        # The worker that builds chunks imports pandas and pyarrow while this process does.
        workers.prestart()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", ExposedKeyWarning)
            warnings.showwarning = _show_warning
            code: int = args.run(args)
    except UploaderError as exc:
        print(f"uploader: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("uploader: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        workers.discard()
    return code


if __name__ == "__main__":
    sys.exit(main())
