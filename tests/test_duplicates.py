from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import uploader.duplicates as duplicates
from uploader.duplicates import NO_VALUE, KeySet, first_occurrences

# Few distinct hi values, so that equal-hi keys with different lo are exercised too.
keys = st.tuples(st.integers(0, 5), st.integers(0, 3))


@given(st.lists(st.lists(keys, max_size=40), max_size=12))
def test_keyset_behaves_like_a_dict_across_runs(batches):
    original = duplicates.RUN_KEYS
    duplicates.RUN_KEYS = 7  # many small runs, merged and not
    try:
        model: dict[tuple[int, int], int] = {}
        seen = KeySet(with_values=True)
        counter = 0
        for batch in batches:
            hi = np.array([k[0] for k in batch], dtype=np.uint64)
            lo = np.array([k[1] for k in batch], dtype=np.uint32)
            found = seen.lookup(hi, lo)
            assert found.tolist() == [model.get(k, NO_VALUE - 1) for k in batch]
            first = first_occurrences(hi, lo)
            assert first.tolist() == [batch.index(k) for k in batch]
            new = [i for i, k in enumerate(batch) if k not in model and batch.index(k) == i]
            values = np.arange(counter, counter + len(new), dtype=np.int64)
            counter += len(new)
            idx = np.array(new, dtype=np.int64)
            seen.add(hi[idx], lo[idx], values)
            for i, v in zip(new, values.tolist(), strict=True):
                model[batch[i]] = v
        assert len(seen) == len(model)
    finally:
        duplicates.RUN_KEYS = original


def test_given_ids_repeated_across_chunks_and_files_point_at_the_first_use(write_csv, run_plan):
    text = "ts,event,sku,user_id,event_id\n" + "".join(
        f"2024-05-02T14:38:2{i}Z,view,S{i},u1,{eid}\n" for i, eid in enumerate(["a", "b", "c"])
    )
    a = write_csv(text, "a.csv")
    b = write_csv(text.replace(",c\n", ",a\n"), "b.csv")
    tally, _, rejects = run_plan([a, b], chunk_rows=1, mapping=["eventId=event_id"])
    assert tally.events_valid == 3
    assert [(r.file, r.row) for r in rejects] == [(str(b), 1), (str(b), 2), (str(b), 3)]
    assert all(f"also used by {a} row" in r.reason for r in rejects)
    assert "row 1" in rejects[2].reason
