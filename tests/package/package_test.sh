#!/usr/bin/env bash
# The installed tree works as a library and as a tool (issue 22 items 1 and 3):
#  - `cmake --install` of the build into a fresh prefix; a consumer project
#    (tests/package/consumer) configures with find_package(latent CONFIG REQUIRED), builds
#    against the installed headers and latent::engine, and fits LDA through the library on 1
#    and 2 ranks (the same bound perplexity);
#  - the man pages render with `man -l` without warnings and have NAME, DESCRIPTION,
#    EXAMPLES, EXIT STATUS, ENVIRONMENT and FILES; every command has a page;
#  - the bash completion parses and completes commands, models and options;
#  - `latent --version` names the compiler, target ISA, MPI, HDF5, oneTBB and Eigen.
# Usage: package_test.sh BUILD_DIR MPIEXEC
set -uo pipefail
build=$(cd "$1" && pwd); mpiexec=$2
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/latent-package-XXXXXX)
trap 'rm -rf "$work"' EXIT
failures=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; failures=$((failures + 1)); }

cmake --install "$build" --prefix "$work/prefix" > "$work/install.log" 2>&1 || { cat "$work/install.log"; fail "cmake --install"; }
[ -x "$work/prefix/bin/latent" ] && [ -f "$work/prefix/lib/cmake/latent/latentConfig.cmake" ] &&
  [ -f "$work/prefix/lib/cmake/latent/latentConfigVersion.cmake" ] && [ -f "$work/prefix/include/latent/models/registry.hpp" ] &&
  ls "$work/prefix"/lib/liblatent_engine.* > /dev/null 2>&1 && pass "installed: binary, library, headers, package config" ||
  fail "installed tree incomplete: $(cd "$work/prefix" && find . -maxdepth 3 | tr '\n' ' ')"

if cmake -S "$src/tests/package/consumer" -B "$work/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" \
     -DCMAKE_BUILD_TYPE=Release > "$work/configure.log" 2>&1 &&
   cmake --build "$work/consumer" > "$work/build.log" 2>&1; then
  pass "consumer project: find_package(latent CONFIG REQUIRED) and latent::engine build"
  mkdir -p "$work/one" "$work/two"
  one=$("$work/consumer/consumer" "$work/one" 2> "$work/one.err"); c1=$?
  two=$("$mpiexec" -n 2 "$work/consumer/consumer" "$work/two" 2> "$work/two.err"); c2=$?
  p1=$(echo "$one" | sed -n 's/.*"bound_perplexity": \([0-9.e+-]*\).*/\1/p')
  p2=$(echo "$two" | sed -n 's/.*"bound_perplexity": \([0-9.e+-]*\).*/\1/p')
  if [ $c1 -eq 0 ] && [ $c2 -eq 0 ] && [ -n "$p1" ] && [ "$p1" = "$p2" ] && grep -q '"documents": 300' <<< "$one"; then
    pass "consumer fits LDA through the library on 1 and 2 ranks (bound perplexity $p1 both)"
  else
    fail "consumer run: exit $c1/$c2, output '$one' / '$two', $(cat "$work/one.err" "$work/two.err" | head -5)"
  fi
else
  fail "consumer project: $(cat "$work/configure.log" "$work/build.log" 2> /dev/null | tail -20)"
fi

man_dir="$work/prefix/share/man/man1"
for cmd in latent latent-import latent-generate latent-fit latent-score latent-predict latent-transform latent-sample \
           latent-impute latent-select latent-info latent-export; do
  page="$man_dir/$cmd.1"
  if [ ! -f "$page" ]; then fail "man page $cmd.1 missing"; continue; fi
  text=$(MANWIDTH=100 man -l "$page" 2> "$work/man.err")
  warnings=$(grep -v "^$" "$work/man.err" | head -3)
  missing=""
  for s in NAME DESCRIPTION "EXIT STATUS" ENVIRONMENT FILES "SEE ALSO"; do
    # A here-string, not `echo | grep -q`: grep -q stops at the first match, and under
    # pipefail the echo of a long page then dies of SIGPIPE and the check fails at random.
    grep -q "^$s" <<< "$text" || missing="$missing $s"
  done
  if [ -z "$warnings" ] && [ -z "$missing" ] && grep -q "LATENT_FAULT" <<< "$text"; then :; else
    fail "man -l $cmd.1: warnings '$warnings', missing sections:$missing"
  fi
