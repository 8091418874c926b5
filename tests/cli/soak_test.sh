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

# Mixed chaos (issue 19): kills, real and injected signals, an injected ENOSPC, a real full
# disk (a small tmpfs the test mounts, where it may) and a second fit on the same checkpoint
# directory, on 2-3 ranks; the final model is the undisturbed one and no temporary, part
# file or lock is left anywhere.
margs=(fit gmm --data "$dir/data" --n-components 4 --covariance-type full --tol 0 --max-iter 60 --block-rows 100
       --checkpoint-every 2)
run 1 "${margs[@]}" --output "$dir/mref.h5"
mkdir -p "$dir/small"
ck="$dir/mixed-ckpt" mounted=0
if mount -t tmpfs -o size=4m tmpfs "$dir/small" 2> /dev/null; then
  mounted=1 ck="$dir/small/ckpt"
  trap 'umount "$dir/small" 2> /dev/null; rm -rf "$dir"' EXIT
fi
# Every kind of fault, in an order drawn from the seed; each lands a few iterations past the
# newest checkpoint, so that every round interrupts the fit.
kinds=(kill signal enospc diskfull concurrent kill signal diskfull)
for i in 7 6 5 4 3 2 1; do j=$(( RANDOM % (i + 1) )); t=${kinds[$i]}; kinds[$i]=${kinds[$j]}; kinds[$j]=$t; done
round=0
for kind in "${kinds[@]}"; do
  round=$(( round + 1 ))
  last=$(ls "$ck" 2> /dev/null | sed -n 's/^ckpt-[0-9]*-0*\([0-9][0-9]*\)\.h5$/\1/p' | sort -n | tail -1)
  ranks=$(( 2 + RANDOM % 2 )) rank=$(( RANDOM % 2 )) iteration=$(( ${last:-0} + 2 + RANDOM % 4 ))
  case $kind in
    kill|signal|enospc)
      # An injected ENOSPC acts where rank 0 writes a checkpoint (every 2 iterations).
      [ "$kind" = enospc ] && rank=0 iteration=$(( iteration + iteration % 2 ))
      LATENT_FAULT="rank=$rank,iteration=$iteration,kind=$kind" run "$ranks" "${margs[@]}" --output "$dir/mm.h5" \
        --checkpoint-dir "$ck" --resume ;;
    diskfull)
      if [ "$mounted" -eq 1 ]; then
        avail=$(df -k --output=avail "$dir/small" | tail -1)
        head -c $(( (avail - 60) * 1024 )) /dev/zero > "$dir/small/fill" 2> /dev/null
      fi
      run "$ranks" "${margs[@]}" --output "$dir/mm.h5" --checkpoint-dir "$ck" --resume
      [ "$mounted" -eq 0 ] || [ "$code" -eq 74 ] || fail "round $round: a full disk: exit $code (expected 74): $out"
      rm -f "$dir/small/fill" ;;
    concurrent)
      LATENT_FAULT="rank=0,iteration=$iteration,kind=hang" "$latent" "${margs[@]}" --output "$dir/mm.h5" \
        --checkpoint-dir "$ck" --resume > /dev/null 2>&1 &
      holder=$!
      for _ in $(seq 100); do [ -e "$ck/.lock" ] && break; sleep 0.05; done
      run "$ranks" "${margs[@]}" --output "$dir/mm2.h5" --checkpoint-dir "$ck" --resume
      [ "$code" -eq 73 ] || [ ! -e "$ck/.lock" ] || fail "round $round: a second fit on a locked --checkpoint-dir: exit $code"
      kill -9 "$holder" 2> /dev/null; wait "$holder" 2> /dev/null
      code=0 ;;
  esac
  echo "mixed round $round: $kind ($ranks ranks, rank $rank, iteration $iteration) -> exit $code"
  case "$code" in
    0|74|75|137|143) ;;
    *) fail "mixed round $round: unexpected exit $code: $out" ;;
  esac
  [ -e "$dir/mm.h5" ] && break
done
[ -e "$dir/mm.h5" ] || run 2 "${margs[@]}" --output "$dir/mm.h5" --checkpoint-dir "$ck" --resume
stray=$(find "$dir" \( -name '*.tmp-*' -o -name '*.part-*' -o -name '*.lock' \) -print)
if [ -e "$dir/mm.h5" ] && same_model "$dir/mref.h5" "$dir/mm.h5" && [ -z "$stray" ]; then
  pass "mixed chaos (full disk on tmpfs: $mounted): final model bitwise identical, no stray file"
else fail "mixed chaos: exit $code, stray: $stray: $out"; fi

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
