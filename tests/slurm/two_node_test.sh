#!/usr/bin/env bash
# End-to-end tests on a private two-node SLURM cluster (tests/slurm/cluster_two_node.sh:
# two network namespaces node1/node2 joined by a veth pair, one slurmd each), as root.
# Ranks on different nodes talk over Open MPI's TCP transport on the veth link.
#
# Usage: tests/slurm/two_node_test.sh LATENT_BIN
#
#   nodelocal   $DIR/local is node-local (a file written there on node1 is absent on
#               node2) and the shared directory is shared; a 2-node job sees both.
#   invariance  gmm (full), lda (online) and vae fits as 2 nodes x 2 ranks through
#               jobs/fit.sbatch (srun --mpi=pmix, TMPDIR node-local) and gmm through
#               `mpirun --host node1:2,node2:2` (remote-shell agent tests/slurm/netns_rsh.sh)
#               and as 2 nodes x 1 rank x 2 threads write the same bytes as a one-node
#               4-rank mpirun; the veth link carried
#               the traffic.
#   kill        SIGKILL to one rank on node2 mid-fit: the job ends FAILED (non-zero)
#               within a bound, no rank left on either node.
#   linkdown    node2's link set down mid-fit (--watchdog-seconds 10): the ranks on both
#               sides end by the watchdog (exit 124) with the link still down; after the
#               link is back the job ends FAILED with 124.
#   requeue     a 2 x 2 fit preempted by SIGUSR1 (as --signal=B:USR1@N) checkpoints
#               (rank 0 on node1 writes to the shared directory), requeues, resumes (every
#               rank, node2's too, reads the checkpoint) and equals an uninterrupted fit
#               bitwise.
#   locking     HDF5 file locking unavailable (flock/fcntl locks fail with ENOSYS, as on
#               some NFS/Lustre mounts, simulated by an LD_PRELOAD shim): latent fails
#               with a clear message without HDF5_USE_FILE_LOCKING=FALSE, works with it.
#   scaling     jobs/scaling_array.sbatch, 2 ranks on 1 node and on 2 nodes, 2 repetitions
#               each; bench/scaling/collect.py turns the logs into scaling.json and plots.
#
# Prints PASS/FAIL/SKIP per test. Exit 0 if all ran tests pass, 1 on any failure, 77 if
# the two-node cluster cannot run here (packages absent, not root, no namespaces).
#
# Environment: LATENT_SLURM2_TESTS="nodelocal invariance ..." selects tests;
# LATENT_SLURM_KEEP=1 keeps the cluster directory.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cluster="$here/cluster_two_node.sh"

