"""`uploader sandbox` as users run it: the banner, Ctrl-C, and one-line errors for bad options."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest

from uploader.cli import main

from .wire import body

SECRET_KEY = "live.do-not-print-me"


@contextmanager
def running(*options: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`uploader sandbox` in a child process, with the banner it printed before serving."""
    command = [sys.executable, "-m", "uploader", "sandbox", "--port", "0", *options]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        assert proc.stdout is not None
        banner: list[str] = []
        while not banner or banner[-1] != "Press Ctrl-C to stop.":
            line = proc.stdout.readline()
            assert line, f"sandbox exited early: {proc.stderr.read() if proc.stderr else ''}"
            banner.append(line.rstrip("\n"))
        try:
            yield proc, banner
        finally:
            if proc.poll() is None:
                proc.kill()


def base_url(banner: list[str]) -> str:
    return banner[0].rsplit(" ", 1)[1]


def test_banner_names_url_and_credentials_and_ctrl_c_exits_0() -> None:
    with running("--org", "acme", "--project", "shop") as (proc, banner):
        url = base_url(banner)
        with httpx.Client() as client:
            stats = client.get(f"{url}/_sandbox/stats").json()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)

    assert banner[0].startswith("Intempt sandbox listening on http://127.0.0.1:")
    text = "\n".join(banner)
    for expected in ("acme", "shop", "7340000000000000001", "sandbox.local-secret", "in memory"):
        assert expected in text
    assert f"{url}/v1/acme/projects/shop/sources/7340000000000000001/track" in text
    assert stats["requests"] == 0
    assert proc.returncode == 0
    assert "Traceback" not in err
    assert "warning" not in err  # it listens on 127.0.0.1 only


def test_key_from_file_is_used_and_never_printed(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(SECRET_KEY + "\n")

    with running("--api-key-file", str(key_file)) as (proc, banner):
        url = base_url(banner)
        track = next(line for line in banner if "track URL" in line).split()[-1]
        raw = orjson.dumps(body())
        headers = {"Content-Type": "application/json"}
        with httpx.Client() as client:
            ok = client.post(track, content=raw, headers=headers, auth=("live", "do-not-print-me"))
            leaked = client.post(
                track, content=b"{}", headers=headers, params={"apiKey": SECRET_KEY}
            )
            default = client.post(
                track, content=raw, headers=headers, auth=("sandbox", "local-secret")
            )
            stats = client.get(f"{url}/_sandbox/stats").json()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)

    assert (ok.status_code, leaked.status_code, default.status_code) == (201, 400, 401)
    assert stats["key_in_query"] == 1
    assert f"key from {key_file}" in "\n".join(banner)
    assert proc.returncode == 0
    assert "apiKey=<redacted>" in err  # the 400 was logged, with the key cut out
    assert "do-not-print-me" not in "\n".join(banner) + out + err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--port", "http"], "--port must be an integer; got 'http'"),
        (["--port", "70000"], "--port must be from 0 to 65535"),
        (["--error-rate", "2"], "--error-rate must be a probability from 0 to 1; got 2.0"),
        (["--drop-rate", "x"], "--drop-rate must be a number; got 'x'"),
        (["--rate-limit", "0"], "--rate-limit must be a number more than 0"),
        (["--max-body-bytes", "1.5"], "--max-body-bytes must be an integer; got '1.5'"),
        (["--latency-ms", "-5"], "--latency-ms must be an integer 0 or more"),
        (["--seed", "abc"], "--seed must be an integer"),
        (["--source", "7.34e18"], "source must be a string of digits"),
        (["--org", ""], "org must be a non-empty string"),
        (["--null", "--db", "x.sqlite"], "--db and --null exclude each other"),
        (["--api-key-file", "/nonexistent/key"], "--api-key-file /nonexistent/key: cannot read"),
    ],
)
def test_bad_option_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    code = main(["sandbox", *options])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("uploader sandbox: ")
    assert message in err
    assert err.count("\n") == 1


def test_malformed_key_file_is_refused_without_quoting_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("secret-without-prefix\n")

    code = main(["sandbox", "--api-key-file", str(key_file)])

    err = capsys.readouterr().err
    assert code == 2
    assert '"<prefix>.<secret>"' in err
    assert "secret-without-prefix" not in err


def test_port_in_use_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["sandbox", "--port", str(port)])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"uploader sandbox: cannot listen on 127.0.0.1:{port}: ")
    assert err.count("\n") == 1


def test_unusable_db_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("this is not SQLite, " * 100)

    code = main(["sandbox", "--db", str(not_a_db)])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"uploader sandbox: --db {not_a_db}: cannot use it")
    assert err.count("\n") == 1


def test_listening_beyond_loopback_is_warned_about() -> None:
    with running("--host", "0.0.0.0") as (proc, banner):
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)

    assert banner[0].startswith("Intempt sandbox listening on http://0.0.0.0:")
    assert proc.returncode == 0
    assert err == (
        "uploader sandbox: warning: listening on 0.0.0.0, so other machines can reach it; it "
        "stores what it is sent and accepts its key from anyone who reads this banner. Leave "
        "out --host to listen on 127.0.0.1 only\n"
    )
    assert out == "sandbox stopped\n"
