#!/usr/bin/env bash
# Remote-shell agent for mpirun on the two-node test cluster (tests/slurm/cluster_two_node.sh):
#   OMPI_MCA_plm_rsh_agent=tests/slurm/netns_rsh.sh mpirun --host node1:2,node2:2 ...
# Open MPI calls it as `AGENT HOST COMMAND...` to start its daemon (orted) on HOST, as
# it would call ssh; this runs COMMAND in HOST's namespaces (those of its slurmd) via
# `cluster_two_node.sh on`. On a real cluster the agent is ssh (Open MPI's default).
# HOST: node1, node2 or their addresses 10.231.77.1, 10.231.77.2.
set -euo pipefail
while [[ $# -gt 0 && "$1" == -* ]]; do shift; done   # ssh-style options (none expected)
[[ $# -ge 2 ]] || { echo "usage: $0 HOST COMMAND..." >&2; exit 2; }
host="$1"; shift
case "$host" in
  node1|10.231.77.1) node=node1 ;;
  node2|10.231.77.2) node=node2 ;;
  *) echo "netns_rsh.sh: unknown host '$host' (node1 or node2)" >&2; exit 255 ;;
esac
# Like ssh: the remote side gets one command line, run by a shell.
exec bash "$(dirname "${BASH_SOURCE[0]}")/cluster_two_node.sh" on "$node" sh -c "$*"