[[ $# -eq 1 ]] || { echo "usage: $0 LATENT_BIN" >&2; exit 2; }
src_bin="$1"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_hwloc_base_binding_policy=none
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1
unset OMPI_MCA_plm_rsh_agent
# HDF5_USE_FILE_LOCKING=FALSE as on a cluster filesystem (docs/CLUSTER.md); the locking
# test sets its own.
export HDF5_USE_FILE_LOCKING=FALSE

tests="${LATENT_SLURM2_TESTS:-nodelocal invariance kill linkdown requeue locking scaling}"
say() { printf '[two_node_test %(%T)T] %s\n' -1 "$*"; }

for (( i = 0; i < 120; i++ )); do [[ -x "$src_bin" ]] && break; sleep 1; done
[[ -x "$src_bin" ]] || { say "FAIL: latent binary $src_bin not found"; exit 1; }

DIR="$(mktemp -d "${TMPDIR:-/tmp}/latent-2node.XXXXXX")"
chmod 755 "$DIR"
export LATENT_SLURM2_DIR="$DIR"
# shellcheck disable=SC2317
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # Restore the link first (a failed linkdown test), then stop everything.
  ip -n latent2n-node2 link set l2n-v2 up 2>/dev/null || true
  bash "$cluster" stop || true
  if [[ "${LATENT_SLURM_KEEP:-0}" == 1 ]]; then say "kept $DIR"; else rm -rf "$DIR"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash "$cluster" start
rc=$?
if (( rc == 77 )); then say "SKIP: the two-node cluster cannot run here (see above)"; exit 77; fi
(( rc == 0 )) || { say "FAIL: the two-node cluster did not start"; exit 1; }

shared="$DIR/shared"
mkdir -p "$shared/bin"
cp "$src_bin" "$shared/bin/latent" || { say "FAIL: cannot copy $src_bin"; exit 1; }
LATENT="$shared/bin/latent"

# Open MPI between the nodes: TCP on the veth subnet only (shared memory within a node),
# out-of-band (PMIx/ORTE) traffic too. mpirun's remote shell: tests/slurm/netns_rsh.sh.
subnet=10.231.77.0/24
mpi_env=("OMPI_MCA_btl=self,vader,tcp" "OMPI_MCA_btl_tcp_if_include=$subnet" "OMPI_MCA_oob_tcp_if_include=$subnet"
         OMPI_MCA_plm_rsh_agent="$here/netns_rsh.sh" TMPDIR="$DIR/local")
on() {  # node CMD...: run on a node with the cluster's MPI environment
  local n="$1"; shift
  bash "$cluster" on "$n" env "${mpi_env[@]}" "$@"
}
on1() { on node1 "$@"; }
slurmd_pid() { bash "$cluster" pid "$1"; }
# Bytes sent by node2's end of the link (/proc/PID/net/dev shows PID's namespace).
veth_bytes() {
  awk '$1 == "l2n-v2:" { print $2 + $10 }' "/proc/$(slurmd_pid node2)/net/dev"
}

# ---------------------------------------------------------------- data (shared fs)
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
  }' > "$shared/blobs.csv"
data="$shared/data"
"$LATENT" import dense --format csv --input "$shared/blobs.csv" --output "$data" --rows-per-shard 500 \
  > "$shared/import.log" 2>&1 || { cat "$shared/import.log"; say "FAIL: latent import dense"; exit 1; }
corpus="$shared/corpus"
"$LATENT" generate lda --n-samples 600 --vocab-size 80 --n-components 3 --doc-length 30 --rows-per-shard 150 \
  --true-model none --output "$corpus" > "$shared/generate.log" 2>&1 ||
  { cat "$shared/generate.log"; say "FAIL: latent generate lda"; exit 1; }

# ---------------------------------------------------------------- helpers
field() { printf '%s\n' "$1" | grep -o "\\b$2=[^ ]*" | head -n 1 | cut -d= -f2-; }
is_final() {
  case "$1" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED) return 0 ;; esac
  return 1
}
job_line() { on1 scontrol show job -o "$1" 2>/dev/null | head -n 1; }
wait_job() {  # id seconds -> "state exitcode restarts"
  local id="$1" deadline=$(( SECONDS + $2 )) line
  while (( SECONDS < deadline )); do
    line="$(job_line "$id")"
    if is_final "$(field "$line" JobState)"; then
      echo "$(field "$line" JobState) $(field "$line" ExitCode) $(field "$line" Restarts)"; return 0
    fi
    sleep 0.5
  done
  { say "job $id did not finish within $2 s:"; on1 scontrol show job "$id" 2>&1 | sed 's/^/    /'; } >&2
  on1 scancel "$id" 2>/dev/null || true
  return 1
}
show_file() {
  [[ -f "$1" ]] || { echo "    ($1 missing)"; return; }
  echo "    ---- $1 (last lines)"; grep -v '^ *iter ' "$1" | tail -n 30 | sed 's/^/    /'
}
# Every dataset of two model files equal bitwise, but the wall-clock history
# (history/seconds); attributes naming the run (time, host, ranks) are not compared.
same_model() {
  /usr/bin/python3 - "$1" "$2" <<'EOF'
import sys, h5py
a, b = sys.argv[1:3]
def datasets(f):
    out = {}
    f.visititems(lambda n, o: out.__setitem__(n, o)
                 if isinstance(o, h5py.Dataset) and n.rsplit("/", 1)[-1] != "seconds" else None)
    return out
with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
    da, db = datasets(fa), datasets(fb)
    if set(da) != set(db):
        print("datasets differ:", sorted(set(da) ^ set(db))); sys.exit(1)
    for n in sorted(da):
        x, y = da[n][()], db[n][()]
        if getattr(x, "dtype", None) is not None and x.dtype.kind == "O":  # strings: compare values
            same = x.shape == y.shape and x.tolist() == y.tolist()
        elif hasattr(x, "tobytes"):
            same = x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        else:
            same = x == y
        if not same:
            print("dataset differs:", n); sys.exit(1)
    print(len(da), "datasets equal")
EOF
}
latent_pids() {  # node -> PIDs of latent processes in the node's network namespace
  ip netns pids "latent2n-$1" 2>/dev/null | while read -r p; do
    [[ "$(cat "/proc/$p/comm" 2>/dev/null)" == latent ]] && echo "$p"
  done
}
iterations() { local n; n="$(grep -c '"iteration"' "$1" 2>/dev/null)" || true; echo "${n:-0}"; }

