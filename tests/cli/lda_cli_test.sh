#!/usr/bin/env bash
# LDA end to end through the command line, on 2-3 MPI ranks: damaged count data is refused
# on every rank with the file, dataset and row named and no output; empty documents are
# counted in a warning; a fit killed mid-pass resumes from its checkpoint on another rank
# count with bitwise-identical topics; transform, score and info work.
# Usage: lda_cli_test.sh LATENT MPIEXEC (needs python3-h5py for the damaged shards)
set -u
latent=$1 mpiexec=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
source "$(dirname "$0")/lib.sh"
/usr/bin/python3 -c "import h5py" 2> /dev/null || { echo "h5py not available: skipped"; exit 77; }

"$latent" generate lda --n-documents 600 --vocab-size 80 --n-topics 4 --doc-length 30 --docs-per-shard 200 \
  --seed 3 --output "$dir/corpus" --true-model "$dir/truth.h5" > /dev/null 2>&1 || { echo "FAIL generate"; exit 1; }

# ---- damaged CSR: each copy of the corpus gets one defect in its second shard.
damage() {  # damage NAME PYTHON-STATEMENTS (f is the open shard part-00001.h5)
  cp -r "$dir/corpus" "$dir/$1"
  /usr/bin/python3 - "$dir/$1/part-00001.h5" <<EOF
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:
    def replace(name, values):
        del f[name]
        f[name] = values
    indptr, indices, data = f["indptr"][:], f["indices"][:], f["data"][:]
    $2
EOF
}
expect_refused() {  # expect_refused NAME NEEDLE...: exit 65 on every rank, message, no model
  local name=$1; shift
  run 2 fit lda --data "$dir/$name" --output "$dir/$name.h5" --n-topics 3 --max-iter 2
  local ok=1
  [ "$code" -eq 65 ] || ok=0
  for needle in "$@"; do echo "$out" | grep -qF -- "$needle" || ok=0; done
  [ ! -e "$dir/$name.h5" ] || ok=0
  if [ "$ok" -eq 1 ]; then pass "$name refused: $(echo "$out" | grep 'error' | head -1)"; else fail "$name: exit $code: $out"; fi
}
damage index_range 'indices[7] = 80; replace("indices", indices)'
expect_refused index_range "part-00001.h5" "/indices" "word id 80 is outside the vocabulary"
damage negative_count 'data[3] = -2; replace("data", data)'
expect_refused negative_count "part-00001.h5" "/data" "count -2"
damage fractional_count 'replace("data", data.astype(np.float64) + 0.5)'
expect_refused fractional_count "part-00001.h5" "/data, row 0" "not a positive integer"
damage indptr_not_monotone 'indptr[5] = indptr[4] - 1; replace("indptr", indptr)'
expect_refused indptr_not_monotone "part-00001.h5" "/indptr" "row 4"
damage indptr_short 'replace("indptr", indptr[:-1])'
expect_refused indptr_short "part-00001.h5" "/indptr" "last entry"
damage vocab_mismatch 'f.attrs["vocab_size"] = np.int64(81)'
expect_refused vocab_mismatch "vocab_size"
mkdir -p "$dir/empty_corpus" && cp "$dir/corpus/vocabulary.txt" "$dir/empty_corpus/"
/usr/bin/python3 -c "
import h5py, numpy as np, sys
with h5py.File(sys.argv[1], 'w') as f:
    f['indptr'] = np.zeros(1, np.int64); f['indices'] = np.zeros(0, np.int32); f['data'] = np.zeros(0, np.int32)
    f.attrs['vocab_size'] = np.int64(80); f.attrs['format_version'] = np.int64(1); f.attrs['kind'] = 'counts'
" "$dir/empty_corpus/part-00000.h5"
expect_refused empty_corpus "no documents"

# ---- empty documents are allowed and counted.
cp -r "$dir/corpus" "$dir/empty_docs"
/usr/bin/python3 - "$dir/empty_docs/part-00001.h5" <<'EOF'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:
    indptr, indices, data = f["indptr"][:], f["indices"][:], f["data"][:]
    # Empty documents 2 and 3: drop their entries.
    keep = np.ones(len(indices), bool)
    keep[indptr[2]:indptr[4]] = False
    removed = indptr[4] - indptr[2]
    new_indptr = indptr.copy()
    new_indptr[3:] -= indptr[3] - indptr[2]
    new_indptr[4:] -= indptr[4] - indptr[3]
    for name, values in (("indptr", new_indptr), ("indices", indices[keep]), ("data", data[keep])):
        del f[name]
        f[name] = values
EOF
run 2 fit lda --data "$dir/empty_docs" --output "$dir/empty_docs.h5" --n-topics 3 --max-iter 2
if [ "$code" -eq 0 ] && echo "$out" | grep -q "2 of 600 documents are empty"; then pass "empty documents counted"; else fail "empty documents: exit $code: $out"; fi

