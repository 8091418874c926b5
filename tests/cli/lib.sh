# Shared helpers for the shell tests (sourced). Expects $latent, $mpiexec and $dir.
failures=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

run() {  # run RANKS ARGS...: sets code and out; a timeout counts as a hang
  local ranks=$1; shift
  out=$(timeout 120 "$mpiexec" -n "$ranks" --oversubscribe "$latent" "$@" 2>&1)
  code=$?
  if [ "$code" -eq 124 ] && ! echo "$out" | grep -q watchdog; then fail "hang (timeout): $*"; fi
}

same_model() {  # same_model A B: parameters and history bitwise equal
  for d in /weights /means /covariances /history/objective; do
    h5diff -q "$1" "$2" "$d" > /dev/null 2>&1 || return 1
  done
}

# blobs_dataset DIR: 3000 rows from three blobs in 4 dimensions, as 3 shards.
blobs_dataset() {
  awk 'BEGIN { srand(7); for (i = 0; i < 3000; i++) { c = i % 3; line = "";
    for (j = 0; j < 4; j++) { z = sqrt(-2 * log(rand())) * cos(6.2831853 * rand());
      line = line (j ? "," : "") (3 * c * (j % 2 ? 1 : -1) + z) } print line } }' > "$1.csv"
  "$latent" import dense --format csv --input "$1.csv" --output "$1" --rows-per-shard 1000 > /dev/null 2>&1 \
    || { echo "FAIL import"; exit 1; }
}