fails=0 passes=0 skips=0
result() {
  say "$2: $1${3:+ ($3)}"
  case "$2" in PASS) (( passes++ )) ;; FAIL) (( fails++ )) ;; SKIP) (( skips++ )) ;; esac
}

# submit_fit DIR NAME MODEL "MODEL_ARGS" DATA [VAR=value...] -- 2 nodes x 2 ranks, fit.sbatch
# (LAYOUT="--ntasks=2 --ntasks-per-node=1 --cpus-per-task=2": 2 nodes x 1 rank x 2 threads;
# --ntasks always, or fit.sbatch's own #SBATCH --ntasks=4 stays and the job never fits)
submit_fit() {
  local d="$1" name="$2" model="$3" margs="$4" dat="$5"; shift 5
  local layout="${LAYOUT:---ntasks=4 --ntasks-per-node=2 --cpus-per-task=1}"
  # shellcheck disable=SC2086
  on1 env MODEL="$model" MODEL_ARGS="$margs" DATA="$dat" OUTPUT="$d/$name.h5" LATENT_BIN="$LATENT" "$@" \
    sbatch --parsable --chdir="$d" --output="$d/job-$name.out" --job-name="t2-$name" \
      --nodes=2 $layout --time=10 "$repo/jobs/fit.sbatch"
}

gmm_args="--n-components 3 --covariance-type full --block-rows 256 --tol 0"
declare -A FIT_ARGS=(
  [gmm]="$gmm_args --max-iter 30"
  [lda]="--n-topics 3 --method online --batch-size 100 --max-iter 2 --block-rows 64"
  [vae]="--latent-dim 2 --hidden 8 --epochs 2 --likelihood gaussian --block-rows 128"
)
declare -A FIT_DATA=([gmm]="$data" [lda]="$corpus" [vae]="$data")

# ---------------------------------------------------------------- nodelocal
test_nodelocal() {
  local d="$shared/nodelocal" id r out
  mkdir -p "$d"
  on node1 sh -c "echo node1 > '$DIR/local/marker'" || { result nodelocal FAIL "cannot write node1's local dir"; return; }
  if on node2 test -e "$DIR/local/marker"; then result nodelocal FAIL "node1's $DIR/local/marker visible on node2"; return; fi
  [[ ! -e "$DIR/local/marker" ]] || { result nodelocal FAIL "node-local file visible on the host"; return; }
  # One task per node: hostname, TMPDIR, whether the marker exists, whether shared files do.
  id="$(on1 sbatch --parsable --chdir="$d" --output="$d/job.out" --nodes=2 --ntasks-per-node=1 --time=2 \
        --wrap "srun sh -c 'echo \$(hostname) tmp=\$TMPDIR marker=\$(cat $DIR/local/marker 2>/dev/null || echo none) data=\$(ls $data | wc -l)'")" ||
    { result nodelocal FAIL "sbatch failed"; return; }
  r="$(wait_job "$id" 60)" || { result nodelocal FAIL "timeout"; return; }
  out="$(sort "$d/job.out")"
  local want_n
  want_n="$(ls "$data" | wc -l)"
  if [[ "$r" != "COMPLETED 0:0 0" ]] ||
     [[ "$out" != "node1 tmp=$DIR/local marker=node1 data=$want_n"$'\n'"node2 tmp=$DIR/local marker=none data=$want_n" ]]; then
    show_file "$d/job.out"; result nodelocal FAIL "job '$r', output '$out'"; return
  fi
  rm -f "$DIR/node1-local/marker"
  result nodelocal PASS "TMPDIR=$DIR/local differs per node; $data shared"
}

