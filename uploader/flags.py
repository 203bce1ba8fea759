"""The command line's flags: one parser, the subcommands and their option groups.

Every flag's destination is an option's name (`--map` -> mapping), so that the shell hands
them to the core as keyword arguments without translating them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping

from uploader.config import AUTO_MAX, DEFAULT_CONCURRENCY, DEFAULT_MAX_RETRY_TIME, DEFAULT_STATE
from uploader.options import DEFAULT_BATCH_SIZE, DEFAULT_MAX_REQUEST_BYTES
from uploader.target import DEFAULT_BASE_URL
from uploader.version import __version__

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


def build_parser(
    runs: Mapping[str, Callable[[argparse.Namespace], int]],
) -> argparse.ArgumentParser:
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
    validate.set_defaults(run=runs["validate"])

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
    upload.set_defaults(run=runs["upload"])

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
    init.set_defaults(run=runs["init"])

    status = commands.add_parser(
        "status",
        help="list the runs and files of a state file",
        description="List the runs and files recorded in a state file, with what was "
        "delivered, rejected and what remains.",
    )
    status.add_argument("--state", metavar="FILE", default=DEFAULT_STATE, help="state file")
    status.set_defaults(run=runs["status"])

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
    engine = parser.add_argument_group("engine")
    engine.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="local: this machine (default); spark: a Spark job on the inputs, where the "
        "cluster is (needs pip install 'uploader[spark]'; --state is then a folder every "
        "executor can reach, and --rejects a folder)",
    )
    engine.add_argument(
        "--spark-master", metavar="URL", help="with --engine spark: the master (default local[*])"
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
