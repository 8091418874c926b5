#!/usr/bin/env bash
# A full disk, for real (issue 19 item 1): a 2 MiB tmpfs that this test mounts, filled to a
# few KiB. Every writer (checkpoints, model files, predict/transform/sample/impute outputs,
# export, import dense and counts, generate gmm and lda) must exit 74 on every rank without a crash,
# leave earlier checkpoints and existing outputs intact and leave no temporary or part file.
# Skipped (77) where tmpfs cannot be mounted (not root, or no CAP_SYS_ADMIN).
# Usage: diskfull_test.sh LATENT MPIEXEC
set -uo pipefail
latent=$1 mpiexec=$2
source "$(dirname "$0")/lib.sh"
dir=$(mktemp -d)
mnt="$dir/small"
mkdir -p "$mnt"
if ! mount -t tmpfs -o size=2m tmpfs "$mnt" 2> /dev/null; then
  echo "SKIP: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)"; rm -rf "$dir"; exit 77
fi
trap 'umount "$mnt" 2> /dev/null; rm -rf "$dir"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

fill() {  # fill KIB: leave about KIB KiB free on the small filesystem
  rm -f "$mnt/fill"
  local avail; avail=$(df -k --output=avail "$mnt" | tail -1)
  head -c $(( (avail - $1) * 1024 )) /dev/zero > "$mnt/fill"
}
# The filesystem holds only what the test put there: no temporaries, no part files.
clean() { [ -z "$(find "$mnt" -mindepth 1 ! -name fill ! -path "$mnt/keep*" ! -path "$mnt/ck*" -print -quit)" ]; }
expect74() {  # expect74 WHAT: the last run exited 74 with an error message, not a crash
  if [ "$code" -eq 74 ] && echo "$out" | grep -q "disk full\|No space left" && ! echo "$out" | grep -q "Segmentation\|signal 11"; then
    pass "$1: exit 74"; else fail "$1: exit $code: $(echo "$out" | tail -5)"; fi
}

"$latent" generate gmm --n-samples 20000 --n-features 20 --n-components 5 --output "$dir/data" --true-model none > /dev/null
"$latent" generate lda --n-samples 3000 --vocab-size 400 --n-components 5 --output "$dir/corpus" --true-model none > /dev/null
"$latent" fit gmm --data "$dir/data" --n-components 5 --max-iter 2 --output "$dir/model.h5" > /dev/null 2>&1
"$latent" fit lda --data "$dir/corpus" --n-topics 5 --max-iter 2 --output "$dir/lda.h5" > /dev/null 2>&1
awk 'BEGIN { srand(1); for (i = 0; i < 3000; i++) print rand() "," rand() "," rand() "," rand() }' > "$dir/x.csv"

# Checkpoints: the first fits, a later one does not; the earlier ones stay valid and resume.
"$latent" fit gmm --data "$dir/data" --n-components 5 --covariance-type full --max-iter 6 --tol 0 --output "$dir/ck-reference.h5" > /dev/null 2>&1
for ranks in 1 2; do
  rm -rf "$mnt/ck"; fill 120
  run "$ranks" fit gmm --data "$dir/data" --n-components 5 --covariance-type full --max-iter 6 --tol 0 \
    --output "$dir/ck-model-$ranks.h5" --checkpoint-dir "$mnt/ck"
  expect74 "checkpoint on a full disk ($ranks rank(s))"
  ls "$mnt"/ck/ckpt-*.h5 > /dev/null 2>&1 && [ -z "$(ls "$mnt/ck" | grep -v '^ckpt-[0-9-]*\.h5$')" ] && [ ! -e "$dir/ck-model-$ranks.h5" ] &&
    pass "earlier checkpoints kept, no temporary, no model" || fail "checkpoint directory: $(ls -a "$mnt/ck")"
  rm -f "$mnt/fill"
  run "$ranks" fit gmm --data "$dir/data" --n-components 5 --covariance-type full --max-iter 6 --tol 0 \
    --output "$dir/ck-model-$ranks.h5" --checkpoint-dir "$mnt/ck" --resume
  [ "$code" -eq 0 ] && same_model "$dir/ck-model-$ranks.h5" "$dir/ck-reference.h5" && pass "resume after the disk was freed: the undisturbed model" ||
    fail "resume after disk full: exit $code: $out"
done
rm -rf "$mnt/ck"

# An existing output is never touched: a model file already there with --overwrite.
echo "an earlier result" > "$mnt/keep.h5"
fill 8
run 2 fit gmm --data "$dir/data" --n-components 30 --covariance-type full --max-iter 1 --output "$mnt/keep.h5" --overwrite
expect74 "model file over an existing one"
[ "$(cat "$mnt/keep.h5")" = "an earlier result" ] && clean && pass "the existing output is intact, nothing else left" ||
  fail "after the model write: $(ls -a "$mnt")"
rm -f "$mnt/keep.h5"

fill 16
run 2 fit vae --data "$dir/data" --likelihood gaussian --latent-dim 4 --hidden 256,256 --epochs 1 --output "$mnt/vae.h5"
expect74 "vae model file"; clean && pass "vae: nothing left" || fail "vae: $(ls -a "$mnt")"
for task in "predict --proba" "transform" "impute" "score --per-sample"; do
  fill 24
  run 2 $task --model "$dir/model.h5" --data "$dir/data" --output "$mnt/out.h5"
  expect74 "$task output"; clean && pass "$task: no part or temporary left" || fail "$task: $(ls -a "$mnt")"
done
fill 24
run 2 sample --model "$dir/model.h5" --n-samples 200000 --output "$mnt/out.h5"
expect74 "sample output"; clean && pass "sample: nothing left" || fail "sample: $(ls -a "$mnt")"
fill 24
run 2 generate gmm --n-samples 40000 --n-features 20 --n-components 5 --output "$mnt/gen" --true-model none
expect74 "generate gmm"; clean && pass "generate gmm: nothing left" || fail "generate gmm: $(ls -a "$mnt")"
fill 24
run 2 generate lda --n-samples 20000 --vocab-size 500 --n-components 5 --output "$mnt/genc" --true-model none
expect74 "generate lda"; clean && pass "generate lda: nothing left" || fail "generate lda: $(ls -a "$mnt")"
# latent export: the JSON of --format ldavis (rank 0 writes while the other rank's pieces
# arrive), and --format gensim (the Python package's LdaModel.save, its temporary directory
# and the dictionary statistics) when the package is built beside the binary.
formats="ldavis"
if PYTHONPATH="$(dirname "$latent")/../python" /usr/bin/python3 -c "import latent._core, gensim" 2> /dev/null; then
  formats="ldavis gensim"
else
  echo "skip export --format gensim: the Python package is not built beside $latent"
fi
for format in $formats; do
  fill 24
  run 2 export --model "$dir/lda.h5" --data "$dir/corpus" --format "$format" --output "$mnt/export.out"
  expect74 "export --format $format"; clean && pass "export --format $format: nothing left" ||
    fail "export --format $format: $(ls -a "$mnt")"
done
fill 24
run 1 import dense --format csv --input "$dir/x.csv" --output "$mnt/imp"
expect74 "import dense"; clean && pass "import dense: nothing left" || fail "import dense: $(ls -a "$mnt")"
[ "$failures" -eq 0 ] && echo "all checks passed" || { echo "$failures check(s) failed"; exit 1; }
