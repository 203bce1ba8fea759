"""Item JSON, column-wise: each event's `{"eventId":…,"userId":…,"data":{…}}` built with
Arrow string kernels from the mapped columns, as the Track Events API expects it: absent
fields are left out (never null), numbers are written as in the id text, `data` last with
`productId` first.

Arrow's element-wise join costs about the same whatever its number of parts, so a whole
item is one join of literals and columns (`fuse`); only a column with blanks in the chunk
costs a pass of its own, so that its key is left out where its value is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from uploader.contract import PRODUCT_FIELD as PRODUCT
from uploader.contract import TOP_LEVEL_FIELDS

# Order of top-level keys in an item (data last), for readable request bodies.
_TOP_ORDER = {name: i for i, name in enumerate(TOP_LEVEL_FIELDS)}
# Bytes under this one are control characters, which a JSON string literal must escape.
_FIRST_PRINTABLE = 0x20

# (literal before, values or None, literal after): one part of a fused text.
Segment = tuple[str, pa.Array | None, str]


def item_json(
    ids: pa.Array, fields: Mapping[str, pa.Array], texts: Mapping[str, pa.Array]
) -> pa.Array:
    """`,{...}` per row (binary, with a leading comma: see events.py). `fields` are the sent
    values by path (`data.productId` among them, never null), `texts` the same values as
    event_ids.value_texts writes them."""
    segments = [(_ID_HEAD, json_text(ids), '"'), *_segments(fields, texts)]
    return pc.cast(fuse(segments), pa.binary())


def item_sizes(
    id_sizes: np.ndarray, fields: Mapping[str, pa.Array], texts: Mapping[str, pa.Array]
) -> np.ndarray:
    """The byte length of each row's item_json, leading comma included, without building
    it: `id_sizes` are the lengths of the eventIds as JSON text (36 for a derived one)."""
    sizes = np.asarray(id_sizes, dtype=np.int64) + len(_ID_HEAD) + 1
    for before, values, after in _segments(fields, texts):
        if values is None:
            sizes += len(before) + len(after)
            continue
        present = values.is_valid().to_numpy(zero_copy_only=False)
        lengths = pc.fill_null(pc.binary_length(values), 0).to_numpy(zero_copy_only=False)
        sizes += lengths + present * (len(before) + len(after))
    return sizes


def _segments(fields: Mapping[str, pa.Array], texts: Mapping[str, pa.Array]) -> list[Segment]:
    """The item after its eventId: top-level members, then data with productId first."""
    top = sorted((p for p in fields if not p.startswith("data.")), key=lambda p: _TOP_ORDER[p])
    data = sorted((p for p in fields if p.startswith("data.")), key=lambda p: p != PRODUCT)
    if not data or data[0] != PRODUCT:
        raise ValueError("an item needs data.productId")

    def member(path: str, head: str) -> Segment:
        key = f'{head}"{path.removeprefix("data.")}":'
        array = fields[path]
        if pa.types.is_string(array.type):
            return (f'{key}"', json_text(array), '"')
        return (key, texts[path], "")

    return [
        *(member(p, ",") for p in top),
        member(PRODUCT, ',"data":{'),
        *(member(p, ",") for p in data[1:]),
        ("}}", None, ""),
    ]


_ID_HEAD = ',{"eventId":"'


def fuse(segments: Sequence[Segment]) -> pa.Array:
    """One text per row: the segments in order, each left out (literals included) on the
    rows where its values are null. One kernel pass, plus one per column with nulls."""
    parts: list[pa.Array | str] = []

    def literal(text: str) -> None:
        if parts and isinstance(parts[-1], str):
            parts[-1] += text
        elif text:
            parts.append(text)

    for before, values, after in segments:
        if values is None:
            literal(before + after)
        elif values.null_count == 0:
            literal(before)
            parts.append(values)
            literal(after)
        else:
            parts.append(pc.binary_join_element_wise(before, values, after, ""))
    arrays = [p if isinstance(p, pa.Array) else pa.scalar(p) for p in parts]
    if not any(isinstance(p, str) for p in parts):
        # Arrow leaves out the rows where every part is null (null_handling="skip"); a
        # literal, even an empty one, is never null and keeps one text per row.
        arrays.append(pa.scalar(""))
    joined = pc.binary_join_element_wise(*arrays, "", null_handling="skip")
    assert isinstance(joined, pa.Array), "a fused text needs a column"
    return joined


def json_text(array: pa.Array) -> pa.Array:
    """Each text as the inside of a JSON string literal (escaped, without the quotes)."""
    if not contains_bytes(array, b'"\\', below=_FIRST_PRINTABLE):
        return array
    out = pc.replace_substring(array, "\\", "\\\\")
    out = pc.replace_substring(out, '"', '\\"')
    control = pc.fill_null(pc.match_substring_regex(array, r"[\x00-\x1f]"), False)
    if not pc.any(control).as_py():
        return out
    # Control characters need \uXXXX escapes: rare, so those values go through orjson.
    patched = out.to_pylist()
    for i in np.flatnonzero(control.to_numpy(zero_copy_only=False)).tolist():
        patched[i] = orjson.dumps(array[i].as_py()).decode()[1:-1]
    return pa.array(patched, pa.string())


def contains_bytes(array: pa.Array, values: bytes, below: int = 0) -> bool:
    """Whether any text of a string array holds one of `values`, or a byte under `below`:
    one scan of the data buffer, no pass per row."""
    if not len(array) or array.null_count == len(array):
        return False
    start = array.offset
    offsets = np.frombuffer(array.buffers()[1], np.int32)[start : start + len(array) + 1]
    data = np.frombuffer(array.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    found = data < below if below else np.zeros(len(data), dtype=bool)
    for value in values:
        found |= data == value
    return bool(found.any())
