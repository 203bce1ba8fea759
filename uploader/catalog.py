"""The catalogue check: every productId sent must be in a catalogue export (`--catalog`).

The API stores events of unknown products and they then power nothing, so a row whose
product is not in the catalogue is rejected ("unknown product"), or with `--catalog-mode
warn` only counted. Ids are compared as text after the productId's own clean-up
(convert._ids: trimmed, 17850.0 -> 17850), as hashed keys in a KeySet: 10 bytes a product in
memory, on disk past its budget, so a catalogue of millions of products fits.

The check runs in the per-chunk stage, where the row's original columns are at hand for its
reject; the catalogue is loaded once per run by the process that builds the chunks (the
worker process, when there is one: nothing but its path crosses to it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from uploader.convert import ids_as_text
from uploader.diagnosis import profile_columns, rank_candidates
from uploader.duplicates import NO_VALUE, KeySet, first_occurrences, split_key_blob
from uploader.errors import InputError
from uploader.event_ids import sha256_each
from uploader.mapping import TARGETS, normalise_name
from uploader.options import Options
from uploader.read import Source, read_frames, read_sample, resolve_sources
from uploader.reasons import Reason

_PRODUCT_ALIASES = next(t.aliases for t in TARGETS if t.path == "data.productId")


@dataclass(frozen=True)
class CatalogInfo:
    """What the plan says about the catalogue."""

    name: str
    column: str
    products: int
    mode: str


def split_catalog(given: str) -> tuple[str, str | None]:
    """FILE_OR_URI[:COLUMN]: the part after the last colon is a column when the whole is not
    a file and that part names no path (s3://bucket/x.csv has no column)."""
    path, sep, column = given.rpartition(":")
    if not sep or not path or "/" in column or os.path.exists(given):
        return given, None
    return path, column


class Catalog:
    """The products of a catalogue export, as hashed keys."""

    def __init__(self, options: Options) -> None:
        assert options.catalog is not None
        path, column = split_catalog(options.catalog)
        flag = f"--catalog {options.catalog}"
        sources = resolve_sources([path], encoding=options.encoding, delimiter=options.delimiter)
        self.column = column or _product_column(sources[0], options, flag)
        for source in sources:
            if self.column not in source.columns:
                listed = ", ".join(map(repr, source.columns))
                raise InputError(
                    f"{source.name}: {flag}: no column {self.column!r}; the columns are {listed}"
                )
        self.mode = options.catalog_mode
        self.name = path
        self.keys = KeySet()
        for chunk in read_frames(sources):
            ids = ids_as_text(chunk.table.column(self.column).combine_chunks(), options.decimal)
            hi, lo = _keys(ids)
            if not len(hi):
                continue
            new = (first_occurrences(hi, lo) == np.arange(len(hi))) & (
                self.keys.lookup(hi, lo) < NO_VALUE
            )
            self.keys.add(hi[new], lo[new])

    @property
    def info(self) -> CatalogInfo:
        return CatalogInfo(self.name, self.column, len(self.keys), self.mode)

    def unknown(self, product_ids: pa.Array) -> np.ndarray:
        """Which of these productIds (text, as mapped) are not in the catalogue; a blank one
        is not "unknown" (it is rejected as blank)."""
        unknown = np.zeros(len(product_ids), dtype=bool)
        present = np.flatnonzero(product_ids.is_valid().to_numpy(zero_copy_only=False))
        if len(present):
            hi, lo = _keys(product_ids.take(pa.array(present)))
            unknown[present] = self.keys.lookup(hi, lo) < NO_VALUE
        return unknown

    def reason(self, product_id: str) -> Reason:
        return Reason(
            f"unknown product: productId {product_id!r} is not in the catalogue {self.name} "
            f"(column {self.column!r}); fix the id, add the product to the catalogue, or give "
            "--catalog-mode warn to send it anyway",
            "unknown product (not in --catalog)",
        )

    def close(self) -> None:
        self.keys.close()


def _keys(ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    present = ids.filter(ids.is_valid()) if ids.null_count else ids
    if not len(present):
        return split_key_blob(b"")
    digests = sha256_each(present.cast(pa.string()))
    return split_key_blob(np.ascontiguousarray(digests[:, :10]).tobytes())


def _product_column(source: Source, options: Options, flag: str) -> str:
    """The catalogue's product id column, found as a productId column is: by name, else by
    its values."""
    named = [c for alias in _PRODUCT_ALIASES for c in source.columns if normalise_name(c) == alias]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise InputError(
            f"{flag}: the product id could come from any of the columns "
            f"{', '.join(map(repr, named))}; choose one with {flag}:COLUMN"
        )
    found = rank_candidates("productId", profile_columns(read_sample(source), options), "{}")
    if found:
        return found[0].column
    raise InputError(
        f"{flag}: no product id column found in {source.name} (looked for product_id, sku, "
        f"item_id… and at the values); give {flag}:COLUMN. The columns are "
        f"{', '.join(map(repr, source.columns))}"
    )
