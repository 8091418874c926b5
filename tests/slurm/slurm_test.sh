#!/usr/bin/env bash
# End-to-end tests of jobs/fit_gmm.sbatch and jobs/sweep_gmm.sbatch on a real,
# private single-node SLURM cluster (tests/slurm/cluster.sh), as root.
#
# Usage: tests/slurm/slurm_test.sh LATENT_BIN
#
#   completion  a 2-rank fit through fit_gmm.sbatch ends COMPLETED with exit 0; the
#               model exists, the job's `latent score` step printed JSON and
#               `latent score` on the model works.
#   requeue     a 2-rank fit is preempted the way `#SBATCH --signal=B:USR1@N` does it
#               (SIGUSR1 to the batch shell only: `scancel --batch --signal=USR1`) after
#               some iterations; the script forwards it, latent checkpoints and exits
#               75, the script requeues the job, the second run (SLURM_RESTART_COUNT=1)
#               resumes and completes, and the model equals an uninterrupted fit
#               (mpirun, same options) bitwise. Skipped while latent has no
#               --checkpoint-dir.
#   timelimit   (only with LATENT_SLURM_TIMELIMIT_TEST=1; takes ~4 minutes) the same
#               driven by a real time limit: --time=1 --signal=B:USR1@10, a fit calibrated
#               to outlast it; accepts one or more requeues.
#   families    jobs/fit.sbatch for lda (count corpus), vae and fa: COMPLETED with the
#               score step's JSON; bad model options end the job with exit 64.
#   array       jobs/sweep_gmm.sbatch as a 3-task array (K = 2,3,4): every task
#               COMPLETED and every model file exists.
#   scaling     jobs/scaling_array.sbatch: ACTION=generate writes the weak-scaling data
#               with `latent generate` under srun, then a 2-task array of profiled 2-rank
#               fits; bench/scaling/collect.py makes scaling.json from their logs.
#   python      latent.fit_distributed(est, dir, ranks=2, launcher="srun" and "sbatch")
#               from the Python package: bits equal to the in-process fit (skipped if the
#               package is not built beside LATENT_BIN).
#
# Prints PASS/FAIL/SKIP per test. Exit 0 if all ran tests pass (skips allowed), 1 on any
# failure, 77 if SLURM cannot be set up here (packages absent, not root, ports busy).
#
# Environment: LATENT_SLURM_DIR (cluster directory, default /tmp/latent-slurm-test),
# LATENT_SLURM_KEEP=1 keeps the work directory, LATENT_SLURM_TESTS="completion requeue
# array" selects tests, LATENT_SLURM_TIMELIMIT_TEST=1 adds the time-limit test.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cluster="$here/cluster.sh"

