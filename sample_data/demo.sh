#!/usr/bin/env bash
# `make demo`: the main job on the bundled sample data. $1 is the venv's bin folder.
set -uo pipefail
BIN=${1:-.venv/bin}
cd "$(dirname "$0")/.."
OUT=out/demo
mkdir -p "$OUT"

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "$2"; }

step "Validate the sample interactions" \
     "uploader validate sample_data/interactions.csv"
"$BIN/uploader" validate sample_data/interactions.csv

step "Validate an orders table (no event column) " \
     "uploader validate sample_data/orders.csv --event 'Product ordered'"
"$BIN/uploader" validate sample_data/orders.csv --event "Product ordered"

step "Validate realistic bad rows: each rejected with its reason (exit code 1)" \
     "uploader validate sample_data/bad_rows.csv --map eventId=event_id --rejects $OUT/rejects.csv"
"$BIN/uploader" validate sample_data/bad_rows.csv --map eventId=event_id --rejects "$OUT/rejects.csv"
echo "(exit code $?)"

step "Dry run: write the exact request bodies" \
     "uploader upload sample_data/interactions.parquet --dry-run --out $OUT/dry-run"
"$BIN/uploader" upload sample_data/interactions.parquet --dry-run --out "$OUT/dry-run" || exit $?
head -c 300 "$OUT/dry-run/requests.jsonl"; echo " …"
