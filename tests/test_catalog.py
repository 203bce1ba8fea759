"""--catalog: every productId checked against a catalogue export; unknown products are
rejected, or with --catalog-mode warn counted."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from uploader.catalog import split_catalog
from uploader.cli import main
from uploader.errors import InputError

EVENTS = """ts,event,sku,user_id
2024-05-02T10:00:00Z,view,17850,u1
2024-05-02T10:00:01Z,view, A-2 ,u1
2024-05-02T10:00:02Z,view,GONE,u2
2024-05-02T10:00:03Z,cart,17850.0,u2
"""


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def catalog_csv(write_csv):
    return write_csv("brand,product_id\nacme,17850.0\nacme,A-2\nacme,A-2\n", "catalog.csv")


def test_unknown_products_are_rejected_with_a_reason(run_plan, write_csv, catalog_csv):
    tally, _, rejects = run_plan([write_csv(EVENTS)], catalog=str(catalog_csv))
    assert tally.events_valid == 3  # 17850 and 17850.0 alike, " A-2 " trimmed
    assert [(r.row, r.field, r.reason) for r in rejects] == [
        (
            3,
            "data.productId",
            f"unknown product: productId 'GONE' is not in the catalogue {catalog_csv} (column "
            "'product_id'); fix the id, add the product to the catalogue, or give "
            "--catalog-mode warn to send it anyway",
        )
    ]
    assert rejects[0].original["sku"] == "GONE"
    assert tally.catalog is not None and tally.catalog.products == 2


def test_warn_counts_them_and_the_plan_says_so(capsys, write_csv, catalog_csv):
    code, out, _ = run(
        capsys, "validate", write_csv(EVENTS), "--catalog", catalog_csv, "--catalog-mode", "warn"
    )
    assert code == 0
    assert (
        f"Catalogue: {catalog_csv}, column 'product_id': 2 products; unknown products sent "
        "(--catalog-mode warn)." in out
    )
    assert "Products not in the catalogue, sent anyway (--catalog-mode warn): 1" in out
    assert "Valid events: 4" in out


def test_a_parquet_catalogue_of_float_ids_with_its_column_named(run_plan, write_csv, write_parquet):
    table = pa.table({"id": pa.array([17850.0, 9.0]), "sku_code": pa.array(["x", "y"])})
    path = write_parquet(table, "catalog.parquet")
    tally, _, rejects = run_plan([write_csv(EVENTS)], catalog=f"{path}:id")
    assert tally.events_valid == 2
    assert [r.original["sku"] for r in rejects] == [" A-2 ", "GONE"]


def test_the_products_column_is_found_by_its_values_when_its_name_says_nothing(run_plan, write_csv):
    rows = "\n".join(f"{name},{code}" for name, code in [("red mug", "17850"), ("lamp", "A-2")])
    catalog = write_csv(f"title,ref\n{rows}\n", "catalog.csv")
    tally, _, rejects = run_plan([write_csv(EVENTS)], catalog=str(catalog))
    assert tally.catalog is not None and tally.catalog.column == "ref"
    assert [r.original["sku"] for r in rejects] == ["GONE"]


def test_a_column_that_is_not_there_is_named(run_plan, write_csv, catalog_csv):
    with pytest.raises(InputError) as info:
        run_plan([write_csv(EVENTS)], catalog=f"{catalog_csv}:sku")
    assert str(info.value) == (
        f"{catalog_csv}: --catalog {catalog_csv}:sku: no column 'sku'; the columns are "
        "'brand', 'product_id'"
    )


def test_the_worker_loads_the_catalogue_itself(capsys, tmp_path, write_csv, catalog_csv):
    events = write_csv(EVENTS)
    outputs = []
    for worker in ("0", "1"):
        os.environ["UPLOADER_WORKER"] = worker
        out = tmp_path / worker
        code = main(["upload", str(events), "--catalog", str(catalog_csv), "--dry-run",
                     "--out", str(out), "-q"])  # fmt: skip
        assert code == 1
        outputs.append(((out / "requests.jsonl").read_bytes(), (out / "rejects.csv").read_text()))
    assert outputs[0] == outputs[1]
    assert "unknown product" in outputs[0][1]


@pytest.mark.parametrize(
    ("given", "split"),
    [
        ("catalog.csv", ("catalog.csv", None)),
        ("catalog.csv:product_id", ("catalog.csv", "product_id")),
        ("s3://bucket/catalog.parquet", ("s3://bucket/catalog.parquet", None)),
        ("s3://bucket/catalog.parquet:sku", ("s3://bucket/catalog.parquet", "sku")),
    ],
)
def test_the_column_is_what_follows_the_last_colon(given, split):
    assert split_catalog(given) == split