[[ $# -eq 1 ]] || { echo "usage: $0 LATENT_BIN" >&2; exit 2; }
src_bin="$1"

export LATENT_SLURM_DIR="${LATENT_SLURM_DIR:-/tmp/latent-slurm-test}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_hwloc_base_binding_policy=none
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_plm_rsh_agent=
export HDF5_USE_FILE_LOCKING=FALSE
export OMP_NUM_THREADS=1

tests="${LATENT_SLURM_TESTS:-completion requeue families array scaling python}"
[[ "${LATENT_SLURM_TIMELIMIT_TEST:-0}" != 1 ]] || tests="$tests timelimit"

say() { printf '[slurm_test %(%T)T] %s\n' -1 "$*"; }

# ---------------------------------------------------------------- setup
# The binary may be missing for a moment while it is being rebuilt: wait (bounded).
for (( i = 0; i < 120; i++ )); do
  [[ -x "$src_bin" ]] && break
  (( i == 0 )) && say "waiting for $src_bin to appear"
  sleep 1
done
[[ -x "$src_bin" ]] || { say "FAIL: latent binary $src_bin not found"; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/latent-slurm-work.XXXXXX")"
chmod 755 "$work"
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  bash "$cluster" stop || true
  if [[ "${LATENT_SLURM_KEEP:-0}" == 1 ]]; then
    say "kept $work"
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A private copy: the build may replace the binary while the test runs.
mkdir -p "$work/bin"
cp "$src_bin" "$work/bin/latent" || { say "FAIL: cannot copy $src_bin"; exit 1; }
LATENT="$work/bin/latent"

bash "$cluster" start
rc=$?
if (( rc == 77 )); then say "SKIP: SLURM cannot run on this machine (see above)"; exit 77; fi
(( rc == 0 )) || { say "FAIL: the test cluster did not start"; exit 1; }
eval "$(bash "$cluster" env)"

# Data: 3000 rows x 5 columns from 3 Gaussian blobs (deterministic awk generator).
awk -v N=3000 -v D=5 -v seed=7 '
  function gauss(  u, v) { u = rand(); if (u < 1e-12) u = 1e-12; v = rand()
                           return sqrt(-2 * log(u)) * cos(6.283185307179586 * v) }
  BEGIN {
    srand(seed)
    for (d = 0; d < D; d++) printf "%sx%d", (d ? "," : ""), d; printf "\n"
    for (i = 0; i < N; i++) {
      k = i % 3
      for (d = 0; d < D; d++)
        printf "%s%.6f", (d ? "," : ""), 4 * (k - 1) + (d % 2 ? 1 : -1) * k + (0.5 + 0.5 * k) * gauss()
      printf "\n"
    }
  }' > "$work/blobs.csv"
data="$work/data"
if ! "$LATENT" import dense --format csv --input "$work/blobs.csv" --output "$data" \
       --rows-per-shard 1000 > "$work/import.log" 2>&1; then
  cat "$work/import.log"; say "FAIL: latent import dense"; exit 1
fi

# ---------------------------------------------------------------- helpers
field() {  # "scontrol show job -o" line, key -> value
  printf '%s\n' "$1" | grep -o "\\b$2=[^ ]*" | head -n 1 | cut -d= -f2-
}
is_final() {
  case "$1" in
    COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED) return 0 ;;
    *) return 1 ;;
  esac
}

# wait_job ID SECONDS: poll `scontrol show job` until every record of the job (every
# array task) is in a final state; prints one "state exitcode restarts" line per record.
# On timeout: scancel, print the records, return 1.
wait_job() {
  local id="$1" deadline=$(( SECONDS + $2 )) lines line done_
  while (( SECONDS < deadline )); do
    lines="$(scontrol show job -o "$id" 2>/dev/null)" || lines=""
    if [[ -n "$lines" ]]; then
      done_=1
      while IFS= read -r line; do
        is_final "$(field "$line" JobState)" || done_=0
      done <<< "$lines"
      if (( done_ )); then
        while IFS= read -r line; do
          echo "$(field "$line" JobState) $(field "$line" ExitCode) $(field "$line" Restarts)"
        done <<< "$lines"
        return 0
      fi
    fi
    sleep 0.5
  done
  say "job $id did not finish within $2 s:"
  scontrol show job "$id" 2>&1 | sed 's/^/    /'
  scancel "$id" 2>/dev/null || true
  return 1
}

show_file() {  # path: its last 40 lines but per-iteration ones, indented (failure reports)
  [[ -f "$1" ]] || { echo "    ($1 missing)"; return; }
  echo "    ---- $1 (last lines, without per-iteration lines)"
  grep -v '^ *iter ' "$1" | tail -n 40 | sed 's/^/    /'
}

# h5diff exits 0 if the objects are equal (exact comparison without -d/-p).
same_dataset() {  # a.h5 b.h5 /path
  if command -v h5diff >/dev/null 2>&1; then
    h5diff "$1" "$2" "$3" "$3" >/dev/null 2>&1
  else
    /usr/bin/python3 - "$@" <<'EOF'
import sys, h5py
a, b, p = sys.argv[1:4]
with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
    x, y = fa[p][()], fb[p][()]
    sys.exit(0 if x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes() else 1)
EOF
  fi
}

fails=0
passes=0
skips=0
result() {  # name PASS|FAIL|SKIP [why]
  say "$2: $1${3:+ ($3)}"
  case "$2" in PASS) (( passes++ )) ;; FAIL) (( fails++ )) ;; SKIP) (( skips++ )) ;; esac
}

submit_fit() {  # dir -- extra sbatch options...; env comes from the caller
  local dir="$1"; shift
  sbatch --parsable --chdir="$dir" --output="$dir/job-%j.out" "$@" "$repo/jobs/fit_gmm.sbatch"
}

