#!/usr/bin/env bash
# `make demo`: the main job on the bundled sample data. $1 is the venv's bin folder.
set -uo pipefail
BIN=${1:-.venv/bin}
cd "$(dirname "$0")/.."
OUT=out/demo
rm -rf "$OUT"
mkdir -p "$OUT"

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "$2"; }

step "Validate the sample interactions: the plan, nothing sent" \
     "uploader validate sample_data/interactions.csv"
"$BIN/uploader" validate sample_data/interactions.csv || exit $?

step "Realistic bad rows: each rejected with its reason (exit code 1)" \
     "uploader validate sample_data/bad_rows.csv --map eventId=event_id --rejects $OUT/rejects.csv"
"$BIN/uploader" validate sample_data/bad_rows.csv --map eventId=event_id --rejects "$OUT/rejects.csv"
echo "(exit code $?)"

step "Upload the interactions to the built-in sandbox API" \
     "uploader upload sample_data/interactions.parquet --sandbox --state $OUT/state.db --report $OUT/report.json"
"$BIN/uploader" upload sample_data/interactions.parquet --sandbox \
    --state "$OUT/state.db" --report "$OUT/report.json" || exit $?

step "Backfill an orders table (no event column)" \
     "uploader upload sample_data/orders.csv --event 'Product ordered' --sandbox --state $OUT/state.db"
"$BIN/uploader" upload sample_data/orders.csv --event "Product ordered" --sandbox \
    --state "$OUT/state.db" || exit $?

step "Run the same upload again: nothing is sent twice" \
     "uploader upload sample_data/interactions.parquet --sandbox --state $OUT/state.db"
"$BIN/uploader" upload sample_data/interactions.parquet --sandbox --state "$OUT/state.db" || exit $?

step "What the state file knows" "uploader status --state $OUT/state.db"
"$BIN/uploader" status --state "$OUT/state.db"
