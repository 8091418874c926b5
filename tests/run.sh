#!/usr/bin/env bash
# The test command (README.md): installs what is missing, builds with -Werror, runs ctest
# (unit, in-process CLI, MPI at 1/2/4 ranks, rank/thread invariance, bad input).
set -euo pipefail
cd "$(dirname "$0")/.."
bash cmake/install-deps.sh --with-reference
cmake --preset ci
cmake --build --preset ci
ctest --preset ci -j2 --timeout 900