# (The help text is read whole: `grep -q` would close the pipe early, and under pipefail the
# writer's SIGPIPE made this false once the help outgrew the pipe buffer.)
has_checkpoints() { local h; h=$("$LATENT" fit gmm --help 2>/dev/null); grep -q -- '--checkpoint-dir' <<< "$h"; }

fit_options=(--n-components 3 --covariance-type full --block-rows 256 --threads 1)

# ---------------------------------------------------------------- (a) completion
test_completion() {
  local d="$work/completion" id out r
  mkdir -p "$d"
  id="$(DATA="$data" OUTPUT="$d/model.h5" K=3 COVARIANCE_TYPE=full BLOCK_ROWS=256 \
        LATENT_BIN="$LATENT" SCORE_DATA="$data" \
        submit_fit "$d" --job-name=t-complete --ntasks=2 --cpus-per-task=1 --time=5)" ||
    { result completion FAIL "sbatch failed"; return; }
  say "completion: job $id submitted"
  r="$(wait_job "$id" 120)" || { show_file "$d/job-$id.out"; result completion FAIL "timeout"; return; }
  out="$d/job-$id.out"
  if [[ "$r" != "COMPLETED 0:0 0" ]]; then
    show_file "$out"; result completion FAIL "job ended '$r', expected 'COMPLETED 0:0 0'"; return
  fi
  [[ -s "$d/model.h5" ]] || { show_file "$out"; result completion FAIL "model file missing"; return; }
  "$LATENT" info "$d/model.h5" > "$d/info.txt" 2>&1 ||
    { show_file "$d/info.txt"; result completion FAIL "latent info on the model failed"; return; }
  grep -q '"mean_log_likelihood"' "$out" ||
    { show_file "$out"; result completion FAIL "the job's score step printed no mean_log_likelihood"; return; }
  if ! "$LATENT" score --model "$d/model.h5" --data "$data" > "$d/score.json" 2> "$d/score.err" ||
     ! grep -q '"mean_log_likelihood"' "$d/score.json"; then
    show_file "$d/score.json"; show_file "$d/score.err"; result completion FAIL "latent score on the model failed"; return
  fi
  result completion PASS "job $id: $(head -c 200 "$d/score.json")"
}

