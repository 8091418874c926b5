#!/usr/bin/env bash
# The test command (README.md): installs what is missing, builds with -Werror, runs ctest
# (unit, in-process CLI, MPI at 1/2/4 ranks, rank/thread invariance, bad input, checkpoints
# and faults, soak, scikit-learn reference, SLURM), then the unit and CLI tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer, and the libFuzzer targets for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash cmake/install-deps.sh --with-reference --with-python --with-slurm --with-fuzz --with-packaging --with-qemu
cmake --preset ci
cmake --build --preset ci
ctest --preset ci -j2 --timeout 900

cmake --preset asan
cmake --build --preset asan --target latent_tests
ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 OMPI_MCA_hwloc_base_binding_policy=none \
  ./build/asan/tests/latent_tests

# Fuzz the shard validator, the checkpoint reader and the importers (60 s each; crashes
# inside libhdf5 itself are reported as upstream, crashes in our code fail).
bash tests/fuzz/run_fuzz.sh 60
