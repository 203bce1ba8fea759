"""Repeated identical rows are a decision: collapse, keep or quantity; and 'Product ordered'
rows that repeat stop an upload until the choice is made."""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson
import pytest

from tests.id_oracle import canonical_text, event_id
from uploader.cli import main
from uploader.errors import ConfigError
from uploader.options import build_options
from uploader.sandbox import Sandbox

ORDERS = """order_date,order_id,sku,customer_id,quantity,price
2024-05-02 10:00,A1,S1,c1,1,9.5
2024-05-02 10:00,A1,S1,c1,1,9.5
2024-05-02 10:00,A1,S2,c1,2,3
2024-05-02 10:00,A1,S2,c1,3,3
2024-05-03 11:00,A2,S1,c2,1,9.5
2024-05-02 10:00,A1,S1,c1,1,9.5
"""
# The same without a quantity column: the number of identical rows becomes the quantity.
VIEWS = """ts,sku,user_id
2024-05-02T10:00:00Z,S1,u1
2024-05-02T10:00:00Z,S1,u1
2024-05-02T10:00:01Z,S2,u1
2024-05-02T10:00:00Z,S1,u1
"""


def items(run_plan, paths, chunk_rows=65_536, **options):
    _, batches, _ = run_plan(paths, chunk_rows=chunk_rows, **options)
    return [
        item
        for batch in batches
        for group in orjson.loads(batch.body)["track"]
        for item in group["payload"]
    ]


def oracle_id(name, item):
    """The id docs/event-ids.md derives from an item as sent."""
    flat = [(k, v) for k, v in item.items() if k not in ("eventId", "data")]
    flat += [(f"data.{k}", v) for k, v in item["data"].items()]
    return event_id(canonical_text(name, flat))


@pytest.mark.parametrize("chunk_rows", [1, 2, 65_536])
def test_quantity_adds_up_a_lines_rows_and_derives_the_id_from_the_total(
    write_csv, run_plan, chunk_rows
):
    path = write_csv(ORDERS)
    sent = items(run_plan, [path], chunk_rows, event="Product ordered", duplicates="quantity")
    assert [(i["data"]["productId"], i["data"]["quantity"]) for i in sent] == [
        ("S1", 3),  # three identical rows
        ("S2", 5),  # two rows identical but for their quantities: 2 + 3
        ("S1", 1),  # one row: as it is
    ]
    assert [i["eventId"] for i in sent] == [oracle_id("Product ordered", i) for i in sent]


def test_without_a_quantity_column_the_number_of_rows_becomes_it(write_csv, tmp_path, run_plan):
    first = write_csv(VIEWS, "a.csv")
    second = write_csv("ts,sku,user_id\n2024-05-02T10:00:00Z,S1,u1\n", "b.csv")
    sent = items(run_plan, [first, second], event="Product viewed", duplicates="quantity")
    assert [(i["data"]["productId"], i["data"].get("quantity")) for i in sent] == [
        ("S1", 4),  # across files: one upload, one count
        ("S2", None),  # a line of one row gets no quantity
    ]
    assert [i["eventId"] for i in sent] == [oracle_id("Product viewed", i) for i in sent]


def test_quantities_typed_as_numbers_add_up_when_whole(tmp_path, run_plan):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from uploader.errors import InputError

    def sent(quantities, field):
        path = tmp_path / f"orders-{len(list(tmp_path.iterdir()))}.parquet"
        pq.write_table(pa.table({
            "ts": ["2024-05-02T10:00:00Z"] * 3, "sku": ["S1", "S1", "S2"], "user_id": ["u1"] * 3,
            "quantity": pa.array(quantities, pa.float64()),
        }), path)  # fmt: skip
        mapping = {field: "quantity"}
        return items(
            run_plan, [path], event="Product ordered", duplicates="quantity", mapping=mapping
        )

    as_numbers = sent([2.0, 3.0, 4.0], "data.quantity:number")
    assert [(i["data"]["productId"], i["data"]["quantity"]) for i in as_numbers] == [
        ("S1", 5),  # 2.0 + 3.0, not the number of rows
        ("S2", 4),
    ]
    assert as_numbers == sent([2.0, 3.0, 4.0], "data.quantity")  # the default: integers
    with pytest.raises(InputError, match=r"row 2: --duplicates quantity adds up data.quantity, "
                       r"and 2.5 is not a whole number"):  # fmt: skip
        sent([2.0, 2.5, 4.0], "data.quantity:number")


def test_a_row_that_does_not_repeat_has_the_same_id_under_every_choice(write_csv, run_plan):
    path = write_csv(ORDERS)
    ids = {
        choice: {
            (i["data"]["productId"], i["data"]["orderId"], i["data"]["quantity"]): i["eventId"]
            for i in items(run_plan, [path], event="Product ordered", duplicates=choice)
        }
        for choice in ("collapse", "keep", "quantity")
    }
    alone = ("S1", "A2", 1)
    assert ids["collapse"][alone] == ids["keep"][alone] == ids["quantity"][alone]
    assert len(set(ids["collapse"]) & set(ids["quantity"])) == 1


