#!/usr/bin/env bash
# Bad input on one rank of two: every rank exits non-zero with the same code, the message
# names rank, file, dataset and row, no model is written, and nothing hangs.
# Usage: mpi_bad_input.sh LATENT_BINARY MPIEXEC
set -u
latent=$1
mpiexec=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# Two CSV inputs become shards; the NaN sits in the second (read by rank 1).
python_free_csv() {
  local n=$1 bad=$2
  for ((i = 0; i < n; i++)); do
    if [ "$i" -eq "$bad" ]; then echo "1.0,NaN,3.0"; else echo "$((i % 7)).5,$((i % 5)).25,$((i % 3)).0"; fi
  done
}
python_free_csv 200 -1 > "$dir/a.csv"
python_free_csv 200 150 > "$dir/b.csv"
"$latent" import dense --format csv --input "$dir/a.csv" --output "$dir/a" > /dev/null 2>&1 || fail "import a"
"$latent" import dense --format csv --input "$dir/a.csv" "$dir/b.csv" --output "$dir/bad" --rows-per-shard 200 > /dev/null 2>&1 || fail "import bad"

run() {  # run RANKS ARGS...: sets code and out
  local ranks=$1; shift
  out=$(timeout 120 "$mpiexec" -n "$ranks" --oversubscribe --tag-output "$latent" "$@" 2>&1)
  code=$?
  [ "$code" -ne 124 ] || fail "timed out (hang): $*"
}

run 2 fit gmm --data "$dir/bad" --output "$dir/m.h5" --n-components 2 --block-rows 50
echo "$out"
[ "$code" -eq 65 ] || fail "expected exit 65 for NaN input, got $code"
echo "$out" | grep -q "rank 1: file $dir/bad/part-00001.h5, dataset /data, row 150, column 1: value is NaN" \
  || fail "message does not name rank, file, dataset, row and column"
[ ! -e "$dir/m.h5" ] || fail "a model file was written"
ls "$dir" | grep -q "tmp-" && fail "temporary files left behind"
# Every rank must exit with the code: mpiexec reports the first non-zero, and both ranks
# print nothing else than the agreed error (rank 0 prints it).
n_errors=$(echo "$out" | grep -c "latent: error")
[ "$n_errors" -eq 1 ] || fail "expected one error line from rank 0, got $n_errors"

# K larger than N, refused up front on every rank.
run 2 fit gmm --data "$dir/a" --output "$dir/m.h5" --n-components 500
[ "$code" -eq 64 ] || fail "expected exit 64 for K > N, got $code"

# Unwritable output directory: refused before training.
run 2 fit gmm --data "$dir/a" --output /proc/latent-cannot-write/m.h5 --n-components 2
[ "$code" -eq 73 ] || fail "expected exit 73 for an unwritable output, got $code"

# A good fit at 2 ranks still works, and predict assembles every rank's rows in order.
run 2 fit gmm --data "$dir/a" --output "$dir/ok.h5" --n-components 2 --block-rows 30
[ "$code" -eq 0 ] || fail "fit failed: $out"
run 2 predict --model "$dir/ok.h5" --data "$dir/a" --output "$dir/p2.h5" --block-rows 30
[ "$code" -eq 0 ] || fail "predict failed: $out"
run 1 predict --model "$dir/ok.h5" --data "$dir/a" --output "$dir/p1.h5" --block-rows 30
cmp <(h5dump -d /labels "$dir/p1.h5" | tail -n +3) <(h5dump -d /labels "$dir/p2.h5" | tail -n +3) \
  || fail "labels predicted at 1 and 2 ranks differ"
echo PASS
