"""`uploader init`: a commented config from what an input shows, ready for --config, that
gives the plan the same flags would."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import fields

from tests.test_diagnosis import hm_purchases
from uploader.cli import main
from uploader.options import Options, build_options


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def planned(capsys, tmp_path, name, *argv):
    """What a dry run would send, and the plan's mapping, as the report has them."""
    out = tmp_path / name
    code, _, _ = run(capsys, "upload", *argv, "--dry-run", "--out", out, "-q")
    report = json.loads((out / "report.json").read_text())
    return code, (out / "requests.jsonl").read_bytes(), report["files"][0]


def init(capsys, tmp_path, *argv):
    code, out, err = run(capsys, "init", *argv)
    path = tmp_path / "upload.toml"
    path.write_text(out, encoding="utf-8")
    return code, out, err, path


def test_init_settles_what_the_names_leave_open_and_validates_as_the_flags(
    capsys, write_csv, tmp_path
):
    path = write_csv(hm_purchases(), "transactions.csv")
    code, text, err, config = init(capsys, tmp_path, path, "--event", "Product ordered")
    assert (code, err) == (0, "")
    assert (
        '"productId" = "article_id"  # suggested from its values: 50 distinct numbers in 60 '
        "rows, e.g. '600000001'" in text
    )
    assert '"userId" = "customer_id"  # found by its name, e.g.' in text
    by_config = planned(capsys, tmp_path, "config", path, "--config", config)
    by_flags = planned(
        capsys, tmp_path, "flags", path, "--event", "Product ordered",
        "--map", "productId=article_id", "--map", "timestamp=t_dat",
    )  # fmt: skip
    assert by_config == by_flags
    assert by_config[0] == 0 and by_config[1]


def test_every_flag_given_to_init_is_in_the_config(capsys, write_csv, tmp_path):
    rows = "\n".join(
        f"02/05/2024 10:{i:02d};basket;SKU{i};c{i % 3};9,{i:02d};{i % 4 + 1}" for i in range(20)
    )
    path = write_csv(f"when;what;article;client;amount;n\n{rows}\n")
    flags = [
        "--event-column", "what", "--event-map", "basket=Added to cart",
        "--map", "productId=article", "--map", "userId=client", "--map", "timestamp=when",
        "--map", "data.value:number=amount", "--map", "data.quantity=n",
        "--timestamp-format", "%d/%m/%Y %H:%M", "--timezone", "Europe/London",
        "--decimal", ",", "--delimiter", ";", "--duplicates", "keep", "--batch-size", "7",
    ]  # fmt: skip
    code, text, _, config = init(capsys, tmp_path, path, *flags)
    assert code == 0
    assert '"basket" = "Added to cart"' in text
    assert '"data.value:number" = "amount"' in text
    assert build_options(str(config)) == build_options(None, **_as_options(flags))
    by_config = planned(capsys, tmp_path, "config", path, "--config", config)
    assert by_config == planned(capsys, tmp_path, "flags", path, *flags)
    assert by_config[1].count(b"\n") == 3  # 20 events, 7 a request


def _as_options(flags):
    names = {"--event-column": "event_column", "--timestamp-format": "timestamp_format",
             "--timezone": "timezone", "--decimal": "decimal", "--delimiter": "delimiter",
             "--duplicates": "duplicates", "--batch-size": "batch_size"}  # fmt: skip
    options: dict = {"mapping": [], "event_map": []}
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        if flag == "--map":
            options["mapping"].append(value)
        elif flag == "--event-map":
            options["event_map"].append(value)
        else:
            options[names[flag]] = int(value) if flag == "--batch-size" else value
    return options


def test_every_key_the_config_reads_is_written(capsys, write_csv, tmp_path):
    path = write_csv(hm_purchases(), "transactions.csv")
    _, text, _, config = init(capsys, tmp_path, path, "--event", "Product viewed")
    keys = {"map" if f.name == "mapping" else f.name for f in fields(Options)}
    written = set(re.findall(r"^(?:# )?\[?([a-z_]+)\]? ?=?", text, flags=re.MULTILINE))
    assert keys <= written, keys - written
    with open(config, "rb") as fh:
        tomllib.load(fh)  # what is commented out is commented out whole


def test_what_is_left_to_choose_is_marked_and_the_exit_code_says_so(capsys, write_csv, tmp_path):
    path = write_csv(hm_purchases(), "transactions.csv")
    code, text, err, config = init(capsys, tmp_path, path)
    assert code == 1
    assert err == "uploader: init: the config is written, but choose event in it (see CHOOSE)\n"
    assert '# event = "Product ordered"  # CHOOSE: no column holds event names' in text
    build_options(str(config))  # valid TOML with valid keys, the event still to choose


def test_repeated_order_rows_in_the_rows_looked_at_ask_for_the_choice(capsys, write_csv, tmp_path):
    line = "2024-05-02T10:00:00Z,S1,u1\n"
    path = write_csv("ts,sku,user_id\n" + line * 3 + "2024-05-02T10:00:01Z,S2,u1\n")
    code, text, err, _ = init(capsys, tmp_path, path, "--event", "Product ordered")
    assert code == 1
    assert "choose duplicates" in err
    assert (
        "# CHOOSE: in the first 4 rows, 2 'Product ordered' rows repeat an earlier row exactly"
        in text
    )
