"""CSV dialects: encodings (a byte order mark wins), bad bytes located, delimiters sniffed
from the header line and reported, through the same config the shells build."""

from __future__ import annotations

import codecs
import json
import subprocess
import sys

import orjson
import pyarrow as pa
import pytest

import uploader
from uploader.cli import main
from uploader.config import build_config
from uploader.dialect import DecodedText, sniff_delimiter
from uploader.errors import ConfigError, InputError
from uploader.read import read_frames

HEADER = ["ts", "event", "sku", "user_id", "note"]
ROWS = [
    ["2024-05-02T14:38:24Z", "view", "SKU-1", "u1", "crème brûlée"],
    ["2024-05-02T14:38:25Z", "cart", "SKU-2", "u2", "Œuvre € 5"],
]


def csv_text(delimiter: str = ",", newline: str = "\n") -> str:
    return "".join(delimiter.join(r) + newline for r in [HEADER, *ROWS])


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def notes(inputs, **options):
    config = build_config(inputs, command="validate", **options)
    chunks = list(read_frames(config.inputs))
    return config.inputs, [n for c in chunks for n in c.table.column("note").to_pylist()]


@pytest.mark.parametrize(
    ("encoding", "bom", "given", "reported"),
    [
        ("utf-8", b"", None, "utf-8"),
        ("utf-8", codecs.BOM_UTF8, None, "utf-8"),
        ("utf-16-le", codecs.BOM_UTF16_LE, None, "utf-16-le"),
        ("utf-16-be", codecs.BOM_UTF16_BE, None, "utf-16-be"),
        ("utf-16-le", codecs.BOM_UTF16_LE, "cp1252", "utf-16-le"),  # the mark wins
        ("cp1252", b"", "cp1252", "cp1252"),
        ("utf-16-le", b"", "utf-16-le", "utf-16-le"),
    ],
)
def test_encodings_and_byte_order_marks(tmp_path, encoding, bom, given, reported):
    path = tmp_path / "in.csv"
    path.write_bytes(bom + csv_text(newline="\r\n").encode(encoding))
    options = {"encoding": given} if given else {}
    (source,), values = notes([path], **options)
    assert values == ["crème brûlée", "Œuvre € 5"]
    assert source.columns == tuple(HEADER)  # the mark is not part of the first name
    assert source.dialect.encoding == reported
    assert source.dialect.bom == bool(bom)


def test_a_byte_that_is_not_valid_in_the_encoding_is_located(tmp_path, capsys):
    path = tmp_path / "in.csv"
    good = csv_text().encode()
    path.write_bytes(good + b"2024-05-02T14:38:26Z,view,SKU-3,u3,caf\xe9\n")
    code, out, err = run(capsys, "validate", path)
    assert code == 2 and out == ""
    offset = len(good) + len("2024-05-02T14:38:26Z,view,SKU-3,u3,caf")
    assert err == (
        f"uploader: error: {path}: not valid utf-8 text at byte offset {offset:,} (line 4): "
        "bytes e9 (invalid continuation byte); if the file is text in another encoding, give "
        "it with --encoding (e.g. --encoding cp1252 for Excel on Windows, --encoding utf-16)\n"
    )
    code, out, _ = run(capsys, "validate", path, "--encoding", "cp1252", "--map", "data.note=note")
    assert code == 0 and "encoding cp1252" in out


def test_the_offset_is_found_far_into_a_file_read_in_blocks(tmp_path):
    path = tmp_path / "in.csv"
    head = csv_text().encode() + b"2024-05-02T14:38:26Z,view,SKU-3,u3,x\n" * 60_000
    path.write_bytes(head + b"2024-05-02T14:38:26Z,view,SKU-3,u3,\xff\n")
    config = build_config([path], command="validate")  # the header is fine
    with pytest.raises(InputError, match=rf"at byte offset {len(head) + 35:,} \(line 60,004\)"):
        list(read_frames(config.inputs))


def test_bad_bytes_in_a_compressed_file_are_located_in_its_text(tmp_path):
    path = tmp_path / "in.csv.gz"
    with pa.output_stream(str(path), compression="gzip") as out:
        out.write(b"ts,event\n\xc3\x28\n")
    with pytest.raises(InputError, match="byte offset 9 of the decompressed text"):
        build_config([path], command="validate")


def test_decoding_stays_streaming(tmp_path):
    path = tmp_path / "big.csv"
    path.write_bytes(b"a\n" + b"x\n" * 300_000)
    reads = []

    class Recording:
        def __init__(self, raw):
            self.raw = raw

        def read(self, n):
            data = self.raw.read(n)
            reads.append(len(data))
            return data

        def close(self):
            self.raw.close()

    with DecodedText(Recording(pa.OSFile(str(path))), "big.csv") as text:
        total = sum(len(b) for b in iter(lambda: text.read(1 << 16), b""))
    assert total == path.stat().st_size
    assert max(reads) <= 1 << 16  # never the whole file at once


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("a,b,c", ","),
        ("a;b;c", ";"),
        ("a\tb\tc", "\t"),
        ("a|b|c", "|"),
        ('"a,1";"b,2";c', ";"),  # delimiters inside quotes do not count
        ("a;b,c", ","),  # a tie goes to the earlier candidate
        ("single", None),
    ],
)
def test_the_delimiter_is_sniffed_from_the_header_line(header, expected):
    assert sniff_delimiter(header) == expected