# ---- kill mid-pass, resume on another rank count: bitwise identical to uninterrupted.
fit=(fit lda --data "$dir/corpus" --n-topics 4 --method online --batch-size 64 --max-iter 3 --learn-priors both --block-rows 50)
run 2 "${fit[@]}" --output "$dir/ref.h5"
[ "$code" -eq 0 ] || fail "reference fit: $out"
LATENT_FAULT="rank=1,iteration=14,kind=kill" run 2 "${fit[@]}" --output "$dir/resumed.h5" --checkpoint-dir "$dir/ck" --checkpoint-every 4
killed=$code
run 3 "${fit[@]}" --output "$dir/resumed.h5" --checkpoint-dir "$dir/ck" --checkpoint-every 4 --resume
if [ "$killed" -ne 0 ] && [ "$code" -eq 0 ] && echo "$out" | grep -q "resuming from" &&
   h5diff -q "$dir/ref.h5" "$dir/resumed.h5" /components > /dev/null && h5diff -q "$dir/ref.h5" "$dir/resumed.h5" /doc_topic_prior > /dev/null &&
   h5diff -q "$dir/ref.h5" "$dir/resumed.h5" /history/objective > /dev/null; then
  pass "online fit killed at update 14 (2 ranks) and resumed on 3 ranks: bitwise identical"
else
  fail "kill/resume: killed exit $killed, resume exit $code: $out"
fi
run 2 fit lda --data "$dir/corpus" --n-topics 4 --output "$dir/sig.h5" --checkpoint-dir "$dir/ck2" --max-iter 5
LATENT_FAULT="rank=0,iteration=2,kind=signal" run 2 fit lda --data "$dir/corpus" --n-topics 4 --output "$dir/sig2.h5" \
  --checkpoint-dir "$dir/ck3" --max-iter 5
c1=$code
run 1 fit lda --data "$dir/corpus" --n-topics 4 --output "$dir/sig2.h5" --checkpoint-dir "$dir/ck3" --max-iter 5 --resume
if [ "$c1" -eq 75 ] && [ "$code" -eq 0 ] && h5diff -q "$dir/sig.h5" "$dir/sig2.h5" /components > /dev/null; then
  pass "batch fit stopped by SIGTERM (exit 75) resumed on 1 rank: bitwise identical"
else
  fail "signal/resume: exits $c1, $code: $out"
fi

# ---- lambda sharded by vocabulary slice (V = 3,000: three 1,024-word chunks, so 2 and 3
# ranks hold real slices): a 3-rank fit writes the 1-rank model's bits; an online fit killed
# on 2 ranks resumes on 3 with the same bits; the memory estimate is per slice and refused
# up front, naming it, with no output.
"$latent" generate lda --n-documents 300 --vocab-size 3000 --n-topics 5 --doc-length 40 --docs-per-shard 100 \
  --seed 5 --output "$dir/wide" > /dev/null 2>&1 || fail "generate wide"
"$latent" generate lda --n-documents 300 --vocab-size 3000 --n-topics 5 --doc-length 40 --docs-per-shard 100 \
  --seed 5 --output "$dir/wide_t2" --threads 2 > /dev/null 2>&1 || fail "generate wide --threads 2"
same=1
for f in "$dir/wide"/part-*.h5; do h5diff -q "$f" "$dir/wide_t2/$(basename "$f")" > /dev/null 2>&1 || same=0; done
[ "$(ls "$dir/wide" | wc -l)" -eq "$(ls "$dir/wide_t2" | wc -l)" ] || same=0
[ "$same" -eq 1 ] && pass "generate lda --threads 2 writes the shards of --threads 1" || fail "generate lda --threads 2 differs"
same_model() { for d in /components /doc_topic_prior /topic_word_prior /history/objective; do
  h5diff -q "$1" "$2" "$d" > /dev/null || return 1; done; }
wide=(fit lda --data "$dir/wide" --n-topics 5 --max-iter 3 --learn-priors both --block-rows 40)
run 1 "${wide[@]}" --output "$dir/wide1.h5"
run 3 "${wide[@]}" --output "$dir/wide3.h5" --threads 2
if [ "$code" -eq 0 ] && same_model "$dir/wide1.h5" "$dir/wide3.h5" && echo "$out" | grep -q "lambda sharded over 3 ranks"; then
  pass "batch, lambda in 3 vocabulary slices x 2 threads: the 1-rank model's bits"
else
  fail "sharded batch: exit $code: $out"
fi
wide=(fit lda --data "$dir/wide" --n-topics 5 --method online --batch-size 32 --max-iter 2 --learn-priors alpha)
run 1 "${wide[@]}" --output "$dir/wideo1.h5"
LATENT_FAULT="rank=1,iteration=13,kind=kill" run 2 "${wide[@]}" --output "$dir/wideo.h5" --checkpoint-dir "$dir/ckw" \
  --checkpoint-every 4
