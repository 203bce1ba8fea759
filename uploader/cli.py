"""Command-line shell: parse options, call the core, show the result. No business logic.

Exit codes: 0 all rows valid (and, for upload, delivered); 1 finished with rejected rows;
2 bad options or unreadable input, nothing sent; 3 aborted, resumable; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from uploader import __version__
from uploader.batches import Batch
from uploader.checkpoint import Checkpoint
from uploader.console import ReadDisplay, UploadDisplay, format_status, format_upload
from uploader.errors import ConfigError, UploaderError
from uploader.options import DEFAULT_BATCH_SIZE, DEFAULT_MAX_REQUEST_BYTES, Options, build_options
from uploader.pipeline import Tally, plan_run
from uploader.read import Source, resolve_sources
from uploader.report import RejectsWriter, figures, format_summary, write_json
from uploader.send import DEFAULT_CONCURRENCY, DEFAULT_MAX_RETRY_TIME
from uploader.settings import check_sending, resolve_target
from uploader.target import DEFAULT_BASE_URL, Credentials, Target
from uploader.upload import DEFAULT_STATE, UploadOutcome, UploadRun, UploadSettings

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
        "--no-timestamp",
        action="store_true",
        default=None,
        help="send without timestamps: the API then stamps the upload time (not for history)",
    )
    mapping.add_argument(
        "--keep-duplicates",
        action="store_true",
        default=None,
        help="send exact duplicate rows as separate events (default: collapse them into one)",
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
        default=DEFAULT_CONCURRENCY,
        help=f"requests in flight (default {DEFAULT_CONCURRENCY})",
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


def _options(args: argparse.Namespace) -> Options:
    return build_options(
        args.config,
        event=args.event,
        event_column=args.event_column,
        event_map=args.event_map,
        mapping=args.mapping,
        timestamp_unit=args.timestamp_unit,
        timestamp_format=args.timestamp_format,
        timezone=args.timezone,
        no_timestamp=args.no_timestamp,
        keep_duplicates=args.keep_duplicates,
        batch_size=args.batch_size,
        max_request_bytes=args.max_request_bytes,
    )


def run_validate(args: argparse.Namespace) -> int:
    tally = _run_offline(args, args.rejects, args.report, on_batch=None)
    return EXIT_REJECTS if tally.events_rejected else EXIT_OK


def run_upload(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _dry_run(args)
    if args.out:
        raise ConfigError("--out goes with --dry-run; an upload writes --report and --rejects")
    check_sending(args.concurrency, args.rate)
    options = _options(args)
    sources = resolve_sources(args.paths)
    if args.sandbox:
        from uploader.sandbox import Sandbox

        with Sandbox() as sandbox:
            target = Target(sandbox.base_url, sandbox.org, sandbox.project, sandbox.source)
            print(f"Uploading to the built-in sandbox at {sandbox.base_url}", file=sys.stderr)
            code = _upload(args, options, sources, target, Credentials.from_key(sandbox.api_key))
            stats = sandbox.stats()
            print(
                f"The sandbox stored {stats['events']:,} events "
                f"({stats['unique_event_ids']:,} distinct ids) from {stats['requests']:,} requests."
            )
            return code
    target, credentials = _target_from(args)
    return _upload(args, options, sources, target, credentials)


def _target_from(args: argparse.Namespace) -> tuple[Target, Credentials]:
    return resolve_target(
        org=args.org,
        project=args.project,
        source_id=args.source,
        api_key_file=args.api_key_file or None,
        base_url=args.base_url,
    )


def _upload(
    args: argparse.Namespace,
    options: Options,
    sources: list[Source],
    target: Target,
    credentials: Credentials,
) -> int:
    settings = UploadSettings(
        target=target,
        credentials=credentials,
        state=args.state,
        concurrency=args.concurrency,
        rate=args.rate,
        max_retry_time=args.max_retry_time,
        force=args.force,
        restart=args.restart,
    )
    writer = (
        RejectsWriter(args.rejects, [c for s in sources for c in s.columns])
        if args.rejects
        else None
    )
    display = UploadDisplay(args.quiet)
    run = UploadRun(
        sources,
        options,
        settings,
        on_progress=display,
        on_rejects=writer.write if writer else None,
    )
    try:
        outcome = asyncio.run(_with_signals(run))
    except BaseException:
        if writer is not None:
            writer.abandon()
        raise
    finally:
        display.close()
    if writer is not None:
        writer.close()
    if outcome.tally.files:
        print(format_summary(outcome.tally, planned=False))
    else:
        print("Nothing to read: every input was uploaded before.")
    print(format_upload(outcome))
    if writer is not None:
        print(f"Rejected rows written to {args.rejects} ({writer.count:,} rows).")
    if args.report:
        write_json(args.report, dict(outcome.figures, status=outcome.status))
    if outcome.status == "aborted":
        print(f"uploader: aborted: {outcome.message}", file=sys.stderr)
        print("Delivered rows are recorded; run the same command to resume.", file=sys.stderr)
        return EXIT_ABORTED
    if outcome.status == "interrupted":
        print("uploader: interrupted; run the same command to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_REJECTS if outcome.figures["events_rejected"] > args.max_rejects else EXIT_OK


async def _with_signals(run: UploadRun) -> UploadOutcome:
    """First Ctrl-C: stop taking batches and let in-flight ones finish. Second: leave now
    (the state file stays consistent: every write to it is one transaction)."""
    loop = asyncio.get_running_loop()
    presses = 0

    def on_interrupt() -> None:
        nonlocal presses
        presses += 1
        if presses > 1:
            os._exit(EXIT_INTERRUPTED)
        print(
            "\nuploader: stopping after the requests in flight (Ctrl-C again to quit now)",
            file=sys.stderr,
        )
        run.request_stop()

    try:
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        loop.add_signal_handler(signal.SIGTERM, on_interrupt)
    except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
        pass
    return await run.run()


def run_status(args: argparse.Namespace) -> int:
    if not os.path.exists(args.state):
        raise ConfigError(f"no state file at {args.state}; give --state FILE")
    checkpoint = Checkpoint(args.state)
    try:
        print(format_status(checkpoint.runs(), checkpoint.files()))
    finally:
        checkpoint.close()
    return EXIT_OK


def _dry_run(args: argparse.Namespace) -> int:
    if not args.out:
        raise UploaderError("--dry-run needs --out DIR, the folder for requests.jsonl")
    os.makedirs(args.out, exist_ok=True)
    requests_path = os.path.join(args.out, "requests.jsonl")
    rejects = args.rejects or os.path.join(args.out, "rejects.csv")
    report = args.report or os.path.join(args.out, "report.json")
    partial = f"{requests_path}.partial"
    with open(partial, "wb") as fh:

        def write_body(batch: Batch) -> None:
            fh.write(batch.body + b"\n")

        try:
            tally = _run_offline(args, rejects, report, on_batch=write_body)
        except BaseException:
            fh.close()
            os.unlink(partial)
            raise
    os.replace(partial, requests_path)
    print(f"Request bodies: {requests_path} ({tally.requests:,} lines, in send order)")
    return EXIT_REJECTS if tally.events_rejected else EXIT_OK


def _run_offline(
    args: argparse.Namespace, rejects_path: str | None, report_path: str | None, on_batch: Any
) -> Tally:
    options = _options(args)
    sources = resolve_sources(args.paths)
    writer = (
        RejectsWriter(rejects_path, [c for s in sources for c in s.columns])
        if rejects_path
        else None
    )
    bar = ReadDisplay(sources) if not args.quiet and sys.stderr.isatty() else None
    try:
        tally = plan_run(
            sources,
            options,
            on_batch=on_batch,
            on_rejects=writer.write if writer else None,
            on_progress=bar,
        )
    except BaseException:
        if writer is not None:
            writer.abandon()
        raise
    finally:
        if bar is not None:
            bar.close()
    if writer is not None:
        writer.close()
    print(format_summary(tally))
    if writer is not None:
        print(f"Rejected rows written to {rejects_path} ({writer.count:,} rows).")
    elif tally.events_rejected:
        print("Give --rejects FILE for the full list of rejected rows.")
    if report_path:
        write_json(report_path, figures(tally, options.timezone))
    return tally


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except UploaderError as exc:
        print(f"uploader: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("uploader: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
