#!/usr/bin/env bash
# VAE end to end through the command line, on 1-3 MPI ranks: data outside [0, 1] for a
# Bernoulli decoder and NaN are refused on every rank naming the row, with no output; a
# diverging learning rate stops with exit 70 and the last checkpoint intact; a network
# that cannot fit in memory is refused up front with an estimate; a fit killed
# mid-epoch resumes on another rank count bitwise identical; score (identical on 1 and 3
# ranks, IWAE >= ELBO), transform, sample and info work.
# Usage: vae_cli_test.sh LATENT MPIEXEC (needs python3-h5py)
set -u
latent=$1 mpiexec=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
source "$(dirname "$0")/lib.sh"
/usr/bin/python3 -c "import h5py" 2> /dev/null || { echo "h5py not available: skipped"; exit 77; }

# 1500 rows of 8 pixel-like features in [0, 1] (two prototypes plus noise), 3 shards.
awk 'BEGIN { srand(3); for (i = 0; i < 1500; i++) { line = "";
  for (j = 0; j < 8; j++) { p = ((i % 2) == (j % 2)) ? 0.85 : 0.1; v = p + 0.1 * (rand() - 0.5);
    line = line (j ? "," : "") v } print line } }' > "$dir/pix.csv"
"$latent" import dense --format csv --input "$dir/pix.csv" --output "$dir/pix" --rows-per-shard 500 > /dev/null 2>&1 ||
  { echo "FAIL import"; exit 1; }
small=(--latent-dim 2 --hidden 16 --batch-size 50 --micro-batch-rows 10)

# ---- bad input.
blobs_dataset "$dir/blobs"
run 2 fit vae --data "$dir/blobs" --output "$dir/blobs.h5" "${small[@]}" --epochs 1
if [ "$code" -eq 65 ] && echo "$out" | grep -q "outside \[0, 1\]" && echo "$out" | grep -q ", row " &&
   [ "$(echo "$out" | grep -c 'error')" -ge 1 ] && [ ! -e "$dir/blobs.h5" ]; then
  pass "Bernoulli decoder refuses data outside [0, 1]: $(echo "$out" | grep error | head -1)"
else
  fail "range check: exit $code: $out"
fi
sed '700s/^[^,]*,/NA,/' "$dir/pix.csv" > "$dir/nan.csv"
"$latent" import dense --format csv --input "$dir/nan.csv" --output "$dir/nan" --rows-per-shard 500 > /dev/null 2>&1
run 3 fit vae --data "$dir/nan" --output "$dir/nan.h5" "${small[@]}" --epochs 1
[ "$code" -eq 65 ] && echo "$out" | grep -q "NaN" && echo "$out" | grep -q "dataset row 699" && [ ! -e "$dir/nan.h5" ] &&
  pass "NaN refused naming the row" || fail "NaN: exit $code: $out"
run 2 fit vae --data "$dir/pix" --output "$dir/huge.h5" --hidden 300000,300000 --epochs 1
[ "$code" -eq 64 ] && echo "$out" | grep -q "GiB" && [ ! -e "$dir/huge.h5" ] &&
  pass "a network too large for memory is refused up front: $(echo "$out" | grep -o 'needs[^;]*' | head -1)" ||
  fail "memory check: exit $code: $out"
run 2 fit vae --data "$dir/pix" --output "$dir/div.h5" "${small[@]}" --learning-rate 1e30 --epochs 3 --checkpoint-dir "$dir/ckdiv"
if [ "$code" -eq 70 ] && echo "$out" | grep -q "NaN/Inf" && [ ! -e "$dir/div.h5" ]; then
  pass "a diverging learning rate stops with exit 70: $(echo "$out" | grep -o 'became[^;]*' | head -1)"
else
  fail "divergence: exit $code: $out"
fi

# ---- a million parameters: the optimiser's loops are split across threads, and the
# weights must still be the same bits with 1 and 2 threads.
for t in 1 2; do
  run 1 fit vae --data "$dir/pix" --output "$dir/wide-t$t.h5" --latent-dim 2 --hidden 1024,512 --batch-size 50 \
    --micro-batch-rows 10 --epochs 1 --threads "$t"
done
h5diff -q "$dir/wide-t1.h5" "$dir/wide-t2.h5" /encoder/0/weight > /dev/null && h5diff -q "$dir/wide-t1.h5" "$dir/wide-t2.h5" /decoder/2/weight > /dev/null &&
  pass "1.07M parameters: identical weights with 1 and 2 threads" || fail "thread invariance with 1.07M parameters"

# ---- kill mid-epoch, resume on another rank count: bitwise identical.
fit=(fit vae --data "$dir/pix" "${small[@]}" --learning-rate 0.01 --epochs 4 --validation-fraction 0.2 --shuffle --seed 5)
run 2 "${fit[@]}" --output "$dir/ref.h5"
[ "$code" -eq 0 ] || fail "reference fit: $out"
# 24 steps per epoch in a shuffled order; checkpoints every 5 steps; killed at step 32,
# resumed from step 30 (mid-epoch 2).
LATENT_FAULT="rank=1,iteration=32,kind=kill" run 2 "${fit[@]}" --output "$dir/resumed.h5" --checkpoint-dir "$dir/ck" \
  --checkpoint-every 5
