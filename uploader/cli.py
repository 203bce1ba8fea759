"""Command-line shell: parse options, call the core, show the result. No business logic.

Exit codes: 0 all rows valid (and, for upload, delivered); 1 finished with rejected rows;
2 bad options or unreadable input, nothing sent; 3 aborted, resumable; 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from uploader import __version__
from uploader.batches import Batch
from uploader.errors import UploaderError
from uploader.options import DEFAULT_BATCH_SIZE, DEFAULT_MAX_REQUEST_BYTES, Options, build_options
from uploader.pipeline import Progress, Tally, plan_run
from uploader.read import resolve_sources
from uploader.report import RejectsWriter, figures, format_summary, write_json

EXIT_OK, EXIT_REJECTS, EXIT_USAGE, EXIT_ABORTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

EPILOG = """\
exit codes: 0 every row valid; 1 some rows rejected; 2 bad options or input (nothing sent);
3 aborted, resumable; 130 interrupted.
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
        help="upload the input to Intempt (this version: --dry-run only)",
        description="Upload the input to Intempt's track API. This version supports "
        "--dry-run: everything but the sending, with the request bodies written to disk.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_input_arguments(upload)
    upload.add_argument(
        "--dry-run",
        action="store_true",
        help="do everything but send: write the request bodies to OUT/requests.jsonl",
    )
    upload.add_argument(
        "--out", metavar="DIR", help="with --dry-run: folder for requests.jsonl and the rest"
    )
    upload.set_defaults(run=run_upload)

    import importlib.util  # TEMP until the sandbox lands

    if importlib.util.find_spec("uploader.sandbox.cli") is None:
        return parser
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
    if not args.dry_run:
        raise UploaderError(
            "this version only plans uploads: add --dry-run --out DIR to write the request "
            "bodies, or use `uploader validate` to check the input"
        )
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
    bar = _progress_bar(args.quiet, sum(s.rows or 0 for s in sources) or None)

    def on_progress(progress: Progress) -> None:
        if bar is not None:
            bar.update(progress.rows)

    try:
        tally = plan_run(
            sources,
            options,
            on_batch=on_batch,
            on_rejects=writer.write if writer else None,
            on_progress=on_progress,
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


def _progress_bar(quiet: bool, total: int | None) -> Any:
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=" rows", unit_scale=True, desc="Reading", file=sys.stderr)


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
