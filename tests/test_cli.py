from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from uploader.cli import main
from uploader.sandbox import Sandbox
from uploader.version import __version__

ROOT = Path(__file__).resolve().parents[1]
GOOD = "ts,event,sku,user_id\n2024-05-02T14:38:24Z,view,S1,u1\n2024-05-02T14:38:25Z,cart,S2,u1\n"
BAD = GOOD + "2024-05-02T14:38:26Z,view,,u1\n"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_validate_all_valid_exits_0_and_prints_the_plan(capsys, write_csv):
    code, out, _ = run(capsys, "validate", write_csv(GOOD))
    assert code == 0
    assert "Read 2 rows from 1 file." in out
    assert (
        "Mapping: event from column 'event'; productId <- sku, userId <- user_id, timestamp <- ts."
        in out
    )
    assert "Valid events: 2" in out
    assert "Requests: 1 (" in out


def test_validate_with_rejects_exits_1_and_writes_them(capsys, write_csv, tmp_path):
    rejects = tmp_path / "out" / "rejects.csv"
    report = tmp_path / "report.json"
    code, out, _ = run(capsys, "validate", write_csv(BAD), "--rejects", rejects, "--report", report)
    assert code == 1
    assert "Rejected rows: 1" in out
    assert f"Rejected rows written to {rejects} (1 rows)." in out
    with open(rejects, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["file", "row", "field", "reason", "ts", "event", "sku", "user_id"]
    assert rows[1][1:4] == ["3", "data.productId", "productId is blank (column 'sku')"]
    assert rows[1][4:] == ["2024-05-02T14:38:26Z", "view", "", "u1"]
    figures = json.loads(report.read_text())
    assert figures["rows_read"] == 3
    assert figures["events_valid"] == 2
    assert figures["events_rejected"] == 1
    assert figures["by_event"] == {"Added to cart": 1, "Product viewed": 1}
    assert figures["files"][0]["mapping"]["data.productId"] == "sku"
    assert not list(tmp_path.glob("**/*.partial"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--event", "Viewed"], "--event 'Viewed' is not an event name"),
        (["--map", "userId"], "--map 'userId': expected KEY=VALUE"),
        (["--map", "userId=customer"], "no column 'customer'"),
        (["--timezone", "Nowhere/Town"], "is not a known time zone"),
    ],
)
def test_bad_options_exit_2_with_a_message(capsys, write_csv, argv, message):
    code, out, err = run(capsys, "validate", write_csv(GOOD), *argv)
    assert code == 2
    assert err.startswith("uploader: error: ")
    assert message in err
    assert out == ""


def test_missing_input_exits_2(capsys, tmp_path):
    code, _, err = run(capsys, "validate", tmp_path / "nope.csv")
    assert code == 2
    assert f"{tmp_path / 'nope.csv'}: no such file or folder" in err


def test_dry_run_writes_the_exact_bodies_in_send_order(capsys, write_csv, tmp_path):
    out_dir = tmp_path / "dry"
    code, out, _ = run(
        capsys, "upload", write_csv(BAD), "--dry-run", "--out", out_dir, "--batch-size", "1"
    )
    assert code == 1
    lines = (out_dir / "requests.jsonl").read_bytes().splitlines()
    bodies = [orjson.loads(line) for line in lines]
    assert [b["track"][0]["payload"][0]["data"]["productId"] for b in bodies] == ["S1", "S2"]
    assert [b["track"][0]["name"] for b in bodies] == ["Product viewed", "Added to cart"]
    assert (out_dir / "rejects.csv").exists()
    assert json.loads((out_dir / "report.json").read_text())["requests"] == 2
    assert "(2 lines, in send order)" in out


def test_dry_run_needs_out(capsys, write_csv):
    code, _, err = run(capsys, "upload", write_csv(GOOD), "--dry-run")
    assert code == 2
    assert "--dry-run needs --out DIR" in err


def test_help_lists_the_commands_and_exit_codes():
    result = subprocess.run(
        [sys.executable, "-m", "uploader", "validate", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--event-map VALUE=NAME" in result.stdout
    assert "exit codes: 0 every row valid; 1 some rows rejected" in result.stdout


HEAVY = {"pandas", "pyarrow", "httpx", "numpy"}
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$")


@pytest.mark.parametrize(
    ("argv", "shows"),
    [
        (["-c", "import uploader"], "uploader.version"),
        (["-m", "uploader", "--help"], "argparse"),
        (["-m", "uploader", "--version"], "argparse"),
    ],
    ids=["import", "--help", "--version"],
)
def test_import_help_and_version_load_none_of_the_heavy_libraries(argv, shows):
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    modules = {m.group(1) for m in map(IMPORT_LINE.match, result.stderr.splitlines()) if m}
    assert shows in modules  # the list was read
    assert {name.split(".")[0] for name in modules} & HEAVY == set()
    if argv[-1] == "--version":
        assert result.stdout == f"uploader {__version__}\n"


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o600, False)], ids=["0644", "0600"])
def test_an_api_key_file_others_can_read_is_warned_about_on_stderr(
    capsys, write_csv, tmp_path, mode, warned
):
    key_file = tmp_path / "key"
    with Sandbox() as sb:
        key_file.write_text(sb.api_key + "\n")
        key_file.chmod(mode)
        code, _, err = run(
            capsys, "upload", write_csv(GOOD), "--api-key-file", key_file,
            "--base-url", sb.base_url, "--org", sb.org, "--project", sb.project,
            "--source", sb.source, "--state", tmp_path / "state.db", "--quiet",
        )  # fmt: skip
        stored = sb.stats()["events"]
    assert (code, stored) == (0, 2)  # a warning, not a refusal
    warning = (
        f"uploader: warning: --api-key-file {key_file} can be read by other users (mode "
        f"-rw-r--r--); keep it to yourself: chmod 600 {key_file}\n"
    )
    assert err == (warning if warned else "")
