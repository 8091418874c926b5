#!/usr/bin/env bash
# The reliability catalogue (docs/ARCHITECTURE.md §6) for checkpoints, signals and faults, on 2-3
# ranks, every run under a timeout. Usage: reliability_test.sh LATENT_BINARY MPIEXEC
set -u
latent=$1
mpiexec=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
source "$(dirname "$0")/lib.sh"
no_temporaries() { ! find "$dir" -name '*.tmp-*' | grep -q .; }
blobs_dataset "$dir/data"

args=(fit gmm --data "$dir/data" --n-components 4 --covariance-type full --tol 1e-10 --max-iter 40 --n-init 2
      --init-params random --block-rows 100)
run 1 "${args[@]}" --output "$dir/ref.h5"
[ "$code" -eq 0 ] || { echo "FAIL reference fit: $out"; exit 1; }

# 1. A stop signal on one rank: every rank checkpoints the same iteration and exits 75;
#    resuming on another number of ranks gives the same bits.
LATENT_FAULT=rank=1,iteration=5,kind=signal run 2 "${args[@]}" --output "$dir/m1.h5" --checkpoint-dir "$dir/c1"
if [ "$code" -eq 75 ] && echo "$out" | grep -q "stopped by a signal after iteration 5" && [ ! -e "$dir/m1.h5" ]; then
  pass "signal: exit 75 with a checkpoint"; else fail "signal: exit $code: $out"; fi
run 3 "${args[@]}" --output "$dir/m1.h5" --checkpoint-dir "$dir/c1" --resume
if [ "$code" -eq 0 ] && echo "$out" | grep -q "resuming from" && same_model "$dir/ref.h5" "$dir/m1.h5"; then
  pass "resume on 3 ranks: bitwise identical"; else fail "resume after signal: exit $code: $out"; fi

# 2. k-means too.
kargs=(fit kmeans --data "$dir/data" --n-clusters 5 --init random --tol 0 --max-iter 25 --n-init 2 --block-rows 100)
run 1 "${kargs[@]}" --output "$dir/kref.h5"
LATENT_FAULT=rank=0,iteration=9,kind=signal run 2 "${kargs[@]}" --output "$dir/k.h5" --checkpoint-dir "$dir/ck"
run 1 "${kargs[@]}" --output "$dir/k.h5" --checkpoint-dir "$dir/ck" --resume
if [ "$code" -eq 0 ] && h5diff -q "$dir/kref.h5" "$dir/k.h5" /cluster_centers && h5diff -q "$dir/kref.h5" "$dir/k.h5" /history/objective; then
  pass "k-means resume: bitwise identical"; else fail "k-means resume: exit $code: $out"; fi

# 3. A damaged newest checkpoint: fall back to the previous one, say why, same bits.
LATENT_FAULT=rank=0,iteration=8,kind=signal run 2 "${args[@]}" --output "$dir/m3.h5" --checkpoint-dir "$dir/c3"
newest=$(ls "$dir/c3"/ckpt-*.h5 | sort | tail -n 1)
head -c 3000 "$newest" > "$newest.cut" && mv "$newest.cut" "$newest"
cp -r "$dir/c3" "$dir/c3-copy"
run 2 "${args[@]}" --output "$dir/m3.h5" --checkpoint-dir "$dir/c3" --resume
if [ "$code" -eq 0 ] && echo "$out" | grep -q "is damaged" && echo "$out" | grep -q "falling back" && same_model "$dir/ref.h5" "$dir/m3.h5"; then
  pass "damaged checkpoint: fallback, bitwise identical"; else fail "damaged checkpoint: exit $code: $out"; fi

# 4. Resume with a changed configuration or changed data: refused, naming the change.
changed=("${args[@]}")
changed[5]=5  # --n-components 4 -> 5
run 2 "${changed[@]}" --output "$dir/m4.h5" --checkpoint-dir "$dir/c3-copy" --resume
if [ "$code" -eq 64 ] && echo "$out" | grep -q "configuration changed (n_components: 4 -> 5)"; then
  pass "changed configuration refused"; else fail "changed configuration: exit $code: $out"; fi
cp -r "$dir/data" "$dir/data2" && cp "$dir/data/part-00000.h5" "$dir/data2/part-00009.h5"
run 2 "${args[@]/$dir\/data/$dir/data2}" --output "$dir/m4.h5" --checkpoint-dir "$dir/c3-copy" --resume
if [ "$code" -eq 64 ] && echo "$out" | grep -q "input data changed"; then
  pass "changed data refused"; else fail "changed data: exit $code: $out"; fi

# 5. An exception on one rank only: all ranks exit together, same code, rank named.
LATENT_FAULT=rank=1,iteration=3,kind=throw run 2 "${args[@]}" --output "$dir/m5.h5"
if [ "$code" -eq 1 ] && echo "$out" | grep -q "rank 1: injected fault" && [ ! -e "$dir/m5.h5" ]; then
  pass "exception on one rank"; else fail "exception on one rank: exit $code: $out"; fi

# 6. NaN objective: stops within that step, exit 70, hint, last good checkpoint untouched.
LATENT_FAULT=rank=0,iteration=6,kind=nan run 2 "${args[@]}" --output "$dir/m6.h5" --checkpoint-dir "$dir/c6"
newest=$(ls "$dir/c6"/ckpt-*.h5 | sort | tail -n 1)
if [ "$code" -eq 70 ] && echo "$out" | grep -q "NaN/Inf at iteration 6" && [ "$(basename "$newest")" = ckpt-000-000005.h5 ] \
   && "$latent" info "$newest" > /dev/null 2>&1 && [ ! -e "$dir/m6.h5" ]; then
  pass "NaN objective"; else fail "NaN objective: exit $code, newest $newest: $out"; fi

