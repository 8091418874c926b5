#!/usr/bin/env bash
# Builds the libFuzzer targets (preset fuzz) and runs each for SECONDS (default 60) from
# seeds made here (a valid shard, checkpoint, IDX, NPY and CSV file). Exits non-zero on a
# crash or sanitizer report. Usage: tests/fuzz/run_fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
cmake --preset fuzz > /dev/null
cmake --build --preset fuzz
bin=build/fuzz
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS=detect_leaks=0 OMPI_MCA_hwloc_base_binding_policy=none

# Seeds: real files of each kind.
mkdir -p "$work/seed-shard" "$work/seed-ckpt" "$work/seed-import"
awk 'BEGIN { srand(3); for (i = 0; i < 40; i++) print rand() "," rand() "," rand() }' > "$work/x.csv"
"$bin/src/latent" import dense --format csv --input "$work/x.csv" --output "$work/d" --rows-per-shard 40 > /dev/null 2>&1
cp "$work/d/part-00000.h5" "$work/seed-shard/"
"$bin/src/latent" fit gmm --data "$work/d" --output "$work/m.h5" --n-components 2 --max-iter 2 \
  --checkpoint-dir "$work/ck" > /dev/null 2>&1
cp "$work"/ck/ckpt-*.h5 "$work/seed-ckpt/"
{ printf '\x02'; cat "$work/x.csv"; } > "$work/seed-import/csv"
{ printf '\x00\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x02'; printf 'abcdefgh'; } > "$work/seed-import/idx"
{ printf '\x01\x93NUMPY\x01\x00\x76\x00'; printf "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }%*s\n" 58 '';
  printf '\x00\x00\x00\x00\x00\x00\xf0\x3f%.0s' 1 2 3 4; } > "$work/seed-import/npy"

status=0
for target in fuzz_shard fuzz_checkpoint fuzz_import; do
  case $target in fuzz_shard) seeds=seed-shard ;; fuzz_checkpoint) seeds=seed-ckpt ;; *) seeds=seed-import ;; esac
  mkdir -p "$work/corpus-$target"
  echo "== $target for ${seconds}s"
  if ! (cd "$work" && "$OLDPWD/$bin/tests/$target" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
        -print_final_stats=1 "corpus-$target" "$seeds" > "$target.log" 2>&1); then
    echo "FAIL $target found a crash:"; grep -A30 -E "ERROR|runtime error|deadly signal" "$work/$target.log" | head -60
    ls "$work"/crash-* "$work"/timeout-* 2>/dev/null
    status=1
  else
    grep -E "stat::number_of_executed_units|cov:" "$work/$target.log" | tail -2
  fi
done
exit $status
