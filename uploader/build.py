"""The per-chunk stages: read → map → validate → ids → items, one chunk at a time.

Nothing here keeps state from one chunk to the next (run-wide checks come after, in
pipeline.settle_chunks), so these stages can run in another process (workers.py): a
`Built` is what crosses, without the chunk's table.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from uploader.batches import body_sizes_alone
from uploader.catalog import Catalog, CatalogInfo
from uploader.convert import MappedChunk, event_names, map_columns
from uploader.event_ids import Candidates, derive_events
from uploader.mapping import MappingPlan
from uploader.options import Options
from uploader.read import CHUNK_ROWS, Chunk, DoneRows, Source, read_frames
from uploader.reasons import Reason
from uploader.repeats import Counted, count_candidates
from uploader.validation import RowReject, reject_row, validate_rows


@dataclass(frozen=True)
class Built:
    """One chunk after the per-chunk stages, and what they counted."""

    file: str
    rows_read: int  # rows of the input, malformed lines included
    bytes_done: int | None  # how far into the input (as stored) reading has come
    skipped: int = 0  # rows not read: a Parquet row group an earlier run finished
    candidates: Candidates | None = None
    rejects: list[RowReject] = field(default_factory=list)
    ignored: int = 0  # rows left out by --event-map X=ignore
    normalised: int = 0  # ids written as whole floats
    timestamps: dict[str, int] = field(default_factory=dict)  # how they were read
    unknown_products: int = 0  # not in --catalog, sent anyway (--catalog-mode warn)
    catalog: CatalogInfo | None = None  # the catalogue checked against


def build_chunks(
    sources: Sequence[Source],
    options: Options,
    plans: dict[str, MappingPlan],
    *,
    chunk_rows: int = CHUNK_ROWS,
    done: DoneRows | None = None,
    count_first: bool = False,
) -> Iterator[Built | Counted]:
    """Every chunk of every source through the per-chunk stages. With `done`, Parquet row
    groups dealt with in an earlier run are skipped, not re-derived. With `count_first`,
    every chunk is first counted (repeats.py: every row, whatever `done` says), then built."""
    # Loaded here, once per run, in the process that builds: see catalog.py.
    catalog = Catalog(options) if options.catalog is not None else None
    try:
        if count_first:
            yield from _counted(sources, options, plans, catalog, chunk_rows)
        for chunk in read_frames(sources, chunk_rows, done):
            if chunk.skipped:
                yield Built(chunk.source.name, 0, chunk.bytes_done, skipped=chunk.skipped)
                continue
            yield _build(chunk, plans[chunk.source.name], options, catalog)
    finally:
        if catalog is not None:
            catalog.close()


def _counted(
    sources: Sequence[Source],
    options: Options,
    plans: dict[str, MappingPlan],
    catalog: Catalog | None,
    chunk_rows: int,
) -> Iterator[Counted]:
    """The first pass: every row counted (repeats.py). The guard's order rows are gathered
    across the chunks of a source and built `chunk_rows` at a time: a build costs per call
    as well as per row, and a few orders a chunk would pay the call for little."""
    orders_only = options.duplicates is None  # the guard: see _orders
    pending: list[Chunk] = []

    def flush() -> Iterator[Counted]:
        if not pending:
            return
        first = pending[0]
        chunk = replace(
            first,
            table=pa.concat_tables([c.table for c in pending]),
            rows=pa.concat_arrays([c.rows for c in pending]),
            bytes_done=pending[-1].bytes_done,
            malformed=(),  # not counted: only the candidates are
        )
        pending.clear()
        built = _build(chunk, plans[first.source.name], options, catalog)
        if built.candidates is not None:
            yield count_candidates(built.candidates, adding_up=options.duplicates == "quantity")

    for whole in read_frames(sources, chunk_rows):
        chunk = _orders(whole, plans[whole.source.name]) if orders_only else whole
        if chunk is None:
            continue
        if pending and (
            pending[0].source is not chunk.source or pending[0].table.schema != chunk.table.schema
        ):
            yield from flush()
        pending.append(chunk)
        if sum(c.table.num_rows for c in pending) >= chunk_rows:
            yield from flush()
    yield from flush()


def _orders(chunk: Chunk, plan: MappingPlan) -> Chunk | None:
    """The chunk's 'Product ordered' rows, or None: all the order guard counts (repeats.py),
    so that its pass over the input costs little more than reading where orders are few.
    A row's content key does not depend on the other rows of its chunk."""
    names = event_names(chunk, plan)
    is_order = pc.fill_null(pc.equal(names, "Product ordered"), False)
    if not pc.any(is_order).as_py():
        return None
    if pc.all(is_order).as_py():
        return chunk
    return replace(
        chunk, table=chunk.table.filter(is_order), rows=chunk.rows.filter(is_order), malformed=()
    )