killed=$code
run 3 "${fit[@]}" --output "$dir/resumed.h5" --checkpoint-dir "$dir/ck" --checkpoint-every 5 --resume
same=1
for d in /encoder/0/weight /encoder/1/bias /decoder/0/weight /decoder/1/weight /history/objective; do
  h5diff -q "$dir/ref.h5" "$dir/resumed.h5" "$d" > /dev/null 2>&1 || same=0
done
if [ "$killed" -ne 0 ] && [ "$code" -eq 0 ] && echo "$out" | grep -q "resuming from" && [ "$same" -eq 1 ]; then
  pass "fit killed at step 32 (2 ranks) and resumed mid-epoch from step 30 on 3 ranks: bitwise identical"
else
  fail "kill/resume: killed exit $killed, resume exit $code, same $same: $out"
fi

# ---- ranks on one node share their gradients, Adam's state and the packed weights in
# node-shared memory (no allreduce of the gradient sums): the same bits as the collectives
# (LATENT_NODE_SHARED=0) and as one rank, and the profile shows which path ran.
LATENT_NODE_SHARED=0 run 2 "${fit[@]}" --output "$dir/off.h5" --profile --log-json "$dir/off.jsonl"
off_code=$code
run 2 "${fit[@]}" --output "$dir/on.h5" --profile --log-json "$dir/on.jsonl"
on_code=$code
run 1 "${fit[@]}" --output "$dir/one.h5"
same=1
for f in off on one; do
  for d in /encoder/0/weight /encoder/1/bias /decoder/0/weight /decoder/1/weight /history/objective; do
    h5diff -q "$dir/ref.h5" "$dir/$f.h5" "$d" > /dev/null 2>&1 || same=0
  done
done
bytes=$(/usr/bin/python3 - "$dir/on.jsonl" "$dir/off.jsonl" << 'PY'
import json, sys
print(" ".join(str(int([json.loads(l) for l in open(f) if '"done"' in l][-1]["profile_total"]["allreduce_bytes"][0]))
               for f in sys.argv[1:]))
PY
)
read -r on_bytes off_bytes <<< "$bytes"
if [ "$off_code" -eq 0 ] && [ "$on_code" -eq 0 ] && [ "$same" -eq 1 ] && [ -n "$on_bytes" ] &&
   [ $((on_bytes * 10)) -lt "$off_bytes" ]; then
  pass "node-shared gradients on 2 ranks: the same bits as the collectives and 1 rank; allreduce $on_bytes vs $off_bytes bytes"
else
  fail "node-shared: exits $off_code/$on_code, same $same, allreduce bytes $on_bytes vs $off_bytes"
fi

# ---- score, transform, sample, info.
run 1 score --model "$dir/ref.h5" --data "$dir/pix" --iw-samples 50
s1=$(echo "$out" | grep '"elbo"')
run 3 score --model "$dir/ref.h5" --data "$dir/pix" --iw-samples 50 --per-sample "$dir/scores.h5"
s3=$(echo "$out" | grep '"elbo"')
[ -n "$s1" ] && [ "$s1" = "$s3" ] && pass "score identical on 1 and 3 ranks" || fail "score: '$s1' vs '$s3'"
/usr/bin/python3 - "$s1" "$dir/scores.h5" <<'EOF' && pass "IWAE >= ELBO, per-sample scores average to the totals" || fail "score values: $s1"
import json, sys, h5py, numpy as np
s = json.loads(sys.argv[1]); f = h5py.File(sys.argv[2])
e, l = f["elbo"][:, 0], f["log_likelihood"][:, 0]
assert e.shape == (1500,) and l.shape == (1500,)
assert s["iwae_log_likelihood"] >= s["elbo"], s
assert abs(e.mean() - s["elbo"]) < 1e-6 and abs(l.mean() - s["iwae_log_likelihood"]) < 1e-6
EOF
run 2 transform --model "$dir/ref.h5" --data "$dir/pix" --output "$dir/z.h5" --reconstruct
/usr/bin/python3 - "$dir/z.h5" "$dir/pix.csv" <<'EOF' && pass "transform: posterior means and reconstructions" || fail "transform: $out"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1]); x = np.loadtxt(sys.argv[2], delimiter=",")
assert f["latent_mean"].shape == (1500, 2) and f["reconstruction"].shape == (1500, 8)
r = f["reconstruction"][:]
assert ((r >= 0) & (r <= 1)).all()
assert np.abs(r - x).mean() < 0.2, np.abs(r - x).mean()  # two prototypes: reconstructed far better than 0.5
EOF
run 1 sample --model "$dir/ref.h5" --n-samples 40 --output "$dir/draws.h5" --seed 2
/usr/bin/python3 -c "
import sys, h5py
d = h5py.File(sys.argv[1])['data'][:]
assert d.shape == (40, 8) and (d >= 0).all() and (d <= 1).all()" "$dir/draws.h5" && [ "$code" -eq 0 ] &&
  pass "sample: 40 decoded draws" || fail "sample: $out"
run 1 info "$dir/ref.h5"
echo "$out" | grep -q "latent dimensions 2, hidden 16" && pass "info describes the network" || fail "info: $out"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
