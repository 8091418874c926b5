#!/usr/bin/env bash
# Bounded chaos: a fit on 3 oversubscribed ranks is killed or signalled at random
# iterations several times and resumed each time; the final model equals the
# uninterrupted one bitwise. Then a long fit must not leak file descriptors or memory.
# Usage: soak_test.sh LATENT_BINARY MPIEXEC [SEED]
set -u
latent=$1
mpiexec=$2
RANDOM=${3:-42}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
source "$(dirname "$0")/lib.sh"
blobs_dataset "$dir/data"

args=(fit gmm --data "$dir/data" --n-components 4 --covariance-type diag --tol 0 --max-iter 80 --n-init 2
      --init-params random --block-rows 100 --checkpoint-every 3)
run 1 "${args[@]}" --output "$dir/ref.h5"
[ "$code" -eq 0 ] || { echo "FAIL reference fit: $out"; exit 1; }

# Faults land in the second initialisation too (iterations restart at 1 there), so
# iterations are drawn within a run; the checkpoint cadence (every 3) makes a kill lose
# up to 2 iterations of work, which the resume redoes.
iteration=0
for round in 1 2 3 4 5 6; do
  iteration=$(( iteration + 4 + RANDOM % 9 ))
  [ "$iteration" -lt 80 ] || iteration=$(( RANDOM % 20 + 1 ))
  kind=$([ $(( RANDOM % 2 )) -eq 0 ] && echo kill || echo signal)
  rank=$(( RANDOM % 3 ))
  LATENT_FAULT="rank=$rank,iteration=$iteration,kind=$kind" run 3 "${args[@]}" --output "$dir/m.h5" \
    --checkpoint-dir "$dir/ckpt" --resume
  echo "round $round: $kind on rank $rank at iteration $iteration -> exit $code"
  case "$code" in
    0|75|137|143) ;;
    *) fail "round $round: unexpected exit $code: $out" ;;
  esac
  [ -e "$dir/m.h5" ] && break
done
run 3 "${args[@]}" --output "$dir/m.h5" --checkpoint-dir "$dir/ckpt" --resume
if [ -e "$dir/m.h5" ] && same_model "$dir/ref.h5" "$dir/m.h5"; then
  pass "chaos rounds: final model bitwise identical"; else fail "chaos: exit $code: $out"; fi

# Resource stability over a long fit: descriptors constant, RSS within 10 %. The fit is
# open-ended and stopped by a real SIGTERM, which must checkpoint and exit 75.
"$latent" fit gmm --data "$dir/data" --output "$dir/long.h5" --n-components 4 --covariance-type full --tol 0 \
  --max-iter 100000000 --block-rows 100 --checkpoint-dir "$dir/long-ckpt" --checkpoint-every 50 > "$dir/long.log" 2>&1 &
pid=$!
# Five samples each: the fewest and most descriptors and the largest RSS. A shard or a
# checkpoint open at one instant adds a descriptor, which is not a leak; a leak grows by
# one per pass or per checkpoint, hundreds over these seconds.
sample() {
  local lo=1000000 hi=0 rss=0 f r
  for _ in 1 2 3 4 5; do
    f=$(ls /proc/$pid/fd 2>/dev/null | wc -l); r=$(awk '/VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null)
    [ "$f" -lt "$lo" ] && lo=$f; [ "$f" -gt "$hi" ] && hi=$f; [ "${r:-0}" -gt "$rss" ] && rss=${r:-0}
    sleep 0.1
  done
  echo "$lo $hi $rss"
}
sleep 1.5; early=$(sample)
sleep 4; late=$(sample)
kill -TERM "$pid"
wait "$pid"
stopped=$?
read -r fd0 fd0_max rss0 <<< "$early"
read -r fd1 fd1_max rss1 <<< "$late"
echo "descriptors $fd0-$fd0_max -> $fd1-$fd1_max, RSS $rss0 -> $rss1 KiB"
if [ "$rss1" -gt 0 ] && [ "$fd1" -le "$fd0_max" ] && [ "$rss1" -le $(( rss0 * 110 / 100 )) ]; then
  pass "no descriptor or memory growth"; else fail "resource growth: $early -> $late"; fi
if [ "$stopped" -eq 75 ] && grep -q "stopped by a signal" "$dir/long.log" && ls "$dir/long-ckpt"/ckpt-*.h5 > /dev/null 2>&1; then
  pass "real SIGTERM: checkpoint and exit 75"; else fail "real SIGTERM: exit $stopped: $(tail -n 3 "$dir/long.log")"; fi

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
