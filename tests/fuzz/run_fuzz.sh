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
trap '[ -n "${FUZZ_KEEP:-}" ] || rm -rf "$work"' EXIT
# allocator_may_return_null: as glibc in production, a huge malloc fails instead of aborting;
# libhdf5 then reports an error (crafted metadata sizes reach malloc inside libhdf5).
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 OMPI_MCA_hwloc_base_binding_policy=none

# Seeds: real files of each kind.
mkdir -p "$work/seed-shard" "$work/seed-ckpt" "$work/seed-import" "$work/seed-counts" "$work/seed-import-counts"
awk 'BEGIN { srand(3); for (i = 0; i < 40; i++) print rand() "," rand() "," rand() }' > "$work/x.csv"
"$bin/src/latent" import dense --format csv --input "$work/x.csv" --output "$work/d" --rows-per-shard 40 > /dev/null 2>&1
cp "$work/d/part-00000.h5" "$work/seed-shard/"
"$bin/src/latent" fit gmm --data "$work/d" --output "$work/m.h5" --n-components 2 --max-iter 2 \
  --checkpoint-dir "$work/ck" > /dev/null 2>&1
cp "$work"/ck/ckpt-*.h5 "$work/seed-ckpt/"
"$bin/src/latent" generate lda --n-documents 30 --vocab-size 20 --n-topics 2 --doc-length 8 --output "$work/c" > /dev/null 2>&1
cp "$work/c/part-00000.h5" "$work/seed-counts/"
# import counts seeds: byte 0 picks the format (uci, ldac, libsvm, mm, text), byte 1 options.
printf '\x00\x00''3\n5\n4\n1 1 2\n1 3 1\n2 2 5\n3 5 1\n' > "$work/seed-import-counts/uci"
printf '\x01\x00''2 0:1 3:2\n1 4:1\n' > "$work/seed-import-counts/ldac"
printf '\x02\x00''1 1:2 3:1\n0 2:4\n' > "$work/seed-import-counts/libsvm"
printf '\x03\x00''%%%%MatrixMarket matrix coordinate integer general\n2 4 3\n1 1 2\n1 3 1\n2 2 4\n' > "$work/seed-import-counts/mm"
printf '\x04\x00''the cat sat on the mat\nthe dog ate my homework\n' > "$work/seed-import-counts/text"
{ printf '\x02'; cat "$work/x.csv"; } > "$work/seed-import/csv"
{ printf '\x00\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x02'; printf 'abcdefgh'; } > "$work/seed-import/idx"
{ printf '\x01\x93NUMPY\x01\x00\x76\x00'; printf "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }%*s\n" 58 '';
  printf '\x00\x00\x00\x00\x00\x00\xf0\x3f%.0s' 1 2 3 4; } > "$work/seed-import/npy"

# Triage: libhdf5 1.10.8 (Debian 12) has memory-safety bugs in its own metadata decoding
# that crafted files reach within a minute (heap over-reads in H5O__msg_iterate_real, one
# of them through H5MM_strdup, NULL reads in H5D__contig_read). Those are upstream; they are
# reported, not failed. A crash or OOM whose first frame (past sanitizer, libc and allocator
# frames, and the sanitizer's interceptors of libc's string and memory functions, which it
# names strdup, memcmp, ... inside our binary; and glibc's fatal-error path, __libc_message
# and __fortify_fail / __stack_chk_fail / malloc_printerr, by which a fortified libhdf5
# aborts on its own buffer overflows) is anywhere else, that is in our code, fails the run.
first_frame() {  # awk reads the whole file: no SIGPIPE under pipefail
  awk '/^ *#[0-9]+ 0x/ && !/sanitizer|__interceptor|__asan|libc\.so|libstdc\+\+|fuzzer::|libFuzzer| in (malloc|calloc|realloc|operator new|__memcpy|__memmove|memcpy|memmove|memset|memcmp|memchr|str[a-z]*|abort|raise|__pthread)|string\/\.\.\/sysdeps|stdlib\/|signal\/|nptl\/|libio\/|debug\/|malloc\/|assert\/|posix\/|__libc_message|__libc_fatal|__fortify_fail|__chk_fail|__stack_chk_fail|malloc_printerr/ { print; exit }' "$1"
}

status=0
for target in ${FUZZ_TARGETS:-fuzz_shard fuzz_checkpoint fuzz_import fuzz_counts fuzz_import_counts}; do
  case $target in fuzz_shard) seeds=seed-shard ;; fuzz_checkpoint) seeds=seed-ckpt ;; fuzz_counts) seeds=seed-counts ;;
    fuzz_import_counts) seeds=seed-import-counts ;; *) seeds=seed-import ;; esac
  mkdir -p "$work/corpus-$target" "$work/art-$target"
  echo "== $target for ${seconds}s"
  if [ ! -x "$bin/tests/$target" ]; then echo "FAIL $target: not built"; status=1; continue; fi
  if [ -z "$(ls -A "$work/$seeds")" ]; then echo "FAIL $target: no seed inputs were made"; status=1; continue; fi
  (cd "$work/art-$target" && "$OLDPWD/$bin/tests/$target" -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
     -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -malloc_limit_mb=2000000000 \
     "$work/corpus-$target" "$work/$seeds" > "$work/$target.log" 2>&1) || true
  grep -E "INFO: fuzzed for|stat::number_of_executed_units|cov:" "$work/$target.log" | tail -1 || true
  for artifact in "$work/art-$target"/crash-* "$work/art-$target"/oom-* "$work/art-$target"/timeout-*; do
    [ -e "$artifact" ] || continue
    # Reproduce with a malloc limit so that an out-of-memory report names its allocation site.
    "$bin/tests/$target" -rss_limit_mb=4096 -malloc_limit_mb=1024 -timeout=20 "$artifact" > "$artifact.txt" 2>&1 || true
    frame=$(first_frame "$artifact.txt")
    kind=$(basename "$artifact" | cut -d- -f1)
    if echo "$frame" | grep -q libhdf5; then
      echo "upstream ($kind in libhdf5): ${frame##* in }"
    elif [ -z "$frame" ]; then
      # No frame to attribute (not reproducible alone, or a signal without a usable stack):
      # reported, not failed; the reproducer is kept for a look.
      echo "inconclusive ($kind, no locatable frame): $(basename "$artifact")"
      mkdir -p "$bin/artifacts" && cp "$artifact" "$bin/artifacts/"
    else
      echo "FAIL $target: $kind in our code: $frame"
      grep -E "ERROR|runtime error|SUMMARY" "$artifact.txt" | head -3 || true
      mkdir -p "$bin/artifacts" && cp "$artifact" "$bin/artifacts/"
      status=1
    fi
  done
done
[ "$status" -eq 0 ] || echo "reproducers kept in $bin/artifacts"
exit $status
