"""Repeated identical rows, counted before anything is sent.

Two runs need to know how often each event repeats before they send the first one:
`--duplicates quantity`, whose event is sent once with data.quantity the total of its rows
(its id is derived from that total, so the total must be known when the first row is
sent), and an upload whose 'Product ordered' rows may repeat while no choice was made (it
must stop before sending anything). Both read the input twice: a first pass counts the
content key of every event (`Counted` per chunk, `RepeatCounts` run-wide, in the bounded
memory of a KeySet with values), then the normal pass sends.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from uploader.contract import EVENT_NAMES
from uploader.duplicates import KeySet, first_occurrences, split_key_blob
from uploader.errors import InputError
from uploader.event_ids import Candidates, canonical_texts, sha256_each, value_texts

QUANTITY = "data.quantity"
ORDERED = EVENT_NAMES.index("Product ordered")
_NAMES = pa.array(EVENT_NAMES, pa.string())


@dataclass(frozen=True)
class Counted:
    """One chunk's events for the first pass."""

    file: str
    keys: np.ndarray  # content keys (KEY_DTYPE); b"" for a given eventId
    codes: np.ndarray  # int8 event names
    rows: np.ndarray  # int64
    amounts: np.ndarray  # int64: the row's data.quantity, 1 where it has none


def count_candidates(candidates: Candidates, *, adding_up: bool = False) -> Counted:
    """One chunk's counts. `adding_up` (--duplicates quantity): quantities typed as numbers
    must be whole, since they will be added up."""
    quantity = candidates.fields.get(QUANTITY)
    if adding_up and quantity is not None and pa.types.is_floating(quantity.type):
        _require_whole(quantity, candidates)
    amounts = _amounts(candidates)
    return Counted(candidates.file, candidates.keys(), candidates.codes, candidates.rows, amounts)


def _amounts(candidates: Candidates) -> np.ndarray:
    quantity = candidates.fields.get(QUANTITY)
    if quantity is None:
        return np.ones(len(candidates), dtype=np.int64)
    if pa.types.is_floating(quantity.type):  # data.quantity:number, whole when adding up
        quantity = pc.cast(pc.floor(quantity), pa.int64(), safe=False)
    elif not pa.types.is_integer(quantity.type):
        return np.ones(len(candidates), dtype=np.int64)
    return np.asarray(pc.fill_null(quantity, 1).to_numpy(zero_copy_only=False), np.int64)


def _require_whole(quantity: pa.Array, candidates: Candidates) -> None:
    """Quantities typed as numbers are added up only when they are whole."""
    broken = pc.fill_null(pc.not_equal(quantity, pc.floor(quantity)), False)
    if pc.any(broken).as_py():
        i = pc.index(broken, True).as_py()
        raise InputError(
            f"{candidates.file} row {int(candidates.rows[i])}: --duplicates quantity adds up "
            f"data.quantity, and {quantity[i].as_py()!r} is not a whole number; map it as "
            "data.quantity:integer, or choose --duplicates collapse or keep"
        )


class RepeatCounts:
    """Run-wide: the total of every content key, and how many rows of each event name
    repeat an earlier one."""

    def __init__(self) -> None:
        self.totals = KeySet(with_values=True)
        self.rows = np.zeros(len(EVENT_NAMES), dtype=np.int64)
        self.distinct = np.zeros(len(EVENT_NAMES), dtype=np.int64)
        self.example: tuple[str, int] | None = None  # an order row that repeats one

    def add(self, counted: Counted) -> None:
        derived = counted.keys != b""
        keys, codes = counted.keys[derived], counted.codes[derived]
        hi, lo = split_key_blob(keys.tobytes())
        if not len(hi):
            return
        first = first_occurrences(hi, lo)
        sums = np.zeros(len(hi), dtype=np.int64)
        np.add.at(sums, first, counted.amounts[derived])
        own = np.flatnonzero(first == np.arange(len(hi)))
        seen = self.totals.increment(hi[own], lo[own], sums[own])
        self.totals.add(hi[own[~seen]], lo[own[~seen]], sums[own[~seen]])
        new = np.zeros(len(hi), dtype=bool)
        new[own[~seen]] = True
        self.rows += np.bincount(codes, minlength=len(EVENT_NAMES))
        self.distinct += np.bincount(codes[new], minlength=len(EVENT_NAMES))
        repeated_orders = np.flatnonzero(~new & (codes == ORDERED))
        if self.example is None and len(repeated_orders):
            self.example = (counted.file, int(counted.rows[derived][repeated_orders[0]]))

    @property
    def repeated_orders(self) -> int:
        return int(self.rows[ORDERED] - self.distinct[ORDERED])

    def apply(self, candidates: Candidates) -> Candidates:
        """The events of --duplicates quantity as they are sent: data.quantity is the total
        of their line (the number of its rows, or the sum of their quantities) and the id is
        derived from that. A line of one row is sent as it is, with the id it has under
        every choice."""
        if not len(candidates):
            return candidates
        hi, lo = split_key_blob(candidates.keys().tobytes())
        totals = self.totals.lookup(hi, lo)
        more = totals > _amounts(candidates)  # a line of several rows (absent keys: -2)
        given = candidates.fields.get(QUANTITY)
        # The quantity's own type: a line of one row keeps its value as it is (a whole
        # number typed as a number, 2.0, is written and hashed as 2 either way).
        kind = pa.float64() if given is not None and pa.types.is_floating(given.type) else None
        if given is None or not (kind or pa.types.is_integer(given.type)):
            base, blank = np.zeros(len(totals), np.int64), np.ones(len(totals), dtype=bool)
        else:
            numbers = pc.fill_null(given, 0).to_numpy(zero_copy_only=False)
            base = np.asarray(numbers, np.float64 if kind else np.int64)
            blank = np.asarray(given.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        values = pa.array(
            np.where(more, totals.astype(base.dtype), base), kind or pa.int64(), mask=~more & blank
        )
        fields = {**candidates.fields, QUANTITY: values}
        texts = {**candidates.texts, QUANTITY: value_texts(values)}
        names = _NAMES.take(pa.array(candidates.codes.astype(np.int32)))
        # The line key left the quantity out: the id is the hash of what is sent.
        digests = sha256_each(canonical_texts(names, texts))[:, :16]
        return replace(candidates, fields=fields, texts=texts, digests=digests)

    def refuse_unchosen(self) -> None:
        """An upload whose 'Product ordered' rows repeat, with no choice made: stop before
        sending anything, saying what each choice would send."""
        if self.repeated_orders:
            raise InputError(
                unchosen_message(self.repeated_orders, int(self.distinct[ORDERED]), self.example)
            )

    def close(self) -> None:
        self.totals.close()


def unchosen_message(repeats: int, distinct: int, example: tuple[str, int] | None) -> str:
    """Why an upload of repeated orders with no choice sent nothing, and each choice's figure."""
    return (
        f"{repeats:,} 'Product ordered' rows repeat an earlier row exactly"
        f"{_example(example)}; nothing was sent. An unattended upload does not guess "
        f'what they mean: choose with --duplicates (or duplicates = "…" in the config): '
        f"collapse sends {distinct:,} order events, each repeated line once; keep sends "
        f"{distinct + repeats:,}, one per row (ids numbered by occurrence); quantity sends "
        "each repeated line once with data.quantity the number of its rows (the sum of "
        "their quantities)"
    )


def _example(example: tuple[str, int] | None) -> str:
    return "" if example is None else f" (e.g. {example[0]} row {example[1]:,})"