# 7. Disk full while checkpointing: exit 74, earlier checkpoints valid, no temporaries; resume works.
LATENT_FAULT=rank=0,iteration=4,kind=enospc run 2 "${args[@]}" --output "$dir/m7.h5" --checkpoint-dir "$dir/c7"
if [ "$code" -eq 74 ] && echo "$out" | grep -q "No space left on device" && no_temporaries \
   && [ "$(ls "$dir/c7" | sort | tail -n 1)" = ckpt-000-000003.h5 ]; then
  pass "disk full"; else fail "disk full: exit $code: $(ls "$dir/c7"): $out"; fi
run 2 "${args[@]}" --output "$dir/m7.h5" --checkpoint-dir "$dir/c7" --resume
same_model "$dir/ref.h5" "$dir/m7.h5" && pass "resume after disk full" || fail "resume after disk full: $out"

# 8. A rank killed (SIGKILL): the job ends non-zero promptly; resume continues.
start=$(date +%s)
LATENT_FAULT=rank=1,iteration=4,kind=kill run 2 "${args[@]}" --output "$dir/m8.h5" --checkpoint-dir "$dir/c8"
if [ "$code" -ne 0 ] && [ "$code" -ne 124 ] && [ $(( $(date +%s) - start )) -lt 60 ]; then
  pass "rank killed: job ended with $code"; else fail "rank killed: exit $code: $out"; fi
run 2 "${args[@]}" --output "$dir/m8.h5" --checkpoint-dir "$dir/c8" --resume
same_model "$dir/ref.h5" "$dir/m8.h5" && pass "resume after kill" || fail "resume after kill: $out"

# 9. A hung rank: the watchdog aborts the job (exit 124) and names that rank, never the
#    rank that waits for it in a collective.
blames_only_rank1() {
  echo "$out" | grep -q "watchdog: rank 1 " && ! echo "$out" | grep -q "watchdog: rank 0 \|ranks 0"
}
LATENT_FAULT=rank=1,iteration=3,kind=hang run 2 "${args[@]}" --output "$dir/m9.h5" --watchdog-seconds 3
if [ "$code" -eq 124 ] && blames_only_rank1 && [ ! -e "$dir/m9.h5" ]; then
  pass "hung rank: watchdog aborted (exit 124) naming rank 1"; else fail "hung rank: exit $code: $out"; fi
# 9b. A stopped rank (SIGSTOP: its watchdog stops with it, as on a frozen node): rank 0, which
#     waits for it in a collective, names rank 1 (it used to say "rank 0 made no progress").
LATENT_FAULT=rank=1,iteration=3,kind=stop run 2 "${args[@]}" --output "$dir/m9b.h5" --watchdog-seconds 3
if [ "$code" -eq 124 ] && echo "$out" | grep -q "watchdog: rank 1 stalled: it has not reached collective #[0-9]* (allreduce), where rank 0 has waited for it" \
   && blames_only_rank1 && [ ! -e "$dir/m9b.h5" ]; then
  pass "stopped rank: watchdog aborted (exit 124) naming rank 1"; else fail "stopped rank: exit $code: $out"; fi
LATENT_FAULT=rank=2,iteration=3,kind=stop run 3 "${args[@]}" --output "$dir/m9c.h5" --watchdog-seconds 3
if [ "$code" -eq 124 ] && echo "$out" | grep -q "watchdog: rank 2 stalled" && ! echo "$out" | grep -q "watchdog: ranks\? [01] "; then
  pass "stopped rank of 3: rank 2 named"; else fail "stopped rank of 3: exit $code: $out"; fi

# 10. Two jobs writing the same output: the second refuses; the first is unaffected.
LATENT_FAULT=rank=0,iteration=2,kind=hang "$latent" "${args[@]}" --output "$dir/m10.h5" --watchdog-seconds 60 > /dev/null 2>&1 &
first=$!
sleep 2
run 1 "${args[@]}" --output "$dir/m10.h5"
if [ "$code" -eq 73 ] && echo "$out" | grep -q "another job is writing it"; then
  pass "second writer refused"; else fail "second writer: exit $code: $out"; fi
kill -9 "$first" 2>/dev/null; wait "$first" 2>/dev/null
run 1 "${args[@]}" --output "$dir/m10.h5"
[ "$code" -eq 0 ] && pass "lock released when its holder died" || fail "stale lock: exit $code: $out"

# 11. Unwritable checkpoint directory: refused before training.
run 2 "${args[@]}" --output "$dir/m11.h5" --checkpoint-dir /proc/latent-no/ckpt
[ "$code" -eq 73 ] && pass "unwritable checkpoint directory" || fail "unwritable checkpoint directory: exit $code: $out"

# 12. Dimensions that cannot fit in memory: refused in seconds, with an estimate in GiB.
start=$(date +%s)
run 2 "${args[@]}" --output "$dir/m12.h5" --memory-budget 0.001
if [ "$code" -eq 64 ] && echo "$out" | grep -q "needs about .* GiB per rank" && [ $(( $(date +%s) - start )) -lt 20 ]; then
  pass "memory refused up front"; else fail "memory: exit $code: $out"; fi

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