def _build(chunk: Chunk, plan: MappingPlan, options: Options, catalog: Catalog | None) -> Built:
    name = chunk.source.name
    mapped = map_columns(chunk, plan, options)
    valid, rejects = validate_rows(mapped, plan)
    unknown = 0
    if catalog is not None and len(valid):
        valid, unknown = _check_catalog(catalog, mapped, valid, rejects)
    line_keys = options.duplicates == "quantity"
    candidates = derive_events(
        mapped, valid, keep_canonical=options.keep_duplicates, line_keys=line_keys
    )
    candidates = _drop_oversize(candidates, mapped, options.max_request_bytes, rejects)
    rejects.extend(
        RowReject(
            name,
            row,
            "row",
            Reason(f"malformed CSV line: {why}", "malformed CSV line (wrong number of fields)"),
        )
        for row, why in chunk.malformed
    )
    return Built(
        name,
        chunk.table.num_rows + len(chunk.malformed),
        chunk.bytes_done,
        candidates=candidates,
        rejects=rejects,
        ignored=len(mapped.ignored),
        normalised=mapped.normalised_ids,
        timestamps=dict(mapped.timestamp_methods),
        unknown_products=unknown,
        catalog=None if catalog is None else catalog.info,
    )


def _check_catalog(
    catalog: Catalog, mapped: MappedChunk, valid: np.ndarray, rejects: list[RowReject]
) -> tuple[np.ndarray, int]:
    """(the rows still valid, how many unknown products were let through): products not in
    the catalogue are rejected, or with --catalog-mode warn counted."""
    products = mapped.values["data.productId"].take(pa.array(valid, pa.int64()))
    unknown = catalog.unknown(products)
    if not unknown.any():
        return valid, 0
    if catalog.mode == "warn":
        return valid, int(unknown.sum())
    for k in np.flatnonzero(unknown).tolist():
        reason = catalog.reason(str(products[k].as_py()))
        rejects.append(reject_row(mapped, int(valid[k]), "data.productId", reason))
    return valid[~unknown], 0


def _drop_oversize(
    candidates: Candidates, mapped: MappedChunk, max_bytes: int, rejects: list[RowReject]
) -> Candidates:
    sizes = body_sizes_alone(candidates.item_sizes(), candidates.codes)
    too_large = sizes > max_bytes
    if not too_large.any():
        return candidates
    chunk_rows = mapped.chunk.rows.to_numpy(zero_copy_only=False)
    for k in np.flatnonzero(too_large).tolist():
        reason = Reason(
            f"the event alone makes a {int(sizes[k])}-byte request, above --max-request-bytes "
            f"{max_bytes}; shorten its values or raise the limit",
            "too large for one request (see --max-request-bytes)",
        )
        index = int(np.searchsorted(chunk_rows, candidates.rows[k]))
        rejects.append(reject_row(mapped, index, "row", reason))
    return candidates.take(np.flatnonzero(~too_large))
