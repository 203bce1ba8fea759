"""The runs of a KeySet: sorted keys in memory and in files, merged in bounded memory."""

from __future__ import annotations

import numpy as np

from uploader.keyruns import NO_VALUE, SPILL_BLOCK, Run, SpilledRun, search

ABSENT = NO_VALUE - 1


def sorted_run(rng: np.random.Generator, n: int, with_values: bool) -> Run:
    hi = np.sort(rng.integers(0, 2**63, n, dtype=np.uint64))
    lo = rng.integers(0, 2**16, n, dtype=np.uint16)
    values = rng.integers(0, 10**9, n, dtype=np.int64) if with_values else None
    return Run(hi, lo, values)


def test_runs_spilled_to_files_and_merged_keep_every_key_and_value(tmp_path):
    rng = np.random.default_rng(7)
    runs = [sorted_run(rng, n, True) for n in (3 * SPILL_BLOCK + 5, 1, 2 * SPILL_BLOCK)]
    spilled = [SpilledRun.write(str(tmp_path), run) for run in runs]
    merged = SpilledRun.merge(str(tmp_path), spilled, with_values=True)
    for run in spilled:
        run.close(delete=True)

    hi = np.concatenate([r.hi for r in runs])
    lo = np.concatenate([r.lo for r in runs])
    values = np.concatenate([r.values for r in runs if r.values is not None])
    stored = list(merged.chunks(1000))
    stored_hi = np.concatenate([c[0] for c in stored])
    assert merged.count == len(hi) and (np.diff(stored_hi.astype(np.float64)) >= 0).all()

    order = np.argsort(hi, kind="stable")
    found = np.full(len(hi), ABSENT, dtype=np.int64)
    merged.lookup(hi[order], lo[order], found)
    assert (found == values[order]).all()
    # Keys that are not there: another lo, or a hi outside the run.
    missing = np.full(2, ABSENT, dtype=np.int64)
    merged.lookup(
        np.array([hi.min(), 2**64 - 1], np.uint64),
        np.array([lo[hi.argmin()] ^ 1, 0], np.uint16),
        missing,
    )
    assert (missing == ABSENT).all()
    merged.close(delete=True)
    assert not list(tmp_path.iterdir())


def test_increment_changes_the_values_in_the_file_in_place(tmp_path):
    rng = np.random.default_rng(8)
    run = sorted_run(rng, 2 * SPILL_BLOCK + 3, True)
    spilled = SpilledRun.write(str(tmp_path), run)
    pick = np.array([0, SPILL_BLOCK, len(run) - 1])
    found = spilled.increment(run.hi[pick], run.lo[pick], np.array([1, 2, 3], np.int64))
    assert found.all()
    values = np.full(3, ABSENT, dtype=np.int64)
    spilled.lookup(run.hi[pick], run.lo[pick], values)
    assert run.values is not None
    assert (values == run.values[pick] + [1, 2, 3]).all()
    spilled.close(delete=True)


def test_search_in_memory_answers_the_value_or_absent():
    run = Run(np.array([1, 5, 5, 9], np.uint64), np.array([0, 1, 2, 0], np.uint16), None)
    result = np.full(4, ABSENT, dtype=np.int64)
    search(run.hi, run.lo, run.values, np.array([1, 5, 5, 9], np.uint64),
           np.array([0, 2, 3, 1], np.uint16), result)  # fmt: skip
    assert result.tolist() == [NO_VALUE, NO_VALUE, ABSENT, ABSENT]