# Preempted fit: common part of the requeue and time-limit tests.
#   preempted_fit NAME MAX_ITER MODE   MODE = signal | timelimit
preempted_fit() {
  local name="$1" max_iter="$2" mode="$3"
  local d="$work/$name" id out r line st restarts saw_ckpt=0 saw_pending=0 deadline
  mkdir -p "$d"
  local -a sb=(--job-name="t-$name" --ntasks=2 --cpus-per-task=1)
  if [[ "$mode" == timelimit ]]; then
    sb+=(--time=1 --signal=B:USR1@10)
  else
    sb+=(--time=10)
  fi
  # Uninterrupted reference with the same options, directly with mpirun. Not at the
  # same time as the job: MPI ranks busy-poll, so 4 ranks on 2 cores are ~8x slower.
  local t0=$SECONDS
  mpirun --oversubscribe -n 2 "$LATENT" fit gmm --data "$data" --output "$d/reference.h5" \
    "${fit_options[@]}" --tol 0 --max-iter "$max_iter" --overwrite > "$d/reference.log" 2>&1 ||
    { show_file "$d/reference.log"; result "$name" FAIL "the uninterrupted reference fit failed"; return; }
  say "$name: uninterrupted reference fit took $(( SECONDS - t0 )) s"

  id="$(DATA="$data" OUTPUT="$d/model.h5" K=3 COVARIANCE_TYPE=full BLOCK_ROWS=256 \
        TOL=0 MAX_ITER="$max_iter" LATENT_BIN="$LATENT" CHECKPOINT=1 CHECKPOINT_EVERY=100 \
        CHECKPOINT_DIR="$d/ckpt" MAX_RESTARTS=5 submit_fit "$d" "${sb[@]}")" ||
    { result "$name" FAIL "sbatch failed"; return; }
  out="$d/job-$id.out"
  say "$name: job $id submitted (max-iter $max_iter, $mode)"

  if [[ "$mode" == signal ]]; then
    # Wait until the fit has done some iterations, then signal the batch shell only,
    # as `--signal=B:USR1@N` does.
    deadline=$(( SECONDS + 90 ))
    while (( SECONDS < deadline )); do
      line="$(scontrol show job -o "$id" 2>/dev/null)" || line=""
      st="$(field "$line" JobState)"
      is_final "$st" && break
      if [[ "$st" == RUNNING ]] && [[ -f "$d/model.log.jsonl" ]] &&
         (( $(grep -c '"iteration"' "$d/model.log.jsonl" 2>/dev/null) >= 20 )); then
        break
      fi
      sleep 0.2
    done
    if [[ "$st" != RUNNING ]]; then
      show_file "$out"; scancel "$id" 2>/dev/null
      result "$name" FAIL "job not running with >= 20 iterations logged (state '$st'; if it finished, raise max-iter)"
      return
    fi
    say "$name: sending SIGUSR1 to the batch shell of job $id"
    scancel --batch --signal=USR1 "$id" ||
      { scancel "$id"; result "$name" FAIL "scancel --batch --signal=USR1 failed"; return; }
  fi

  # Follow the job to its end; note whether it was requeued with checkpoints on disk.
  # Generous: on a loaded machine each restart gets less done than the calibration said.
  deadline=$(( SECONDS + 720 ))
  while (( SECONDS < deadline )); do
    line="$(scontrol show job -o "$id" 2>/dev/null)" || line=""
    st="$(field "$line" JobState)"
    restarts="$(field "$line" Restarts)"
    if [[ "${restarts:-0}" -ge 1 && "$st" =~ ^(PENDING|REQUEUED)$ ]]; then
      saw_pending=1
      [[ -n "$(ls -A "$d/ckpt" 2>/dev/null)" ]] && saw_ckpt=1
    fi
    is_final "$st" && break
    sleep 0.3
  done
  r="$(wait_job "$id" 5)" || { show_file "$out"; result "$name" FAIL "timeout"; return; }
  say "$name: job $id ended: $r"
  local why=""
  if [[ "$mode" == timelimit ]]; then
    [[ "$r" =~ ^COMPLETED\ 0:0\ [1-9][0-9]?$ ]] || why="job ended '$r', expected 'COMPLETED 0:0 N' with N >= 1 restarts"
  else
    [[ "$r" == "COMPLETED 0:0 1" ]] || why="job ended '$r', expected 'COMPLETED 0:0 1' (one restart)"
  fi
  [[ -n "$why" ]] || grep -q 'latent exited with code 75' "$out" || why="no 'latent exited with code 75' in the job output"
  [[ -n "$why" ]] || grep -q 'requeueing job' "$out" || why="the script did not requeue the job"
  [[ -n "$why" ]] || grep -q '(restart 1)' "$out" || why="no run with SLURM_RESTART_COUNT=1 in the job output"
  [[ -n "$why" ]] || grep -q 'resuming from' "$out" || why="no 'resuming from' (checkpoint) in the job output"
  [[ -n "$why" ]] || (( saw_pending )) || why="the job was never seen pending after a requeue"
  [[ -n "$why" ]] || (( saw_ckpt )) || why="no checkpoint in $d/ckpt while the job was requeued"
  [[ -n "$why" ]] || [[ -s "$d/model.h5" ]] || why="model file missing"
  if [[ -z "$why" ]]; then
    local ds
    for ds in /weights /means /covariances /precisions_cholesky /history/objective; do
      same_dataset "$d/reference.h5" "$d/model.h5" "$ds" ||
        { why="$ds differs from the uninterrupted fit"; break; }
    done
  fi
  if [[ -n "$why" ]]; then
    show_file "$out"; result "$name" FAIL "$why"; return
  fi
  result "$name" PASS "job $id: $r; $(grep -c 'latent exited with code 75' "$out") checkpoint-exit(s), model bitwise equal to the uninterrupted fit"
}

# ---------------------------------------------------------------- (b) requeue
test_requeue() {
  has_checkpoints || { result requeue FAIL "$src_bin fit gmm --help does not list --checkpoint-dir"; return; }
  # ~10 ms per iteration on 3000 rows: 2000 iterations last well beyond the signal.
  preempted_fit requeue 2000 signal
}

