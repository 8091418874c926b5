#!/usr/bin/env bash
# Installs the Debian packages latent needs, if any is missing. Idempotent.
# Usage: cmake/install-deps.sh [--with-data] [--with-reference] [--with-slurm] [--with-fuzz]
#        [--with-packaging] [--with-python] [--with-qemu]
#   --with-data       also Debian's dataset-fashion-mnist (the main job's data)
#   --with-reference  also python3-sklearn/h5py/numpy/scipy/gensim/matplotlib and OpenBLAS (serial:
#                     the references run on a tuned BLAS, not netlib's) (reference fixtures,
#                     benchmarks and their plots; bench/scaling/collect.py in the SLURM test)
#   --with-fuzz       also clang-14 and its sanitizer/libFuzzer runtimes (tests/fuzz/)
#   --with-packaging  also debootstrap and man-db (tests/package/: the .deb in a clean
#                     Debian 12 root, man pages rendered with man -l)
#   --with-python     also pybind11 and the Python packages of the `latent` Python module
#                     (python/: numpy, scipy, scikit-learn, h5py, gensim; pandas for the
#                     estimator checks that take DataFrames; docs/PYTHON.md)
#   --with-qemu       also qemu-user (tests/cli/isa_qemu_test.py: the default build under an
#                     emulated Haswell, which has AVX2 and raises SIGILL on AVX-512)
#   --with-slurm      also slurm-wlm, munge and iproute2 (the SLURM tests, tests/slurm/; the daemons
#                     are not started: tests/slurm/cluster.sh runs a private cluster,
#                     cluster_two_node.sh a two-node one in network namespaces: ip netns)
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config openmpi-bin libopenmpi-dev
      libhdf5-openmpi-dev hdf5-tools libeigen3-dev libtbb-dev
      libboost-program-options-dev libgtest-dev nlohmann-json3-dev libfmt-dev libxxhash-dev
      zlib1g-dev libcsv-dev)
for arg in "$@"; do
  case "$arg" in
    --with-data) pkgs+=(dataset-fashion-mnist) ;;
    --with-reference) pkgs+=(python3 python3-numpy python3-h5py python3-sklearn python3-scipy python3-gensim libopenblas0-serial
                             python3-matplotlib) ;;
    --with-python) pkgs+=(python3 python3-dev pybind11-dev python3-pybind11 python3-numpy python3-scipy python3-sklearn
                          python3-h5py python3-gensim python3-pandas) ;;
    --with-slurm) pkgs+=(slurm-wlm munge iproute2) ;;
    --with-fuzz) pkgs+=(clang-14 libclang-rt-14-dev) ;;
    --with-packaging) pkgs+=(debootstrap man-db) ;;
    --with-qemu) pkgs+=(qemu-user) ;;
    *) echo "install-deps.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
