#!/usr/bin/env bash
# The main job: from a fresh Debian 12 machine to a fitted, scored Fashion-MNIST GMM.
#
#   bash jobs/main_fashion_mnist.sh          (from the repository root; as root or as
#                                            a user with sudo rights)
#
# Steps
#   1. cmake/install-deps.sh --with-data: Debian packages (compiler, CMake, Ninja,
#      Open MPI, HDF5, TBB, ... and dataset-fashion-mnist); uses sudo if not root,
#      does nothing if all are installed.
#   2. cmake --preset release && cmake --build --preset release
#   3. latent import dense: Fashion-MNIST train/test images with labels into
#      data/fashion-mnist/{train,test} (pixels scaled to [0,1]); skipped if present.
#   4. latent fit gmm: 10 components, diagonal covariances, reg_covar 1e-3, on
#      RANKS MPI ranks x THREADS threads -> data/fashion-mnist/gmm10.h5
#      (iteration log: data/fashion-mnist/gmm10.log.jsonl)
#   5. latent score on the test split; prints held-out mean log-likelihood
#      (nats/sample), adjusted Rand index and purity against the test labels.
#
# Environment (all optional)
#   RANKS=2                MPI ranks
#   THREADS=max(1,nproc/2) threads per rank
#   FASHION_MNIST_DIR=/usr/share/datasets/fashion-mnist   IDX .gz files
#   DATA_DIR=data/fashion-mnist   where the imported data, model and log go
#   SKIP_DEPS=1            skip step 1 (packages already installed by other means)
#   SKIP_BUILD=1           skip step 2 (use the existing build/release)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

nproc_="$(nproc 2>/dev/null || echo 1)"
RANKS="${RANKS:-2}"
THREADS="${THREADS:-$(( nproc_ / 2 > 1 ? nproc_ / 2 : 1 ))}"
FASHION_MNIST_DIR="${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"
DATA_DIR="${DATA_DIR:-data/fashion-mnist}"
MODEL="$DATA_DIR/gmm10.h5"
LATENT="$repo/build/release/src/latent"

step() { printf '\n==> %s\n' "$*"; }

# Open MPI: allowed as root, no CPU binding (latent manages its threads), no CMA
# single-copy (unavailable in many containers), no rsh agent (single node).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_hwloc_base_binding_policy=none
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_plm_rsh_agent=
mpi() { mpirun --oversubscribe -n "$RANKS" "$LATENT" "$@"; }

# Value of a numeric field in a one-line JSON object, or "n/a" (no jq/python needed).
json_num() {
  local v
  v="$(printf '%s\n' "$1" | grep -o "\"$2\"[[:space:]]*:[[:space:]]*[-+0-9.eE]*" | head -n 1 |
       sed 's/^.*:[[:space:]]*//')" || true
  printf '%s' "${v:-n/a}"
}

if [[ "${SKIP_DEPS:-0}" != 1 ]]; then
  step "1/5 installing dependencies (cmake/install-deps.sh --with-data)"
  bash cmake/install-deps.sh --with-data
fi

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  step "2/5 building (release preset)"
  cmake --preset release
  cmake --build --preset release
fi
[[ -x "$LATENT" ]] || { echo "error: $LATENT was not built" >&2; exit 1; }

step "3/5 importing Fashion-MNIST into $DATA_DIR"
import_split() {  # split images labels
  local dest="$DATA_DIR/$1"
  if compgen -G "$dest/part-*.h5" >/dev/null; then
    echo "$dest: present, skipping import"
    return
  fi
  for f in "$2" "$3"; do
    [[ -f "$FASHION_MNIST_DIR/$f" ]] || {
      echo "error: $FASHION_MNIST_DIR/$f not found (Debian package dataset-fashion-mnist)" >&2; exit 1; }
  done
  mkdir -p "$DATA_DIR"
  # The import writes a temporary directory and renames it at the end, so a
  # present $dest is always complete; --overwrite replaces a shard-less leftover.
  "$LATENT" import dense --format idx --input "$FASHION_MNIST_DIR/$2" \
    --labels "$FASHION_MNIST_DIR/$3" --output "$dest" --overwrite
}
import_split train train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz
import_split test t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz

step "4/5 fitting a 10-component diagonal GMM on $RANKS ranks x $THREADS threads"
start=$SECONDS
mpi fit gmm --data "$DATA_DIR/train" --output "$MODEL" \
  --n-components 10 --covariance-type diag --reg-covar 1e-3 \
  --threads "$THREADS" --log-json "$DATA_DIR/gmm10.log.jsonl" --overwrite
fit_seconds=$(( SECONDS - start ))

step "5/5 scoring on the test split"
score_out="$(mpi score --model "$MODEL" --data "$DATA_DIR/test")"
score_json="$(printf '%s\n' "$score_out" | grep '^[[:space:]]*{' | tail -n 1)"
[[ -n "$score_json" ]] || { echo "error: latent score printed no JSON:" >&2; echo "$score_out" >&2; exit 1; }

cat <<EOF

============================================================
 Fashion-MNIST, Gaussian mixture (K=10, diag, reg_covar 1e-3)
 model: $MODEL   (fit: ${fit_seconds} s on ${RANKS} x ${THREADS})
------------------------------------------------------------
 test samples                 : $(json_num "$score_json" n_samples)
 held-out mean log-likelihood : $(json_num "$score_json" mean_log_likelihood) nats/sample
 adjusted Rand index          : $(json_num "$score_json" adjusted_rand_index)
 purity                       : $(json_num "$score_json" purity)
 BIC                          : $(json_num "$score_json" bic)
============================================================
 full score JSON: $score_json
EOF
