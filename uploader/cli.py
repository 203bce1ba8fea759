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

from uploader import flags, workers
from uploader.config import (
    DEFAULT_STATE,
    MAPPING_OPTIONS,
    build_config,
)
from uploader.errors import ConfigError, ExposedKeyWarning, UploaderError

# The shell imports the core (pandas, pyarrow, httpx) only once a command runs, so that
# `uploader --help` and `uploader --version` answer at once.

ARROW_POOL = "ARROW_DEFAULT_MEMORY_POOL"
EXIT_OK, EXIT_REJECTS, EXIT_USAGE, EXIT_ABORTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def build_parser() -> argparse.ArgumentParser:
    return flags.build_parser(
        {"validate": run_validate, "upload": run_upload, "init": run_init, "status": run_status}
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
    if args.engine == "spark":
        return _spark_upload(args)
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


def _spark_upload(args: argparse.Namespace) -> int:
    """The same upload as a Spark job (uploader/spark): the same options, result and exit
    codes."""
    from uploader.console import format_result
    from uploader.spark import session
    from uploader.spark.job import upload

    spark = session.session(args.spark_master)
    df = session.read_inputs(spark, args.paths, delimiter=args.delimiter,
                             encoding=args.encoding or "utf-8")  # fmt: skip
    options: dict[str, Any] = {
        **{k: v for k, v in _mapping(args).items() if k not in ("encoding", "delimiter")},
        "rejects": args.rejects,
        "report": args.report,
        "concurrency": args.concurrency,
        "rate": args.rate,
        "max_retry_time": args.max_retry_time,
        "force": args.force or None,
    }
    if args.state != DEFAULT_STATE:
        options["state"] = args.state
    with contextlib.ExitStack() as stack:
        if args.sandbox:
            from uploader.sandbox import Sandbox

            sandbox = stack.enter_context(Sandbox())
            print(f"Uploading to the built-in sandbox at {sandbox.base_url}", file=sys.stderr)
            options["sandbox"] = sandbox
        else:
            options.update(
                org=args.org,
                project=args.project,
                source_id=args.source,
                api_key_file=args.api_key_file or None,
                base_url=args.base_url,
            )
        result = upload(df, **options)
    print(format_result(result))
    if result.status == "aborted":
        print(f"uploader: aborted: {result.message}", file=sys.stderr)
        print("Delivered events are recorded; run the same command to resume.", file=sys.stderr)
        return EXIT_ABORTED
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
    if result.choice_needed:  # the upload itself would send nothing: say so as it would
        print("uploader: error: the upload would send nothing until --duplicates is chosen "
              "(see CHOICE NEEDED above)", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    return EXIT_REJECTS if result.events_rejected else EXIT_OK


def _show_warning(message: Warning | str, *_: Any, **__: Any) -> None:
    print(f"uploader: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command in ("validate", "upload", "init"):
        # Arrow's buffers from the C library's allocator, which returns freed memory to the
        # system (mimalloc, Arrow's default, keeps it): less memory at no cost in speed
        # (docs/benchmarks.md). Set before pyarrow loads, so the worker inherits it too;
        # a value the user set wins.
        os.environ.setdefault(ARROW_POOL, "system")
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
