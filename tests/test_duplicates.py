from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from uploader.duplicates import NO_VALUE, KeySet, first_occurrences

# Few distinct hi values, so that equal-hi keys with different lo are exercised too.
keys = st.tuples(st.integers(0, 5), st.integers(0, 3))


@settings(max_examples=150, deadline=None)
@given(
    batches=st.lists(st.lists(keys, max_size=40), max_size=12),
    memory_keys=st.sampled_from([3, 10, 1000]),
    with_values=st.booleans(),
)
def test_keyset_behaves_like_a_dict_in_memory_and_spilled(batches, memory_keys, with_values):
    # Few distinct hi values and a tiny memory budget: runs merge, spill to files, and the
    # files merge (max_spilled=2), with equal-hi keys across all of them.
    model: dict[tuple[int, int], int] = {}
    seen = KeySet(with_values=with_values, memory_keys=memory_keys, max_spilled=2)
    counter = 0
    try:
        for batch in batches:
            hi = np.array([k[0] for k in batch], dtype=np.uint64)
            lo = np.array([k[1] for k in batch], dtype=np.uint16)
            found = seen.lookup(hi, lo)
            value = (lambda k: model[k]) if with_values else (lambda k: NO_VALUE)
            assert found.tolist() == [value(k) if k in model else NO_VALUE - 1 for k in batch]
            first = first_occurrences(hi, lo)
            assert first.tolist() == [batch.index(k) for k in batch]
            new = [i for i, k in enumerate(batch) if k not in model and batch.index(k) == i]
            values = np.arange(counter, counter + len(new), dtype=np.int64)
            counter += len(new)
            idx = np.array(new, dtype=np.int64)
            seen.add(hi[idx], lo[idx], values)
            for i, v in zip(new, values.tolist(), strict=True):
                model[batch[i]] = v
            assert seen.in_memory <= max(memory_keys, 0) or not seen.spilled
        assert len(seen) == len(model)
    finally:
        seen.close()


def test_a_large_set_spills_to_disk_and_keeps_its_memory_bounded(tmp_path):
    rng = np.random.default_rng(7)
    seen = KeySet(memory_keys=50_000, spill_dir=str(tmp_path), max_spilled=3)
    kept_hi, kept_lo = [], []
    for _ in range(40):
        hi = rng.integers(0, 2**63, 10_000, dtype=np.uint64)
        lo = rng.integers(0, 2**16, 10_000, dtype=np.uint16)
        assert (seen.lookup(hi, lo) == NO_VALUE - 1).all()
        seen.add(hi, lo)
        kept_hi.append(hi[:100])
        kept_lo.append(lo[:100])
        assert seen.in_memory <= 50_000
    assert len(seen) == 400_000 and seen.spilled
    assert len(seen.spilled) <= 3  # merged when there were more
    again = seen.lookup(np.concatenate(kept_hi), np.concatenate(kept_lo))
    assert (again == NO_VALUE).all()  # every key added is found again, on disk or not
    assert list(tmp_path.iterdir())  # the spill files live in the folder asked for
    seen.close()
    assert not list(tmp_path.iterdir())


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


@settings(max_examples=150, deadline=None)
@given(
    batches=st.lists(st.lists(st.tuples(keys, st.integers(1, 5)), max_size=40), max_size=12),
    memory_keys=st.sampled_from([3, 10, 1000]),
)
def test_increment_counts_like_a_counter_in_memory_and_spilled(batches, memory_keys):
    # The first pass of --duplicates quantity: a total per key, kept in bounded memory.
    model: dict[tuple[int, int], int] = {}
    totals = KeySet(with_values=True, memory_keys=memory_keys, max_spilled=2)
    try:
        for batch in batches:
            summed: dict[tuple[int, int], int] = {}
            for key, amount in batch:
                summed[key] = summed.get(key, 0) + amount
            hi = np.array([k[0] for k in summed], dtype=np.uint64)
            lo = np.array([k[1] for k in summed], dtype=np.uint16)
            amounts = np.array(list(summed.values()), dtype=np.int64)
            found = totals.increment(hi, lo, amounts)
            assert found.tolist() == [k in model for k in summed]
            totals.add(hi[~found], lo[~found], amounts[~found])
            for key, amount in summed.items():
                model[key] = model.get(key, 0) + amount
        if model:
            hi = np.array([k[0] for k in model], dtype=np.uint64)
            lo = np.array([k[1] for k in model], dtype=np.uint16)
            assert totals.lookup(hi, lo).tolist() == list(model.values())
    finally:
        totals.close()
