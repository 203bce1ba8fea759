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
from uploader.config import DEFAULT_STATE, MAPPING_OPTIONS, build_config
from uploader.errors import ConfigError, ExposedKeyWarning, UploaderError
from uploader.flags import EPILOG, UPLOAD_EPILOG, add_input_arguments, add_upload_arguments
from uploader.version import __version__

# The shell imports the core (pandas, pyarrow, httpx) only once a command runs, so that
# `uploader --help` and `uploader --version` answer at once.

EXIT_OK, EXIT_REJECTS, EXIT_USAGE, EXIT_ABORTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


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
    add_input_arguments(validate)
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
    add_input_arguments(upload)
    add_upload_arguments(upload)
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
    add_input_arguments(init)
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
