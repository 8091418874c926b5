#!/usr/bin/env bash
# Runs latent on this machine under mpirun: RANKS processes, THREADS threads each.
#
# Usage: jobs/run_local.sh [-n RANKS] [-t THREADS] [-b LATENT_BIN] -- LATENT-ARGS...
#   -n RANKS    MPI ranks (default 2)
#   -t THREADS  appends `--threads THREADS` to LATENT-ARGS (only for subcommands that
#               take --threads, e.g. `fit`; default: not passed, latent decides)
#   -b BIN      latent binary (default: $LATENT_BIN, else <repo>/build/release/src/latent)
#
# Example:
#   jobs/run_local.sh -n 2 -t 1 -- fit gmm --data data/fashion-mnist/train \
#       --output /tmp/gmm.h5 --n-components 10 --covariance-type diag --overwrite
#
# Open MPI settings: allowed to run as root, no CPU binding (threads are managed by
# latent), no CMA single-copy (blocked in containers), no rsh agent (single node),
# --oversubscribe (more ranks than cores is allowed). Extra mpirun options can be
# given in MPIRUN_ARGS (word-split).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
ranks=2
threads=""
bin="${LATENT_BIN:-$repo/build/release/src/latent}"

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit "${1:-2}"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    -n) [[ $# -ge 2 ]] || usage; ranks="$2"; shift 2 ;;
    -t) [[ $# -ge 2 ]] || usage; threads="$2"; shift 2 ;;
    -b) [[ $# -ge 2 ]] || usage; bin="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    *) echo "run_local.sh: unexpected argument '$1' (latent arguments go after --)" >&2; usage ;;
  esac
done
[[ $# -gt 0 ]] || { echo "run_local.sh: no latent arguments given" >&2; usage; }
[[ "$ranks" =~ ^[1-9][0-9]*$ ]] || { echo "run_local.sh: -n needs a positive integer" >&2; exit 2; }
[[ -z "$threads" || "$threads" =~ ^[1-9][0-9]*$ ]] || { echo "run_local.sh: -t needs a positive integer" >&2; exit 2; }
[[ -x "$bin" ]] || { echo "run_local.sh: latent binary not found at $bin (build it or use -b / LATENT_BIN)" >&2; exit 1; }

args=("$@")
[[ -z "$threads" ]] || args+=(--threads "$threads")

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_hwloc_base_binding_policy=none
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_plm_rsh_agent=
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

# shellcheck disable=SC2086  # MPIRUN_ARGS is meant to be word-split
exec mpirun --oversubscribe -n "$ranks" ${MPIRUN_ARGS:-} "$bin" "${args[@]}"