killed=$code
run 3 "${wide[@]}" --output "$dir/wideo.h5" --checkpoint-dir "$dir/ckw" --checkpoint-every 4 --resume
if [ "$killed" -ne 0 ] && [ "$code" -eq 0 ] && echo "$out" | grep -q "resuming from" && same_model "$dir/wideo1.h5" "$dir/wideo.h5"; then
  pass "sharded online fit killed at update 13 on 2 ranks, resumed on 3: the 1-rank model's bits"
else
  fail "sharded kill/resume: killed exit $killed, resume exit $code: $out"
fi
predicted() { echo "$1" | grep -o "predicted peak memory [0-9.]* GiB" | head -1 | awk '{print $4}'; }
# The slice's part of the estimate (λ and its counts), which sharding divides; the round's
# buffers do not shrink with P.
slice_part() { echo "$1" | grep -o "vocabulary slice ([0-9]* words x [0-9]* topics): [0-9.]* GiB" | head -1 | awk '{print $(NF-1)}'; }
big=(fit lda --data "$dir/wide" --n-topics 20000 --max-iter 1 --memory-budget 0.5 --output "$dir/big.h5")
run 1 "${big[@]}"
c1=$code p1=$(predicted "$out") s1=$(slice_part "$out")
run 3 "${big[@]}"
c3=$code p3=$(predicted "$out") s3=$(slice_part "$out")
# 3 ranks hold at most 1024 of the 3000 words each (whole chunks of 1024: 0.34 of the slice).
if [ "$c1" -eq 64 ] && [ "$c3" -eq 64 ] && [ ! -e "$dir/big.h5" ] && echo "$out" | grep -q "1/3 vocabulary slice" &&
   awk -v a="$p1" -v b="$p3" -v sa="$s1" -v sb="$s3" \
     'BEGIN { exit !(a > 0.5 && b > 0.5 && b < 0.7 * a && sb > 0.33 * sa && sb < 0.36 * sa) }'; then
  pass "K x V = 6e7 refused up front with its estimate ($p1 GiB per rank on 1 rank, $p3 on 3; the slice $s1 and $s3), no output"
else
  fail "memory refusal: exits $c1 $c3, predicted '$p1' '$p3': $out"
fi

# ---- transform, score, info.
run 2 transform --model "$dir/ref.h5" --data "$dir/corpus" --output "$dir/theta.h5"
rows=$(/usr/bin/python3 -c "
import h5py, numpy as np, sys
t = h5py.File(sys.argv[1])['doc_topic_distribution'][:]
print(t.shape[0] if np.allclose(t.sum(1), 1) and (t >= 0).all() and t.shape[1] == 4 else -1)" "$dir/theta.h5")
[ "$code" -eq 0 ] && [ "$rows" = 600 ] && pass "transform: 600 x 4 proportions" || fail "transform: exit $code rows $rows: $out"
run 3 score --model "$dir/ref.h5" --data "$dir/corpus"
s3=$(echo "$out" | grep doc_completion)
run 1 score --model "$dir/ref.h5" --data "$dir/corpus"
s1=$(echo "$out" | grep doc_completion)
[ -n "$s1" ] && [ "$s1" = "$s3" ] && pass "score identical on 1 and 3 ranks" || fail "score: '$s1' vs '$s3'"
run 1 score --model "$dir/truth.h5" --data "$dir/corpus"
truth_ppl=$(echo "$out" | grep -o '"doc_completion_perplexity":[0-9.e+-]*' | cut -d: -f2)
fit_ppl=$(echo "$s1" | grep -o '"doc_completion_perplexity":[0-9.e+-]*' | cut -d: -f2)
# The generating topics are very sparse (eta 0.01) and 3 online passes are few: require the
# fit to be far better than uniform topics (perplexity 80) and within 1.5x of the truth.
awk -v a="$fit_ppl" -v b="$truth_ppl" 'BEGIN { exit !(a > 0 && a < 1.5 * b && a < 8) }' &&
  pass "fitted perplexity $fit_ppl (true topics $truth_ppl, uniform 80)" || fail "perplexity $fit_ppl vs truth $truth_ppl"
run 1 info "$dir/ref.h5"
echo "$out" | grep -q "topic   3 (alpha" && pass "info prints topics" || fail "info: $out"
"$latent" generate lda --n-documents 20 --vocab-size 90 --n-topics 2 --output "$dir/other" > /dev/null 2>&1
run 2 score --model "$dir/ref.h5" --data "$dir/other"
[ "$code" -eq 65 ] && echo "$out" | grep -q "vocabulary of 90 words but model" && pass "score refuses a vocabulary mismatch" ||
  fail "score vocabulary mismatch: exit $code: $out"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