done
fit_page=$(MANWIDTH=100 man -l "$man_dir/latent-fit.1" 2> /dev/null)
grep -q "^FIT MFA" <<< "$fit_page" && grep -q "^EXAMPLES" <<< "$fit_page" && grep -q -- "--n-factors" <<< "$fit_page" &&
  pass "man pages render without warnings; latent-fit(1) has every model's options and EXAMPLES" ||
  fail "latent-fit(1) lacks a model section or EXAMPLES"

completion="$work/prefix/share/bash-completion/completions/latent"
if bash -n "$completion"; then
  got=$(bash -c "source '$completion'
    COMP_WORDS=(latent fi); COMP_CWORD=1; _latent; echo \"\${COMPREPLY[*]}\"
    COMP_WORDS=(latent fit mf); COMP_CWORD=2; _latent; echo \"\${COMPREPLY[*]}\"
    COMP_WORDS=(latent fit mfa --n-fac); COMP_CWORD=3; _latent; echo \"\${COMPREPLY[*]}\"
    COMP_WORDS=(latent generate l); COMP_CWORD=2; _latent; echo \"\${COMPREPLY[*]}\"")
  [ "$got" = "$(printf 'fit\nmfa\n--n-factors\nlda')" ] && pass "bash completion: commands, models, options, generators" ||
    fail "bash completion gave: $got"
else
  fail "bash completion does not parse"
fi

version=$("$work/prefix/bin/latent" --version)
for field in "compiler: GCC" "target ISA:" "MPI: Open MPI" "HDF5: 1." "oneTBB: 20" "Eigen: 3."; do
  grep -q "$field" <<< "$version" || { fail "--version lacks '$field': $version"; break; }
done
grep -q "compiler: GCC" <<< "$version" && grep -q "Eigen: 3." <<< "$version" && pass "--version names the build and libraries"

# `latent export --format gensim` from the installed tree finds the Python package installed
# beside the binary (<prefix>/lib/python3*/dist-packages), with no PYTHONPATH.
if ls "$work"/prefix/lib/python3*/dist-packages/latent/__init__.py > /dev/null 2>&1; then
  inst="$work/prefix/bin/latent"
  if "$inst" generate lda --n-samples 60 --vocab-size 30 --n-components 2 --output "$work/corpus" --true-model none \
       > /dev/null 2>&1 &&
     "$inst" fit lda --data "$work/corpus" --n-topics 2 --max-iter 2 --output "$work/lda.h5" > /dev/null 2>&1 &&
     env -u PYTHONPATH "$inst" export --model "$work/lda.h5" --data "$work/corpus" --format gensim \
       --output "$work/lda.gensim" > "$work/export.log" 2>&1 &&
     /usr/bin/python3 -c "
import sys, h5py, numpy as np
from gensim.models import LdaModel
lam = h5py.File(sys.argv[2], 'r')['components'][()]
sys.exit(0 if np.abs(LdaModel.load(sys.argv[1]).get_topics() - lam / lam.sum(1, keepdims=True)).max() < 1e-12 else 1)
" "$work/lda.gensim" "$work/lda.h5"; then
    pass "installed latent export --format gensim runs the installed Python package; gensim loads it"
  else
    fail "installed latent export --format gensim: $(tail -5 "$work/export.log" 2> /dev/null)"
  fi
else
  echo "skip installed export --format gensim: no Python package in the installed tree (LATENT_PYTHON=OFF)"
fi

[ $failures -eq 0 ] && echo "package_test: all passed" || echo "package_test: $failures failure(s)"
[ $failures -eq 0 ]
