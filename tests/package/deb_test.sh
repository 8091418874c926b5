#!/usr/bin/env bash
# The Debian package installs and runs on a clean Debian 12 (issue 22 item 2): `cpack -G
# DEB` in the build directory, then a minimal bookworm root made by debootstrap in a
# directory this test owns, `apt-get install ./latent_*.deb` inside it (dependencies from
# Debian's archive, as a user would get them), and there `latent --version`, `man -w`-free
# checks of the installed files, and a small generate + fit + score on 1 and 2 ranks.
# Everything it mounts and creates is removed at exit. Exit 77 (skip) where it cannot run:
# not root, no debootstrap/chroot, or no Debian archive reachable.
# Usage: deb_test.sh BUILD_DIR
set -uo pipefail
build=$(cd "$1" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "deb_test: needs root (debootstrap, chroot); skipped"; exit 77; }
command -v debootstrap > /dev/null || { echo "deb_test: no debootstrap (apt-get install debootstrap); skipped"; exit 77; }
mirror="${LATENT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
work=$(mktemp -d /var/tmp/latent-deb-XXXXXX)
root="$work/root"
mounted=()
cleanup() {
  local m
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2> /dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
failures=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; failures=$((failures + 1)); }

(cd "$build" && cpack -G DEB > "$work/cpack.log" 2>&1) || { cat "$work/cpack.log"; echo "FAIL cpack -G DEB"; exit 1; }
deb=$(ls "$build"/latent_*.deb 2> /dev/null | head -1)
[ -n "$deb" ] || { cat "$work/cpack.log"; echo "FAIL no .deb produced"; exit 1; }
depends=$(dpkg-deb -f "$deb" Depends)
echo "$depends" | grep -q "libhdf5-openmpi" && echo "$depends" | grep -q "libtbb" && echo "$depends" | grep -q "openmpi-bin" &&
  pass "$(basename "$deb"): Depends: $depends" || fail "Depends lacks HDF5/TBB/openmpi-bin: $depends"
# (The listing is read whole: `| grep -q` would close the pipe early, and under pipefail the
# writer's SIGPIPE would make the test false.)
contents=$(dpkg-deb -c "$deb")
grep -q "usr/share/man/man1/latent-fit.1" <<< "$contents" && grep -q "usr/lib/cmake/latent/latentConfig.cmake" <<< "$contents" &&
  grep -q "bash-completion/completions/latent" <<< "$contents" && grep -q "usr/bin/latent" <<< "$contents" &&
  pass "the package holds the binary, CMake package, man pages and completion" || fail "package contents: $(head <<< "$contents")"

if ! timeout 900 debootstrap --variant=minbase bookworm "$root" "$mirror" > "$work/debootstrap.log" 2>&1; then
  tail -5 "$work/debootstrap.log"
  echo "deb_test: debootstrap of bookworm from $mirror failed (no archive reachable?); skipped"
  exit 77
fi
for m in proc sys dev dev/shm; do
  mount --bind "/$m" "$root/$m" && mounted+=("$root/$m")
done
cp "$deb" "$root/tmp/"
if chroot "$root" env DEBIAN_FRONTEND=noninteractive sh -c \
     "apt-get update -qq && apt-get install -y -qq --no-install-recommends /tmp/$(basename "$deb")" > "$work/install.log" 2>&1; then
  pass "apt-get install ./$(basename "$deb") in a clean Debian 12 root"
else
  tail -20 "$work/install.log"; fail "apt-get install of the package"
fi
env_vars="OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_hwloc_base_binding_policy=none OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_plm_rsh_agent= HDF5_USE_FILE_LOCKING=FALSE"
version=$(chroot "$root" env $env_vars latent --version 2>&1)
echo "$version" | grep -q "^latent " && echo "$version" | grep -q "HDF5: 1.10" && pass "latent --version in the root: $(echo "$version" | tr '\n' ';' | cut -c1-160)" ||
  fail "latent --version: $version"
run_in_root() { chroot "$root" env $env_vars sh -c "cd /tmp && $1" > "$work/run.log" 2>&1; }
if run_in_root "latent generate gmm --n-samples 2000 --n-features 4 --n-components 3 --seed 1 --output g --true-model none &&
                latent fit gmm --data g --output m1.h5 --n-components 3 --covariance-type diag --threads 1 &&
                mpirun -n 2 latent fit gmm --data g --output m2.h5 --n-components 3 --covariance-type diag --threads 1 &&
                latent score --model m1.h5 --data g > s1.json && mpirun -n 2 latent score --model m2.h5 --data g > s2.json &&
                cmp s1.json s2.json && grep -q mean_log_likelihood s1.json"; then
  pass "generate, fit and score in the root on 1 and 2 ranks (the same scores)"
else
  tail -20 "$work/run.log"; fail "a small fit in the root"
fi
[ $failures -eq 0 ] && echo "deb_test: all passed" || echo "deb_test: $failures failure(s)"
[ $failures -eq 0 ]