def test_keep_duplicates_is_duplicates_keep(write_csv, run_plan):
    path = write_csv(ORDERS)
    keep = items(run_plan, [path], event="Product ordered", duplicates="keep")
    assert keep == items(run_plan, [path], event="Product ordered", keep_duplicates=True)
    assert len(keep) == 6
    assert build_options(None, keep_duplicates=True).duplicates == "keep"
    assert build_options(None, duplicates="keep").keep_duplicates is True


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"duplicates": "sum"}, "--duplicates 'sum': use one of collapse, keep, quantity"),
        (
            {"duplicates": "quantity", "keep_duplicates": True},
            "--keep-duplicates is --duplicates keep; it cannot go with --duplicates quantity: "
            "keep one",
        ),
    ],
)
def test_a_bad_choice_is_named(given, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        build_options(None, **given)


def test_a_flag_replaces_the_files_keep_duplicates(write_toml):
    path = write_toml("keep_duplicates = true\n")
    assert build_options(path, duplicates="quantity").duplicates == "quantity"
    assert build_options(path).duplicates == "keep"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_the_plan_says_prominently_that_orders_repeat(capsys, write_csv, tmp_path):
    path = write_csv(ORDERS, "orders.csv")
    report = tmp_path / "report.json"
    code, out, _ = run(
        capsys, "validate", path, "--event", "Product ordered", "-q", "--report", report
    )
    assert code == 0
    assert out.endswith(
        "\n\nCHOICE NEEDED: 2 'Product ordered' rows repeat an earlier row exactly "
        "(e.g. orders.csv row 2).\n"
        "  --duplicates collapse   sends 4 order events: each repeated line once\n"
        "  --duplicates keep       sends 6: one per row, ids numbered by occurrence\n"
        "  --duplicates quantity   sends each repeated line once, with data.quantity the "
        "number of its rows (the sum of their quantities)\n"
        'uploader upload sends nothing until one is chosen (the flag, or duplicates = "…" in '
        "the config).\n"
    )
    figures = json.loads(report.read_text())["duplicates"]
    assert figures == {
        "choice": None,
        "repeats_by_event": {"Product ordered": 2},
        "choice_needed": True,
    }


def test_repeats_of_other_events_collapse_without_a_question(capsys, write_csv):
    code, out, _ = run(capsys, "validate", write_csv(VIEWS), "--event", "Product viewed", "-q")
    assert code == 0
    assert "Exact duplicate rows collapsed into one event: 2" in out
    assert "CHOICE NEEDED" not in out


@pytest.mark.parametrize("worker", ["0", "1"])
def test_an_upload_of_repeated_orders_sends_nothing_until_the_choice_is_made(
    capsys, write_csv, tmp_path, monkeypatch, worker
):
    monkeypatch.setenv("UPLOADER_WORKER", worker)
    path = write_csv(ORDERS, "orders.csv")
    with Sandbox() as sb:
        target = ["--base-url", sb.base_url, "--org", sb.org, "--project", sb.project,
                  "--source", sb.source, "--state", tmp_path / "state.db", "-q"]  # fmt: skip
        monkeypatch.setenv("INTEMPT_API_KEY", sb.api_key)
        code, out, err = run(capsys, "upload", path, "--event", "Product ordered", *target)
        assert (code, out) == (2, "")
        assert err == (
            f"uploader: error: 2 'Product ordered' rows repeat an earlier row exactly (e.g. "
            f"{path} row 2); nothing was sent. An unattended upload does not guess what they "
            'mean: choose with --duplicates (or duplicates = "…" in the config): collapse '
            "sends 4 order events, each repeated line once; keep sends 6, one per row (ids "
            "numbered by occurrence); quantity sends each repeated line once with "
            "data.quantity the number of its rows (the sum of their quantities)\n"
        )
        assert sb.stats()["requests"] == 0
        code, out, _ = run(
            capsys, "upload", path, "--event", "Product ordered", "--duplicates", "quantity",
            *target,
        )  # fmt: skip
        assert code == 0
        stored = [e["item"]["data"]["quantity"] for e in sb.events(limit=10)]
    assert sorted(stored) == [1, 3, 5]


def test_a_run_that_counts_first_builds_in_the_worker_as_here(tmp_path, write_csv, capsys):
    path = write_csv(ORDERS * 3)
    bodies = []
    for worker in ("0", "1"):
        os.environ["UPLOADER_WORKER"] = worker
        out = tmp_path / worker
        code = main(["upload", str(path), "--event", "Product ordered", "--duplicates",
                     "quantity", "--dry-run", "--out", str(out), "-q"])  # fmt: skip
        assert code == 1  # the header lines repeated in the middle are rejects
        bodies.append((out / "requests.jsonl").read_bytes())
    assert bodies[0] == bodies[1] and bodies[0]


def test_the_python_api_takes_the_choice_as_a_keyword(write_csv):
    import uploader

    result = uploader.validate(
        str(write_csv(ORDERS)), event="Product ordered", duplicates="quantity", progress=False
    )
    assert (result.events_valid, result.duplicates_collapsed) == (3, 3)
    assert not result.choice_needed
    unchosen = uploader.validate(str(write_csv(ORDERS)), event="Product ordered", progress=False)
    assert unchosen.choice_needed and unchosen.repeats_by_event == {"Product ordered": 2}


def test_a_notebook_shows_the_choice_needed(write_csv):
    import uploader

    unchosen = uploader.validate(str(write_csv(ORDERS)), event="Product ordered", progress=False)
    assert "<strong>Choice needed:</strong> 2 'Product ordered' rows" in unchosen._repr_html_()


MIXED = """ts,event,sku,user_id
2024-05-02T10:00:00Z,view,S1,u1
2024-05-02T10:00:00Z,view,S1,u1
2024-05-02T10:00:00Z,purchase,S1,u1
2024-05-02T10:00:01Z,cart,S2,u1
2024-05-02T10:00:00Z,purchase,S1,u1
2024-05-02T10:00:00Z,purchase,S2,u1
2024-05-02T10:00:00Z,purchase,S1,u1
"""


def guard_refusal(paths: list[Path], chunk_rows: int) -> str:
    """What the order guard of an upload of `paths` says as it stops the run."""
    from uploader.errors import InputError
    from uploader.inputs import resolve_sources
    from uploader.pipeline import Tally, prepare_events

    sources = resolve_sources([str(p) for p in paths])
    events = prepare_events(
        sources, build_options(None), Tally(), chunk_rows=chunk_rows, guard_orders=True
    )
    with pytest.raises(InputError) as raised:
        next(events)
    return str(raised.value)


@pytest.mark.parametrize("chunk_rows", [1, 3, 65_536])
def test_the_order_guard_counts_the_order_rows_of_mixed_events(write_csv, chunk_rows):
    from uploader.inputs import resolve_sources
    from uploader.pipeline import Tally, prepare_events

    path = write_csv(MIXED, "mixed.csv")
    refusal = guard_refusal([path], chunk_rows)
    # Rows 5 and 7 repeat row 3; the repeated view (row 2) asks nothing.
    assert refusal.startswith(
        f"2 'Product ordered' rows repeat an earlier row exactly (e.g. {path} row 5)"
    )
    assert "collapse sends 2 order events" in refusal
    assert "keep sends 4" in refusal
    # Without repeated orders the same guard lets every event through, views collapsed.
    lines = MIXED.splitlines(keepends=True)
    sources = resolve_sources([write_csv("".join(lines[:5] + lines[6:7]), "fine.csv")])
    tally = Tally()
    sent = list(prepare_events(sources, build_options(None), tally, chunk_rows=chunk_rows,
                               guard_orders=True))  # fmt: skip
    assert sum(len(p.events) for p in sent) == tally.events_valid == 4
    assert tally.duplicates_collapsed == 1


@pytest.mark.parametrize("chunk_rows", [2, 65_536])
def test_the_guard_gathers_order_rows_per_file_and_names_the_repeating_one(write_csv, chunk_rows):
    first = write_csv(MIXED.split("2024-05-02T10:00:00Z,purchase,S1,u1\n")[0]
                      + "2024-05-02T10:00:00Z,purchase,S9,u1\n", "first.csv")  # fmt: skip
    second = write_csv(
        "event_time,event_type,product_id,user_id\n"
        "2024-05-02T10:00:02Z,view,S9,u1\n"
        "2024-05-02T10:00:00Z,purchase,S9,u1\n",
        "second.csv",
    )
    # The order of first.csv (its row 3) is repeated by row 2 of second.csv.
    assert guard_refusal([first, second], chunk_rows).startswith(
        f"1 'Product ordered' rows repeat an earlier row exactly (e.g. {second} row 2)"
    )


def test_a_dry_run_of_repeated_orders_exits_as_the_upload_would(capsys, write_csv, tmp_path):
    path = write_csv(ORDERS, "orders.csv")
    out_dir = tmp_path / "dry"
    code, out, err = run(capsys, "upload", path, "--event", "Product ordered", "--dry-run",
                         "--out", out_dir, "-q")  # fmt: skip
    assert code == 2
    assert "CHOICE NEEDED: 2 'Product ordered' rows" in out
    assert "the upload would send nothing until --duplicates is chosen" in err
    code, _, _ = run(capsys, "upload", path, "--event", "Product ordered", "--dry-run",
                     "--out", out_dir, "--duplicates", "keep", "-q")  # fmt: skip
    assert code == 0