# ---------------------------------------------------------------- invariance
test_invariance() {
  local d="$shared/invariance" m id r why="" b0 b1 jobs=() names=()
  mkdir -p "$d"
  # References: one node, 4 ranks, shared memory (the host's namespaces, no TCP).
  for m in gmm lda vae; do
    # shellcheck disable=SC2086
    mpirun -n 4 "$LATENT" fit "$m" --data "${FIT_DATA[$m]}" --output "$d/ref-$m.h5" ${FIT_ARGS[$m]} \
      --threads 1 --overwrite > "$d/ref-$m.log" 2>&1 ||
      { show_file "$d/ref-$m.log"; result invariance FAIL "one-node reference fit $m failed"; return; }
  done
  b0="$(veth_bytes)"
  for m in gmm lda vae; do
    id="$(submit_fit "$d" "$m" "$m" "${FIT_ARGS[$m]}" "${FIT_DATA[$m]}" CHECKPOINT=0)" ||
      { result invariance FAIL "sbatch $m failed: $id"; return; }
    jobs+=("$id"); names+=("$m")
  done
  local i
  for i in "${!jobs[@]}"; do
    m="${names[$i]}"
    r="$(wait_job "${jobs[$i]}" 150)" || { show_file "$d/job-$m.out"; result invariance FAIL "$m: timeout"; return; }
    [[ "$r" == "COMPLETED 0:0 0" ]] || { show_file "$d/job-$m.out"; result invariance FAIL "$m: job ended '$r'"; return; }
    grep -q '4 ranks x 1 threads on 2 node(s)' "$d/job-$m.out" ||
      { show_file "$d/job-$m.out"; result invariance FAIL "$m: not 4 ranks on 2 nodes"; return; }
    same_model "$d/ref-$m.h5" "$d/$m.h5" > "$d/cmp-$m.txt" 2>&1 ||
      { cat "$d/cmp-$m.txt"; result invariance FAIL "$m: 2 x 2 ranks (srun) differ from 1 x 4 ranks"; return; }
  done
  # Threads: 2 nodes x 1 rank x 2 threads (fit.sbatch: --threads $SLURM_CPUS_PER_TASK).
  id="$(LAYOUT="--ntasks=2 --ntasks-per-node=1 --cpus-per-task=2" submit_fit "$d" gmm-threads gmm "${FIT_ARGS[gmm]}" "$data" CHECKPOINT=0)" ||
    { result invariance FAIL "sbatch gmm-threads failed: $id"; return; }
  r="$(wait_job "$id" 150)" || { show_file "$d/job-gmm-threads.out"; result invariance FAIL "gmm-threads: timeout"; return; }
  [[ "$r" == "COMPLETED 0:0 0" ]] && grep -q '2 ranks x 2 threads on 2 node(s)' "$d/job-gmm-threads.out" ||
    { show_file "$d/job-gmm-threads.out"; result invariance FAIL "gmm 2 x 1 x 2 threads: job ended '$r' (or not 2 ranks x 2 threads)"; return; }
  same_model "$d/ref-gmm.h5" "$d/gmm-threads.h5" > "$d/cmp-threads.txt" 2>&1 ||
    { cat "$d/cmp-threads.txt"; result invariance FAIL "gmm: 2 nodes x 1 rank x 2 threads differ from 1 x 4 x 1"; return; }
  # mpirun with a host list, started on node1; orted reaches node2 through the agent.
  # shellcheck disable=SC2086
  on1 mpirun --host node1:2,node2:2 -n 4 "$LATENT" fit gmm --data "$data" --output "$d/gmm-mpirun.h5" \
    ${FIT_ARGS[gmm]} --threads 1 --overwrite > "$d/gmm-mpirun.log" 2>&1 ||
    { show_file "$d/gmm-mpirun.log"; result invariance FAIL "mpirun --host node1:2,node2:2 failed"; return; }
  same_model "$d/ref-gmm.h5" "$d/gmm-mpirun.h5" > "$d/cmp-mpirun.txt" 2>&1 ||
    { cat "$d/cmp-mpirun.txt"; result invariance FAIL "gmm: mpirun 2 x 2 differs from 1 x 4"; return; }
  b1="$(veth_bytes)"
  # 30 GMM iterations x 2 allreduces of (2 + K + K D + K D^2) 32-byte cells = 4.7 kB at
  # least: the nodes must have exchanged far more than 100 kB over the link.
  (( b1 - b0 > 100000 )) || { result invariance FAIL "only $(( b1 - b0 )) bytes crossed the veth link"; return; }
  result invariance PASS "gmm, lda online, vae: 2 nodes x 2 ranks (srun --mpi=pmix; gmm also 2 x 1 rank x 2 threads and mpirun --host) = 1 node x 4 ranks bitwise; $(( (b1 - b0) / 1024 )) KiB over TCP"
}

