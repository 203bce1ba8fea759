"""Profile `uploader upload` on one input against the null sandbox, and say where time goes.

    .venv/bin/python bench/profile.py                      # defaults, 1M rows Parquet
    .venv/bin/python bench/profile.py --best               # with run.py's best settings
    .venv/bin/python bench/profile.py --input FILE -- --batch-size 2000

Samples every thread of the upload and of its worker process with py-spy (`pip install
py-spy`; the per-chunk stages run in the worker, the run-wide ones in a reader thread) and
prints the share of samples per thread, per stage and per hottest line. The raw collapsed
stacks are kept in bench/results/.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import generate
from harness import SandboxProcess, clean_env, python_executable
from run import OURS_BEST, RESULTS_DIR

# Samples a second: enough for a 10-20 s run to give a few thousand samples.
RATE_HZ = 200
TIMEOUT_S = 900
# Frames (prefixes) that name a stage. A sample counts for the stage of its innermost
# matching frame, so the shares add up (pack_batches pulls the whole reader chain through
# generators: only what is left of it once the inner stages are taken is packing).
STAGES = (
    ("read", "read_frames (uploader/read.py)"),
    ("map", "map_columns (uploader/convert.py)"),
    ("order guard: the first pass's event names", "_orders (uploader/build.py)"),
    ("order guard: counting", "RepeatCounts.add (uploader/repeats.py)"),
    ("validate", "validate_rows (uploader/validation.py)"),
    ("id text, SHA-256, item sizes (per chunk)", "derive_events (uploader/event_ids.py)"),
    ("duplicates and items (run-wide)", "settle_events (uploader/event_ids.py)"),
    ("pack bodies", "pack_batches (uploader/batches.py)"),
    ("worker: hand chunks over", "_write (uploader/workers.py)"),
    ("run: take chunks from the worker", "_read (uploader/workers.py)"),
    ("reader waits for the senders", "UploadRun._read.<locals>.emit (uploader/upload_run.py)"),
    ("send (the transport)", "Sender._post (uploader/send.py)"),
    ("after a 2xx", "UploadRun._delivered (uploader/upload_run.py)"),
    ("checkpoint writes", "Checkpoint."),
    ("imports", "_find_and_load (<frozen importlib._bootstrap>)"),
    ("skip rows sent before, progress", "UploadRun._events (uploader/upload_run.py)"),
)
LINE = re.compile(r":\d+\)$")


def profile(path: Path, settings: list[str], out: Path) -> Path:
    spy = shutil.which("py-spy") or str(Path(python_executable()).with_name("py-spy"))
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        work = Path(tmp)
        with SandboxProcess(python_executable(), 0, work / "sandbox.log") as sandbox:
            info = sandbox.info
            argv = [
                *(spy, "record", "--threads", "--subprocesses", "-r", str(RATE_HZ)),
                *("-f", "raw", "-o", str(out)),
                *("--", python_executable(), "-m", "uploader", "upload", str(path)),
                *("--base-url", info.base_url, "--org", info.org, "--project", info.project),
                *("--source", info.source, "--state", str(work / "state.db"), "--quiet"),
                *settings,
            ]
            subprocess.run(argv, env=clean_env(info.api_key), timeout=TIMEOUT_S, check=True)
            print(f"sandbox received {sandbox.stats()['events']:,} events")
    return out


def _stage(frames: list[str], thread: str) -> str:
    """The stage of the innermost frame that names one; else what the thread did."""
    for frame in reversed(frames):
        name = LINE.sub(")", frame)
        for label, prefix in STAGES:
            if name.startswith(prefix):
                return label
    return f"other ({thread})"


def summarise(raw: Path, top: int = 15) -> str:
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        thread, *frames = stack.split(";")
        thread_name = re.sub(r"^thread \(\d+\):?\s*", "", thread) or "(unnamed)"
        threads[thread_name] += n
        if frames:
            own[frames[-1]] += n
        names = {LINE.sub(")", f) for f in frames}
        for name in names:
            inclusive[name] += n
        stages[_stage(frames, thread_name)] += n
    out = [f"{total:,} samples", "", "by thread:"]
    out += [f"  {n / total:6.1%}  {name}" for name, n in threads.most_common()]
    out += ["", "by stage (each sample counted once, for its innermost stage):"]
    out += [f"  {n / total:6.1%}  {label}" for label, n in stages.most_common()]
    out += ["", "hottest functions in uploader/ (inclusive):"]
    ours = [(name, n) for name, n in inclusive.most_common() if "(uploader/" in name]
    out += [f"  {n / total:6.1%}  {name}" for name, n in ours[:top]]
    out += ["", "hottest lines (self):"]
    out += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", help="default: bench/data/interactions_1000000.parquet")
    parser.add_argument("--best", action="store_true", help="run.py's best settings")
    parser.add_argument("--summary", metavar="RAW", help="only summarise an earlier profile")
    parser.add_argument("settings", nargs="*", help="more `uploader upload` options, after --")
    args = parser.parse_args(argv)
    if args.summary:
        print(summarise(Path(args.summary)))
        return 0
    path = Path(args.input) if args.input else generate.generate(1_000_000)[0]
    settings = [*(OURS_BEST if args.best else ()), *args.settings]
    name = "best" if args.best else "defaults"
    out = RESULTS_DIR / f"profile_{name}_{path.stem}{path.suffix.replace('.', '_')}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    print(summarise(profile(path, settings, out)))
    print(f"\nraw stacks: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
