"""Measuring one contender: the sandbox as a separate process, the contender as a child whose
own rusage (CPU, peak RSS) `os.wait4` returns, and what the rest of the machine used meanwhile.

Everything listens and connects on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
# The sandbox prints its banner within a second; an import-cold venv can take a few.
SANDBOX_START_TIMEOUT_S = 30.0
SANDBOX_STOP_TIMEOUT_S = 10.0
# How often a running contender is polled for exit: small against any run's length.
POLL_S = 0.02
# How often the memory of the contender's process tree is sampled: often enough to catch a
# peak that lasts (memory grows with the run), rarely enough to cost the machine nothing.
TREE_SAMPLE_S = 0.25
# Stats and reset requests to the sandbox are tiny; a stuck one means the sandbox is stuck.
HTTP_TIMEOUT_S = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The machine counts as quiet below this share of all its cores busy (other work disturbs
# every figure on a small machine: the sandbox and the contender already share it).
QUIET_SHARE = 0.10
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
BANNER_FIELDS = ("org", "project", "source", "api key")


@dataclass(frozen=True)
class SandboxInfo:
    base_url: str
    org: str
    project: str
    source: str
    api_key: str = ""

    def __repr__(self) -> str:  # the key is a sandbox throwaway, but keep the habit
        return f"SandboxInfo({self.base_url}, org={self.org!r}, project={self.project!r})"


SINK = Path(__file__).resolve().parent / "sink.py"


class SandboxProcess:
    """The sink in its own process, on a free port of 127.0.0.1: bench/sink.py (answers at
    once, counts, checks nothing: "fast") or `uploader sandbox --null` (checks every body
    as the API would: "sandbox")."""

    def __init__(self, python: str, latency_ms: int, log: Path, kind: str = "fast") -> None:
        if kind == "fast":
            argv = [python, str(SINK), "--host", HOST, "--port", "0"]
        else:
            argv = [python, "-m", "uploader", "sandbox", "--null", "--host", HOST, "--port", "0"]
        if latency_ms:
            argv += ["--latency-ms", str(latency_ms)]
        self._log = log.open("wb")
        self._proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            text=True,
            env=clean_env(),
        )
        self._lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read_banner, daemon=True).start()
        if not self._ready.wait(SANDBOX_START_TIMEOUT_S) or self._proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"the sandbox did not start: {''.join(self._lines)[-500:]}")
        self.info = _parse_banner(self._lines)

    def _read_banner(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.append(line)
            if line.startswith("Press Ctrl-C"):
                self._ready.set()
        self._ready.set()  # it exited: let the waiter see that

    @property
    def pid(self) -> int:
        return self._proc.pid

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(
            f"{self.info.base_url}/_sandbox/stats", timeout=HTTP_TIMEOUT_S
        ) as answer:
            stats: dict[str, Any] = json.load(answer)
            return stats

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self._proc.pid)

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(SANDBOX_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parse_banner(lines: list[str]) -> SandboxInfo:
    text = "".join(lines)
    found = LISTENING.search(text)
    fields = {}
    for line in lines:
        key, _, value = line.strip().partition("  ")
        if key in BANNER_FIELDS:
            fields[key] = value.strip()
    if found is None or set(fields) != set(BANNER_FIELDS):
        raise RuntimeError(f"unexpected sandbox banner: {text[:500]}")
    return SandboxInfo(
        found.group(1), fields["org"], fields["project"], fields["source"], fields["api key"]
    )


def clean_env(api_key: str | None = None) -> dict[str, str]:
    """The environment without proxies (traffic must stay on 127.0.0.1) or Intempt settings
    that could point a contender elsewhere; with the sandbox key when given."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and not k.startswith("INTEMPT_")
    }
    env["NO_PROXY"] = env["no_proxy"] = f"{HOST},localhost"
    env["PYTHONUNBUFFERED"] = "1"
    if api_key is not None:
        env["INTEMPT_API_KEY"] = api_key
    return env


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU of a running process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent on anything but idle and I/O wait since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def wait_for_quiet(max_wait_s: float, sample_s: float = 1.0) -> float:
    """Wait (up to max_wait_s) until other work leaves the machine mostly idle; return the
    busy share of the last sample (0..1 of all cores)."""
    deadline = time.monotonic() + max_wait_s
    cores = os.cpu_count() or 1
    while True:
        before = machine_busy_seconds()
        time.sleep(sample_s)
        share = (machine_busy_seconds() - before) / (sample_s * cores)
        if share < QUIET_SHARE or time.monotonic() >= deadline:
            return share


@dataclass(frozen=True)
class Measurement:
    exit_code: int | None  # None: killed at the timeout
    wall_s: float
    user_s: float
    sys_s: float
    peak_rss_mb: float  # the largest of the contender's processes (wait4's ru_maxrss)
    peak_tree_rss_mb: float  # the contender and its worker processes together, sampled
    # The same in proportional set size: pages shared by the processes (the libraries both
    # load) counted once, as the machine holds them.
    peak_tree_pss_mb: float
    busy_s: float  # CPU the whole machine used during the run, contender included
    stdout: str
    stderr_tail: str

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def json_line(self) -> dict[str, Any] | None:
        """The contender's last stdout line that is a JSON object, if any."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                try:
                    parsed = json.loads(line)
                except ValueError:
                    continue
                if isinstance(parsed, dict):
                    return parsed
        return None


def tree_memory(root: int) -> tuple[int, int]:
    """(RSS, PSS) bytes of a process and all its descendants, from /proc (0 if gone)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    rss = pss = 0
    todo = [root]
    page = os.sysconf("SC_PAGE_SIZE")
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                rss += int(fh.read().split()[1]) * page
            with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
                for line in fh:
                    if line.startswith(b"Pss:"):
                        pss += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return rss, pss


def measure(argv: list[str], env: dict[str, str], timeout_s: float, workdir: Path) -> Measurement:
    """Run one contender to completion (or kill it at the timeout) and collect its rusage."""
    out_path, err_path = workdir / "stdout.txt", workdir / "stderr.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        busy_before = machine_busy_seconds()
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout_s
        timed_out = False
        tree_peak = tree_pss_peak = 0
        next_sample = 0.0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() >= next_sample:  # a walk of /proc: not every poll
                rss, pss = tree_memory(proc.pid)
                tree_peak, tree_pss_peak = max(tree_peak, rss), max(tree_pss_peak, pss)
                next_sample = time.monotonic() + TREE_SAMPLE_S
            if time.monotonic() >= deadline:
                timed_out = True
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(POLL_S)
        wall = time.perf_counter() - start
        busy = machine_busy_seconds() - busy_before
    proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from reaping it again
    stderr = err_path.read_text(errors="replace")
    return Measurement(
        exit_code=None if timed_out else proc.returncode,
        wall_s=wall,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
        peak_tree_rss_mb=max(tree_peak / 2**20, usage.ru_maxrss / 1024),
        peak_tree_pss_mb=tree_pss_peak / 2**20,
        busy_s=busy,
        stdout=out_path.read_text(errors="replace"),
        stderr_tail=stderr[-2000:],
    )


def python_executable() -> str:
    """The venv's interpreter: the one running this script."""
    return sys.executable