# Start a long 2 x 2 gmm fit with a watchdog; wait until rank 0 has logged 5 iterations
# and the ranks on node2 run.
start_long_fit() {  # dir name -> job id
  local d="$1" name="$2" id deadline st
  id="$(submit_fit "$d" "$name" gmm "$gmm_args --max-iter 1000000" "$data" CHECKPOINT=0 WATCHDOG_SECONDS=10)" ||
    return 1
  deadline=$(( SECONDS + 90 ))
  while (( SECONDS < deadline )); do
    st="$(field "$(job_line "$id")" JobState)"
    is_final "$st" && break
    [[ "$st" == RUNNING ]] && (( $(iterations "$d/$name.log.jsonl") >= 5 )) &&
      [[ -n "$(latent_pids node2)" ]] && { echo "$id"; return 0; }
    sleep 0.3
  done
  on1 scancel "$id" 2>/dev/null || true
  return 1
}

# ---------------------------------------------------------------- kill
test_kill() {
  local d="$shared/kill" id r t0 pids=()
  mkdir -p "$d"
  id="$(start_long_fit "$d" kill)" || { show_file "$d/job-kill.out"; result kill FAIL "fit did not get going"; return; }
  mapfile -t pids < <(latent_pids node2)
  say "kill: job $id; SIGKILL to rank process ${pids[0]} on node2"
  t0=$SECONDS
  kill -KILL "${pids[0]}"
  r="$(wait_job "$id" 90)" || { show_file "$d/job-kill.out"; result kill FAIL "job did not end within 90 s of the kill"; return; }
  [[ "$r" =~ ^FAILED\ ([1-9][0-9]*):0 ]] ||
    { show_file "$d/job-kill.out"; result kill FAIL "job ended '$r', expected FAILED with a non-zero exit"; return; }
  sleep 1
  [[ -z "$(latent_pids node1)$(latent_pids node2)" ]] || { result kill FAIL "latent processes left after the job"; return; }
  result kill PASS "job $id ended '$r' $(( SECONDS - t0 )) s after the kill; no rank left"
}

# ---------------------------------------------------------------- linkdown
test_linkdown() {
  local d="$shared/linkdown" id r t0 deadline left
  mkdir -p "$d"
  id="$(start_long_fit "$d" linkdown)" || { show_file "$d/job-linkdown.out"; result linkdown FAIL "fit did not get going"; return; }
  say "linkdown: job $id; ip link set l2n-v2 down in node2's namespace"
  t0=$SECONDS
  ip -n latent2n-node2 link set l2n-v2 down || { result linkdown FAIL "cannot set the link down"; return; }
  # With the link down, the ranks on both nodes must end by themselves (watchdog 10 s).
  deadline=$(( SECONDS + 90 ))
  while (( SECONDS < deadline )); do
    left="$(latent_pids node1)$(latent_pids node2)"
    [[ -z "$left" ]] && break
    sleep 0.5
  done
  local gone=$(( SECONDS - t0 ))
  ip -n latent2n-node2 link set l2n-v2 up
  [[ -z "$left" ]] || { show_file "$d/job-linkdown.out"; result linkdown FAIL "ranks still running 90 s after the link went down"; return; }
  r="$(wait_job "$id" 120)" || { show_file "$d/job-linkdown.out"; result linkdown FAIL "job did not end after the link came back"; return; }
  [[ "$r" =~ ^FAILED\ 124:0 ]] ||
    { show_file "$d/job-linkdown.out"; result linkdown FAIL "job ended '$r', expected 'FAILED 124:0' (watchdog)"; return; }
  grep -q -i 'watchdog' "$d/job-linkdown.out" ||
    { show_file "$d/job-linkdown.out"; result linkdown FAIL "no watchdog message in the job output"; return; }
  result linkdown PASS "every rank ended ${gone} s after the link went down (watchdog 10 s); job $id '$r'"
}