@pytest.mark.parametrize(
    ("delimiter", "flag", "said"),
    [
        (";", None, "delimiter ';' (found in the header line)"),
        ("\t", None, "delimiter tab (found in the header line)"),
        ("|", None, "delimiter '|' (found in the header line)"),
        (";", ";", "delimiter ';', encoding utf-8."),
        ("\t", "tab", "delimiter tab, encoding utf-8."),
    ],
)
def test_the_plan_says_which_delimiter_was_used(tmp_path, capsys, delimiter, flag, said):
    path = tmp_path / "in.csv"
    path.write_text(csv_text(delimiter), encoding="utf-8")
    report = tmp_path / "report.json"
    argv = ["validate", path, "--report", report, "--map", "data.note=note"]
    code, out, _ = run(capsys, *argv, *(["--delimiter", flag] if flag else []))
    assert code == 0
    assert f"CSV: {said}" in out
    (entry,) = json.loads(report.read_text())["files"]
    assert entry["csv"] == {
        "delimiter": delimiter,
        "delimiter_sniffed": flag is None,
        "encoding": "utf-8",
        "byte_order_mark": False,
    }


def test_a_given_delimiter_wins_over_the_sniffed_one(tmp_path, run_plan):
    path = tmp_path / "in.csv"
    path.write_text("ts|event|sku|user_id|a,b,c\n2024-05-02T14:38:24Z|view|S1|u1|1,2,3\n")
    tally, batches, rejects = run_plan([path], delimiter="|", mapping=["data.abc=a,b,c"])
    assert rejects == [] and tally.events_valid == 1
    (item,) = orjson.loads(batches[0].body)["track"][0]["payload"]
    assert item["data"]["abc"] == "1,2,3"


def test_dialect_options_come_from_toml_and_keywords_alike(tmp_path):
    config = tmp_path / "map.toml"
    config.write_text('encoding = "cp1252"\ndelimiter = ";"\n')
    path = tmp_path / "in.csv"
    path.write_bytes(csv_text(";").encode("cp1252"))
    from_file = build_config([path], command="validate", config=config)
    from_keywords = build_config([path], command="validate", encoding="cp1252", delimiter=";")
    assert from_file.inputs[0].dialect == from_keywords.inputs[0].dialect
    assert from_file.inputs[0].dialect.encoding == "cp1252"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"encoding": "klingon"}, "--encoding 'klingon' is not an encoding Python knows"),
        ({"delimiter": ";;"}, "--delimiter ';;': give one character"),
        ({"delimiter": '"'}, "give one character"),
    ],
)
def test_bad_dialect_options_are_config_errors(write_csv, options, message):
    with pytest.raises(ConfigError, match=message):
        build_config([write_csv("a\n1\n")], command="validate", **options)


def test_a_binary_file_is_one_clean_message_and_no_traceback(tmp_path):
    path = tmp_path / "data.csv"
    # Bytes that are not UTF-8 on a line that also has too few columns: pyarrow's row
    # handler used to choke on them and Python printed "Exception ignored in: ..." first.
    path.write_bytes(b"a,b,c\n" + bytes(range(128, 256)) * 20 + b"\n1,2,3\n")
    result = subprocess.run(
        [sys.executable, "-m", "uploader", "validate", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"uploader: error: {path}: not valid utf-8 text at byte")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr


def test_utf_16_without_a_byte_order_mark_needs_its_byte_order(tmp_path, capsys):
    path = tmp_path / "in.csv"
    path.write_bytes(csv_text().encode("utf-16-le"))
    code, out, err = run(capsys, "validate", path, "--encoding", "utf-16")
    assert (code, out) == (2, "")
    assert err == (
        f"uploader: error: {path}: not valid utf-16 text (UTF-16 stream does not start with "
        "BOM); if the file is text in another encoding, give it with --encoding (e.g. "
        "--encoding cp1252 for Excel on Windows, --encoding utf-16), or utf-16-le / utf-16-be "
        "for UTF-16 without a byte order mark\n"
    )
    code, _, _ = run(capsys, "validate", path, "--encoding", "utf-16-le")
    assert code == 0


def test_the_header_probe_never_hands_pyarrow_half_a_character(tmp_path, capsys):
    # The probe parses the first 64 KiB; here that ends inside an 'é' of a malformed row,
    # whose text pyarrow's row handler could not decode ("Exception ignored in ...").
    path = tmp_path / "in.csv"
    head = "a,b\n" + "x,yz\n" * 13_001
    assert (65_536 - len(head.encode())) % 2 == 1
    path.write_text(head + "é" * 400 + "\n1,2\n", encoding="utf-8")
    (source,) = build_config([path], command="validate").inputs
    assert source.columns == ("a", "b")
    chunks = list(read_frames([source]))
    assert [m[0] for c in chunks for m in c.malformed] == [13_002]
    assert capsys.readouterr().err == ""


def test_the_python_api_takes_the_dialect_options(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(
        "ts;event;sku;user_id;price\r\n2024-05-02T14:38:24Z;view;SKU-1;u1;94,86\r\n".encode(
            "cp1252"
        )
    )
    check = uploader.validate(path, encoding="cp1252", delimiter=";", decimal=",", progress=False)
    assert (check.events_valid, check.events_rejected) == (1, 0)
    assert check.files[0].dialect.describe() == "delimiter ';', encoding cp1252"
    assert check.sample_payload()[0]["track"][0]["payload"][0]["data"]["price"] == 94.86