# ---------------------------------------------------------------- time limit
test_timelimit() {
  has_checkpoints || { result timelimit FAIL "$src_bin fit gmm --help does not list --checkpoint-dir"; return; }
  # Calibrate: the fit must outlast the first SIGUSR1, which comes 20-50 s after the
  # start (SLURM checks time limits every ~30 s). The 1000 calibration iterations include
  # the start-up (MPI, summary pass, k-means), which overstates the time per iteration by
  # up to a third: aim at 100 s of work, so that at least ~65 s remain.
  local t0=$SECONDS ms per
  local start end
  start="$(date +%s%N)"
  mpirun --oversubscribe -n 2 "$LATENT" fit gmm --data "$data" --output "$work/calib.h5" \
    "${fit_options[@]}" --tol 0 --max-iter 1000 --overwrite > "$work/calib.log" 2>&1 ||
    { show_file "$work/calib.log"; result timelimit FAIL "calibration fit failed"; return; }
  end="$(date +%s%N)"
  ms=$(( (end - start) / 1000000 ))
  per=$(( 100000 * 1000 / (ms > 1 ? ms : 1) ))
  say "timelimit: 1000 iterations took $ms ms: max-iter $per (calibration $(( SECONDS - t0 )) s)"
  preempted_fit timelimit "$per" timelimit
}

# ---------------------------------------------------------------- (c) array
test_array() {
  local d="$work/array" id r n k missing=""
  mkdir -p "$d"
  id="$(DATA="$data" K_VALUES=2,3,4 SEEDS=0 OUTPUT_DIR="$d/models" COVARIANCE_TYPE=diag \
        BLOCK_ROWS=256 LATENT_BIN="$LATENT" FIT_SCRIPT="$repo/jobs/fit_gmm.sbatch" \
        sbatch --parsable --chdir="$d" --output="$d/job-%A_%a.out" --job-name=t-array \
          --array=0-2 --ntasks=1 --cpus-per-task=1 --time=5 "$repo/jobs/sweep_gmm.sbatch")" ||
    { result array FAIL "sbatch failed"; return; }
  id="${id%%;*}"
  say "array: job $id submitted (K = 2,3,4)"
  r="$(wait_job "$id" 180)" || { for f in "$d"/job-*.out; do show_file "$f"; done; result array FAIL "timeout"; return; }
  n="$(grep -c '^COMPLETED 0:0 0$' <<< "$r")"
  if (( n != 3 )) || (( $(wc -l <<< "$r") != 3 )); then
    for f in "$d"/job-*.out; do show_file "$f"; done
    result array FAIL "tasks ended: $(tr '\n' ';' <<< "$r") (expected 3 x COMPLETED 0:0)"; return
  fi
  for k in 2 3 4; do
    if ! [[ -s "$d/models/gmm-k$k-seed0.h5" ]] || ! "$LATENT" info "$d/models/gmm-k$k-seed0.h5" > /dev/null 2>&1; then
      missing+=" gmm-k$k-seed0.h5"
    fi
  done
  [[ -z "$missing" ]] || { for f in "$d"/job-*.out; do show_file "$f"; done; result array FAIL "missing or unreadable:$missing"; return; }
  result array PASS "job $id: 3 tasks COMPLETED, models for K = 2,3,4"
}