# ---------------------------------------------------------------- requeue
test_requeue() {
  local d="$shared/requeue" id r line st deadline saw_pending=0 out max_iter=300
  mkdir -p "$d"
  mpirun -n 4 "$LATENT" fit gmm --data "$data" --output "$d/reference.h5" $gmm_args --max-iter $max_iter \
    --threads 1 --overwrite > "$d/reference.log" 2>&1 ||
    { show_file "$d/reference.log"; result requeue FAIL "uninterrupted reference fit failed"; return; }
  id="$(submit_fit "$d" model gmm "$gmm_args --max-iter $max_iter" "$data" CHECKPOINT=1 CHECKPOINT_EVERY=50 \
        CHECKPOINT_DIR="$d/ckpt" MAX_RESTARTS=3)" || { result requeue FAIL "sbatch failed"; return; }
  out="$d/job-model.out"
  deadline=$(( SECONDS + 90 ))
  while (( SECONDS < deadline )); do
    st="$(field "$(job_line "$id")" JobState)"
    is_final "$st" && break
    [[ "$st" == RUNNING ]] && (( $(iterations "$d/model.log.jsonl") >= 20 )) && break
    sleep 0.3
  done
  [[ "$st" == RUNNING ]] || { show_file "$out"; on1 scancel "$id"; result requeue FAIL "job not running with 20 iterations (state '$st')"; return; }
  say "requeue: SIGUSR1 to the batch shell of job $id"
  on1 scancel --batch --signal=USR1 "$id" || { on1 scancel "$id"; result requeue FAIL "scancel --signal=USR1 failed"; return; }
  deadline=$(( SECONDS + 240 ))
  while (( SECONDS < deadline )); do
    line="$(job_line "$id")"; st="$(field "$line" JobState)"
    [[ "$(field "$line" Restarts)" -ge 1 && "$st" =~ ^(PENDING|REQUEUED)$ ]] && saw_pending=1
    is_final "$st" && break
    sleep 0.3
  done
  r="$(wait_job "$id" 5)" || { show_file "$out"; result requeue FAIL "timeout"; return; }
  local why=""
  [[ "$r" == "COMPLETED 0:0 1" ]] || why="job ended '$r', expected 'COMPLETED 0:0 1'"
  [[ -n "$why" ]] || grep -q 'latent exited with code 75' "$out" || why="no checkpoint exit (75)"
  [[ -n "$why" ]] || grep -q 'resuming from' "$out" || why="the second run did not resume"
  [[ -n "$why" ]] || (( saw_pending )) || why="never seen pending after the requeue"
  [[ -n "$why" ]] || grep -q '4 ranks x 1 threads on 2 node(s)' "$out" || why="not 4 ranks on 2 nodes"
  [[ -n "$why" ]] || same_model "$d/reference.h5" "$d/model.h5" > "$d/cmp.txt" 2>&1 || why="model differs from the uninterrupted fit: $(cat "$d/cmp.txt")"
  [[ -z "$why" ]] || { show_file "$out"; result requeue FAIL "$why"; return; }
  result requeue PASS "job $id: $r; resumed on 2 nodes from $d/ckpt, bitwise equal to the uninterrupted 1 x 4 fit"
}

