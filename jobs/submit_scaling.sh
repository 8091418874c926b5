#!/usr/bin/env bash
# Submits the scaling experiment of jobs/scaling_array.sbatch for several node counts:
# one array job per node count (sbatch --nodes=N --array=0-(REPS-1); every task of an
# array has the same resources, so the node count cannot vary inside one array), each
# array task one repetition. For MODE=weak with ROWS_PER_RANK set, the data set of each
# rank count that does not exist yet is generated first by a job of the same shape
# (ACTION=generate), and the array waits for it (--dependency=afterok).
#
# Usage (from the repository root; every variable of scaling_array.sbatch is passed on,
# sbatch exports the environment):
#   MODEL=gmm MODE=strong DATA=/scratch/me/gmm-strong NODES_LIST=1,2,4,8 \
#     jobs/submit_scaling.sh [extra sbatch options, e.g. --partition=compute --account=X]
#   MODEL=lda MODE=weak DATA_PATTERN=/scratch/me/lda-weak-r{ranks} ROWS_PER_RANK=200000 \
#     NODES_LIST=1,2,4,8,16 jobs/submit_scaling.sh
#
#   NODES_LIST      comma-separated node counts              (default: 1,2,4,8)
#   REPS            repetitions per node count (array size)  (default: 3)
#   TASKS_PER_NODE  MPI ranks per node                       (default: 1)
#   CPUS_PER_TASK   threads per rank                         (default: 16)
#   TIME            time limit of one fit                    (default: 00:30:00)
#   OUT_DIR         log directory                            (default: scaling-$MODEL-$MODE,
#                   made absolute here so every job writes to the same place)
#   DRY_RUN=1       print the sbatch commands instead of submitting
#   SBATCH_SCRIPT   the job script (default: jobs/scaling_array.sbatch next to this file)
# When every job has finished:
#   /usr/bin/python3 bench/scaling/collect.py "$OUT_DIR" [--cores-per-node C]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL="${MODEL:-gmm}"
MODE="${MODE:-strong}"
NODES_LIST="${NODES_LIST:-1,2,4,8}"
REPS="${REPS:-3}"
TASKS_PER_NODE="${TASKS_PER_NODE:-1}"
CPUS_PER_TASK="${CPUS_PER_TASK:-16}"
TIME="${TIME:-00:30:00}"
OUT_DIR="${OUT_DIR:-scaling-${MODEL}-${MODE}}"
SBATCH_SCRIPT="${SBATCH_SCRIPT:-$here/scaling_array.sbatch}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
export MODEL MODE OUT_DIR

[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || { echo "REPS must be a positive integer" >&2; exit 64; }
[[ -r "$SBATCH_SCRIPT" ]] || { echo "$SBATCH_SCRIPT not found" >&2; exit 1; }
case "$MODE" in
  strong) : "${DATA:?MODE=strong: set DATA}" ;;
  weak)   : "${DATA_PATTERN:?MODE=weak: set DATA_PATTERN (a path containing {ranks})}" ;;
  *) echo "MODE must be strong or weak" >&2; exit 64 ;;
esac

submit() {  # prints the job id
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    echo "sbatch $*" >&2
    echo "DRYRUN$RANDOM"
  else
    sbatch --parsable "$@" | cut -d';' -f1
  fi
}

IFS=',' read -r -a nodes_list <<< "${NODES_LIST// /}"
(( ${#nodes_list[@]} > 0 )) || { echo "NODES_LIST is empty" >&2; exit 64; }
# Check every node count before submitting anything.
for n in "${nodes_list[@]}"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "bad node count '$n' in NODES_LIST" >&2; exit 64; }
  if [[ "$MODE" == weak && -z "${ROWS_PER_RANK:-}" ]]; then
    data="${DATA_PATTERN//\{ranks\}/$(( n * TASKS_PER_NODE ))}"
    [[ -d "$data" ]] || { echo "weak data $data is missing: generate it or set ROWS_PER_RANK" >&2; exit 66; }
  fi
done
jobs=()
for n in "${nodes_list[@]}"; do
  shape=(--nodes="$n" --ntasks-per-node="$TASKS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" --time="$TIME")
  dep=()
  if [[ "$MODE" == weak ]]; then
    ranks=$(( n * TASKS_PER_NODE ))
    data="${DATA_PATTERN//\{ranks\}/$ranks}"
    if [[ ! -d "$data" ]]; then
      gen=$(ACTION=generate submit "${shape[@]}" --job-name="latent-gen-r$ranks" --array=0 \
            --output="$OUT_DIR/generate-r$ranks-%j.out" "$@" "$SBATCH_SCRIPT")
      dep=(--dependency="afterok:$gen")
      echo "node count $n: generation of $data: job $gen"
    fi
  fi
  jid=$(ACTION=fit submit "${shape[@]}" --array="0-$(( REPS - 1 ))" ${dep[@]+"${dep[@]}"} \
        --output="$OUT_DIR/$MODEL-$MODE-n$n-%A_%a.out" "$@" "$SBATCH_SCRIPT")
  echo "node count $n: $REPS repetition(s): array job $jid"
  jobs+=("$jid")
done
echo "submitted ${#jobs[@]} array job(s): ${jobs[*]}"
echo "when they have finished: /usr/bin/python3 bench/scaling/collect.py $OUT_DIR --cores-per-node <cores>"