# ---------------------------------------------------------------- (d) scaling
# jobs/scaling_array.sbatch: weak-scaling data generated by ACTION=generate under srun (2
# ranks), then a 2-task array of profiled 2-rank fits on it; bench/scaling/collect.py turns
# the logs into scaling.json with one configuration, its median over the 2 repetitions.
test_scaling() {
  local d="$work/scaling" id r n
  mkdir -p "$d"
  local common_env=(MODEL=gmm MODE=weak DATA_PATTERN="$d/data-r{ranks}" ROWS_PER_RANK=2000 SHARDS_PER_RANK=2
                    GEN_ARGS="--n-features 6 --n-components 3" OUT_DIR="$d/logs" ITERATIONS=3
                    FIT_ARGS="--n-components 3 --covariance-type diag --tol 0 --block-rows 500" LATENT_BIN="$LATENT")
  id="$(env "${common_env[@]}" ACTION=generate sbatch --parsable --chdir="$d" --output="$d/gen-%j.out" \
        --job-name=t-scale-gen --array=0 --nodes=1 --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --time=5 \
        "$repo/jobs/scaling_array.sbatch" 2>&1)" || { say "$id"; result scaling FAIL "sbatch (generate) failed"; return; }
  id="${id%%;*}"
  r="$(wait_job "$id" 120)" || { show_file "$d/gen-$id.out"; result scaling FAIL "generate: timeout"; return; }
  [[ "$r" == "COMPLETED 0:0 0" && -d "$d/data-r2" ]] ||
    { show_file "$d/gen-$id.out"; result scaling FAIL "generate ended '$r' (data-r2: $(ls "$d" | tr '\n' ' '))"; return; }
  id="$(env "${common_env[@]}" sbatch --parsable --chdir="$d" --output="$d/job-%A_%a.out" \
        --job-name=t-scale --array=0-1 --nodes=1 --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --time=5 \
        "$repo/jobs/scaling_array.sbatch" 2>&1)" || { say "$id"; result scaling FAIL "sbatch (array) failed"; return; }
  id="${id%%;*}"
  say "scaling: array job $id submitted"
  r="$(wait_job "$id" 180)" || { for f in "$d"/job-*.out; do show_file "$f"; done; result scaling FAIL "timeout"; return; }
  n="$(grep -c '^COMPLETED 0:0 0$' <<< "$r")"
  if (( n != 2 )); then
    for f in "$d"/job-*.out; do show_file "$f"; done
    result scaling FAIL "tasks ended: $(tr '\n' ';' <<< "$r") (expected 2 x COMPLETED 0:0)"; return
  fi
  if ! /usr/bin/python3 "$repo/bench/scaling/collect.py" "$d/logs" --out-dir "$d/out" > "$d/collect.log" 2>&1 ||
     ! /usr/bin/python3 - "$d/out/scaling.json" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
assert len(runs) == 1, runs
r = runs[0]
assert (r["model"], r["kind"], r["ranks"], r["threads"], r["rows"]) == ("gmm", "weak", 2, 1, 4000), r
assert r["seconds_per_iteration"] > 0 and r["allreduce_mb_per_iteration"] > 0, r
PY
  then
    show_file "$d/collect.log"; result scaling FAIL "collect.py or its scaling.json"; return
  fi
  result scaling PASS "job $id: generate + 2 profiled fits, collect.py: one weak configuration (2 ranks, 4000 rows)"
}

# ---------------------------------------------------------------- (e) every family
# jobs/fit.sbatch for the other model families: lda on a count corpus, vae and fa on the
# dense data, each 2 ranks x 1 thread, the partition from sbatch's own SBATCH_PARTITION,
# then the job's score step; a bad MODEL_ARGS ends the job with latent's exit 64.
test_families() {
  local d="$work/families" id r out model args data_dir jobs=() names=()
  mkdir -p "$d"
  "$LATENT" generate lda --n-samples 600 --vocab-size 80 --n-components 3 --doc-length 30 --rows-per-shard 200 \
    --true-model none --output "$d/corpus" > "$d/generate.log" 2>&1 ||
    { show_file "$d/generate.log"; result families FAIL "latent generate lda failed"; return; }
  for model in lda vae fa bad; do
    case "$model" in
      lda) args="--n-topics 3 --method online --batch-size 100 --max-iter 2"; data_dir="$d/corpus" ;;
      vae) args="--latent-dim 2 --hidden 8 --epochs 2 --likelihood gaussian"; data_dir="$data" ;;
      fa) args="--n-components 2 --max-iter 5"; data_dir="$data" ;;
      bad) args="--n-components -3"; data_dir="$data" ;;
    esac
    id="$(MODEL="${model/bad/fa}" MODEL_ARGS="$args" DATA="$data_dir" OUTPUT="$d/$model.h5" LATENT_BIN="$LATENT" \
          SCORE_DATA="$data_dir" BLOCK_ROWS=128 CHECKPOINT=1 SBATCH_PARTITION=debug \
          sbatch --parsable --chdir="$d" --output="$d/job-$model-%j.out" --job-name="t-$model" --ntasks=2 \
          --cpus-per-task=1 --time=5 "$repo/jobs/fit.sbatch")" ||
      { result families FAIL "sbatch ($model) failed: $id"; return; }
    jobs+=("$id"); names+=("$model")
  done
  local i
  for i in "${!jobs[@]}"; do
    id="${jobs[$i]}"; model="${names[$i]}"; out="$d/job-$model-$id.out"
    r="$(wait_job "$id" 240)" || { show_file "$out"; result families FAIL "$model: timeout"; return; }
    if [[ "$model" == bad ]]; then
      [[ "$r" == "FAILED 64:0 0" ]] ||
        { show_file "$out"; result families FAIL "bad MODEL_ARGS: job ended '$r', expected 'FAILED 64:0 0'"; return; }
      continue
    fi
    [[ "$r" == "COMPLETED 0:0 0" ]] || { show_file "$out"; result families FAIL "$model: job ended '$r'"; return; }
    [[ -s "$d/$model.h5" ]] || { show_file "$out"; result families FAIL "$model: no model file"; return; }
    grep -q '"model":"'"$model"'"' "$out" || { show_file "$out"; result families FAIL "$model: the score step printed nothing"; return; }
  done
  result families PASS "jobs/fit.sbatch: lda, vae, fa COMPLETED with a score; bad options end the job with 64"
}