# ---------------------------------------------------------------- locking
test_locking() {
  local d="$shared/locking" rc
  mkdir -p "$d"
  command -v cc > /dev/null 2>&1 || { result locking SKIP "no C compiler for the flock shim"; return; }
  # flock() and fcntl(F_SETLK*) fail: with ENOSYS (a filesystem without locks; libhdf5
  # 1.10.7+ ignores that, latent's own output lock must not) or, with NOLOCK_ERRNO=ENOLCK,
  # with ENOLCK (NFS whose lock daemon is unreachable; libhdf5 fails).
  cat > "$d/nolock.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
static int lock_errno(void) {
  const char* e = getenv("NOLOCK_ERRNO");
  return e != NULL && strcmp(e, "ENOLCK") == 0 ? ENOLCK : ENOSYS;
}
int flock(int fd, int op) { (void)fd; (void)op; errno = lock_errno(); return -1; }
int fcntl(int fd, int cmd, ...) {
  va_list ap; va_start(ap, cmd); void* arg = va_arg(ap, void*); va_end(ap);
  if (cmd == F_SETLK || cmd == F_SETLKW || cmd == F_OFD_SETLK || cmd == F_OFD_SETLKW) { errno = lock_errno(); return -1; }
  static int (*real)(int, int, ...) = 0;
  if (!real) real = (int (*)(int, int, ...))dlsym(RTLD_NEXT, "fcntl");
  return real(fd, cmd, arg);
}
EOF
  cc -shared -fPIC -O1 -o "$d/nolock.so" "$d/nolock.c" -ldl 2> "$d/cc.log" ||
    { show_file "$d/cc.log"; result locking SKIP "cannot build the flock shim"; return; }
  local shard; shard="$(ls "$data"/part-*.h5 | head -n 1)"
  # The shim works: a lock really fails under it.
  if LD_PRELOAD="$d/nolock.so" flock -n "$d/probe" true 2> /dev/null; then
    result locking FAIL "flock succeeds under the shim"; return
  fi
  # ENOSYS: latent's output lock refuses, naming the switch; nothing is written.
  env -u HDF5_USE_FILE_LOCKING LD_PRELOAD="$d/nolock.so" "$LATENT" fit gmm --data "$data" --output "$d/a.h5" \
    --n-components 3 --max-iter 3 > "$d/enosys.log" 2>&1
  rc=$?
  (( rc == 73 )) && grep -q 'no file locking; set HDF5_USE_FILE_LOCKING=FALSE' "$d/enosys.log" ||
    { show_file "$d/enosys.log"; result locking FAIL "ENOSYS, switch unset: exit $rc, expected 73 naming HDF5_USE_FILE_LOCKING=FALSE"; return; }
  local left=("$d"/a.h5*)
  [[ ! -e "${left[0]}" ]] || { result locking FAIL "output left behind: ${left[*]}"; return; }
  # ENOLCK: libhdf5's own lock fails on reading a shard; the message names the switch.
  env -u HDF5_USE_FILE_LOCKING NOLOCK_ERRNO=ENOLCK LD_PRELOAD="$d/nolock.so" "$LATENT" info "$shard" > "$d/enolck.log" 2>&1
  rc=$?
  (( rc == 65 )) && grep -q 'cannot be locked.*set HDF5_USE_FILE_LOCKING=FALSE' "$d/enolck.log" ||
    { show_file "$d/enolck.log"; result locking FAIL "ENOLCK, switch unset: exit $rc, expected 65 naming HDF5_USE_FILE_LOCKING=FALSE"; return; }
  # With the switch, both work, and the fit equals one with locking.
  local e
  for e in ENOSYS ENOLCK; do
    HDF5_USE_FILE_LOCKING=FALSE NOLOCK_ERRNO=$e LD_PRELOAD="$d/nolock.so" "$LATENT" fit gmm --data "$data" \
      --output "$d/$e.h5" --n-components 3 --max-iter 3 --tol 0 --threads 1 > "$d/$e-false.log" 2>&1 ||
      { show_file "$d/$e-false.log"; result locking FAIL "$e with HDF5_USE_FILE_LOCKING=FALSE failed"; return; }
  done
  "$LATENT" fit gmm --data "$data" --output "$d/locked.h5" --n-components 3 --max-iter 3 --tol 0 --threads 1 \
    > "$d/locked.log" 2>&1 || { show_file "$d/locked.log"; result locking FAIL "fit with locking failed"; return; }
  for e in ENOSYS ENOLCK; do
    same_model "$d/locked.h5" "$d/$e.h5" > /dev/null || { result locking FAIL "$e: model differs"; return; }
  done
  result locking PASS "no locking (ENOSYS: exit 73, ENOLCK: exit 65, both naming HDF5_USE_FILE_LOCKING=FALSE); with it the fit works, same bytes"
}