# ---------------------------------------------------------------- (f) python
# latent.fit_distributed (python/latent/_distributed.py, issue 24) with launcher="srun" (a
# job step that allocates itself) and "sbatch" (a batch job, followed to its end): 2 ranks
# each; the estimator it returns holds the bits of a fit of the same directory in the
# notebook's own process (the same options, seed and block rows), and the streamed progress
# names the 2 ranks. Needs the Python package built beside LATENT_BIN (<build>/python).
test_python() {
  local d="$work/python" pkg
  pkg="$(cd "$(dirname "$src_bin")/../python" 2> /dev/null && pwd)"
  if [[ -z "$pkg" || ! -f "$pkg/latent/__init__.py" ]] || ! PYTHONPATH="$pkg" /usr/bin/python3 -c "import latent._core" 2> /dev/null; then
    result python SKIP "the Python package is not built beside $src_bin"; return
  fi
  mkdir -p "$d"
  if PYTHONPATH="$pkg" LATENT_CLI="$LATENT" /usr/bin/python3 - "$data" > "$d/python.log" 2>&1 <<'PY'
import sys
import latent
data = sys.argv[1]
options = dict(n_components=3, covariance_type="full", random_state=1, block_rows=256, n_threads=1)
ref = latent.GaussianMixture(**options).fit(data)
for launcher in ("srun", "sbatch"):
    est, lines = latent.GaussianMixture(**options), []
    latent.fit_distributed(est, data, ranks=2, launcher=launcher, progress=lines.append, poll_seconds=0.5,
                           partition="debug", time="5")
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert getattr(est, name).tobytes() == getattr(ref, name).tobytes(), f"{launcher}: {name} differs"
    assert est.n_iter_ == ref.n_iter_ and est.lower_bound_ == ref.lower_bound_, f"{launcher}: n_iter_/lower_bound_"
    assert any("2 rank(s)" in line for line in lines), f"{launcher}: no progress line names 2 ranks: {lines[-5:]}"
    print(f"{launcher}: 2 ranks, {len(lines)} progress lines, bits equal to the in-process fit")
PY
  then
    result python PASS "$(tr '\n' ' ' < "$d/python.log")"
  else
    show_file "$d/python.log"; result python FAIL "latent.fit_distributed under srun/sbatch"
  fi
}

for t in $tests; do
  case "$t" in
    families) test_families ;;
    completion) test_completion ;;
    requeue) test_requeue ;;
    timelimit) test_timelimit ;;
    array) test_array ;;
    scaling) test_scaling ;;
    python) test_python ;;
    *) say "unknown test '$t'"; (( fails++ )) ;;
  esac
done

say "summary: $passes passed, $fails failed, $skips skipped"
(( fails == 0 )) || exit 1
exit 0