# ---------------------------------------------------------------- scaling
# jobs/scaling_array.sbatch on both nodes: strong scaling of a GMM, 2 ranks on 1 node and
# 2 ranks on 2 nodes (one per node: the allreduce crosses the link), 2 repetitions each;
# bench/scaling/collect.py makes scaling.json (and its plots) with the two configurations.
test_scaling() {
  local d="$shared/scaling" id r n nodes ids=()
  mkdir -p "$d"
  local common_env=(MODEL=gmm MODE=strong DATA="$data" OUT_DIR="$d/logs" ITERATIONS=3
                    FIT_ARGS="--n-components 3 --covariance-type diag --tol 0 --block-rows 500" LATENT_BIN="$LATENT")
  for nodes in 1 2; do
    id="$(on1 env "${common_env[@]}" sbatch --parsable --chdir="$d" --output="$d/job-n$nodes-%A_%a.out" \
          --job-name="t2-scale-n$nodes" --array=0-1 --nodes=$nodes --ntasks=2 --ntasks-per-node=$(( 2 / nodes )) \
          --cpus-per-task=1 --time=5 "$repo/jobs/scaling_array.sbatch" 2>&1)" ||
      { say "$id"; result scaling FAIL "sbatch (nodes=$nodes) failed"; return; }
    ids+=("${id%%;*}")
  done
  for id in "${ids[@]}"; do
    # Every task of the array: poll its records.
    local deadline=$(( SECONDS + 180 )) lines done_
    while (( SECONDS < deadline )); do
      lines="$(on1 scontrol show job -o "$id" 2>/dev/null)"; done_=1
      while IFS= read -r line; do is_final "$(field "$line" JobState)" || done_=0; done <<< "$lines"
      (( done_ )) && break
      sleep 0.5
    done
    n="$(grep -c 'JobState=COMPLETED' <<< "$lines")"
    (( n == 2 )) || { for f in "$d"/job-*.out; do show_file "$f"; done; result scaling FAIL "array $id: $n of 2 tasks COMPLETED"; return; }
  done
  if ! /usr/bin/python3 "$repo/bench/scaling/collect.py" "$d/logs" --out-dir "$d/out" > "$d/collect.log" 2>&1 ||
     ! /usr/bin/python3 - "$d/out/scaling.json" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
got = sorted((r["model"], r["kind"], r["nodes"], r["ranks"], r["threads"], r["rows"]) for r in runs)
assert got == [("gmm", "strong", 1, 2, 1, 3000), ("gmm", "strong", 2, 2, 1, 3000)], got
assert all(r["seconds_per_iteration"] > 0 and r["allreduce_mb_per_iteration"] > 0 for r in runs), runs
PY
  then
    show_file "$d/collect.log"; result scaling FAIL "collect.py or its scaling.json"; return
  fi
  local png=("$d"/out/*.png) pngs=0
  [[ -e "${png[0]}" ]] && pngs=${#png[@]}
  (( pngs > 0 )) || { result scaling FAIL "collect.py wrote no plot"; return; }
  result scaling PASS "arrays ${ids[*]}: gmm strong, 2 ranks on 1 and on 2 nodes x 2 repetitions; collect.py: 2 configurations, $pngs plot(s)"
}

for t in $tests; do
  case "$t" in
    nodelocal) test_nodelocal ;;
    invariance) test_invariance ;;
    kill) test_kill ;;
    linkdown) test_linkdown ;;
    requeue) test_requeue ;;
    locking) test_locking ;;
    scaling) test_scaling ;;
    *) say "unknown test '$t'"; (( fails++ )) ;;
  esac
done

say "summary: $passes passed, $fails failed, $skips skipped"
(( fails == 0 )) || exit 1
exit 0
