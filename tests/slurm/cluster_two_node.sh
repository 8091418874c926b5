#!/usr/bin/env bash
# A private two-node SLURM cluster on one machine, for tests: two network namespaces.
#
# Usage: tests/slurm/cluster_two_node.sh start|stop|status|on NODE CMD...|pid NODE
#   start   create two network namespaces joined by a veth pair, the munge key and
#           slurm.conf under $LATENT_SLURM2_DIR (default /tmp/latent-slurm2), start
#           munged, slurmctld (on node1) and one slurmd per node, and wait until both
#           nodes are idle. Refuses (77) when the namespaces already exist.
#   stop    scancel every job, stop the daemons whose PIDs start recorded, then every
#           process still inside the two namespaces (job steps, orted, ranks), then
#           delete the namespaces (and with them the veth pair). Idempotent.
#   status  state of the recorded daemons and of the nodes; exit 0 if up.
#   on NODE CMD...  run CMD "on" node1 or node2: inside that node's network, UTS
#           (hostname) and mount namespaces, those of its slurmd (nsenter). Clients
#           (sbatch, squeue, srun, mpirun) run `on node1`, the login/head node; on a
#           real cluster this is `ssh nodeN CMD`.
#   pid NODE  PID of the node's slurmd (its namespaces are the node).
#
# The "machines":
#   node1  network namespace latent2n-node1, hostname node1, 10.231.77.1/24 on veth
#          l2n-v1; runs slurmctld and slurmd.
#   node2  network namespace latent2n-node2, hostname node2, 10.231.77.2/24 on veth
#          l2n-v2; runs slurmd.
#   The addresses exist only inside the namespaces (no route from the host). The host's
#   filesystem is the shared filesystem: $DIR/shared (and every other path) is seen by
#   both nodes alike. $DIR/local is node-local: each slurmd runs in its own mount
#   namespace in which $DIR/node1-local resp. $DIR/node2-local is bind-mounted on it,
#   so a file written there on node1 does not exist on node2 (as /tmp or /local/scratch
#   on a real cluster). munged runs in the host's namespaces; its socket is a path on
#   the shared filesystem, which both network namespaces reach (pathname UNIX sockets
#   do not belong to a network namespace; on a real cluster each node runs its own
#   munged with the same key).
#
# Exit codes: 0 ok; 1 failure (logs under $DIR/log); 77 cannot run here (slurm-wlm,
# munge, iproute2 or util-linux absent, not root, network namespaces not permitted, or
# the namespaces exist already).
#
# Every path lives under $DIR. Cleanup is strict: stop kills only processes that start
# recorded or that live in the two namespaces it created, and removes both namespaces;
# no mount outlives its mount namespace (they die with the last process in them), and
# the /run/netns bind mount that the first `ip netns add` makes is removed if this run
# made it.
set -euo pipefail

DIR="${LATENT_SLURM2_DIR:-/tmp/latent-slurm2}"
CONF="$DIR/etc/slurm.conf"
PIDS="$DIR/run/daemons.pids"          # "name pid" lines, written by start
NS_PREFIX="latent2n"
NODES=(node1 node2)
declare -A ADDR=([node1]=10.231.77.1 [node2]=10.231.77.2)
declare -A VETH=([node1]=l2n-v1 [node2]=l2n-v2)
START_TIMEOUT="${LATENT_SLURM_START_TIMEOUT:-60}"

log() { printf 'cluster_two_node.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
skip() { log "skipped: $*"; exit 77; }
ns() { printf '%s-%s' "$NS_PREFIX" "$1"; }

alive() {
  local pid="$1" state
  [[ -r /proc/$pid/stat ]] || return 1
  state="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

recorded_pid() {
  [[ -f "$PIDS" ]] || return 0
  awk -v n="$1" '$1 == n { print $2 }' "$PIDS" | tail -n 1
}

ns_exists() { [[ -e "/run/netns/$(ns "$1")" ]]; }

# Run a command in the namespaces of node $1's slurmd (network, UTS, mount).
on_node() {
  local node="$1" p; shift
  p="$(recorded_pid "slurmd-$node")"
  if [[ -z "$p" ]] || ! alive "$p"; then die "$node is not up (no slurmd)"; fi
  exec nsenter --target "$p" --net --uts --mount -- "$@"
}

node_states() {  # "node1 idle" lines
  local p; p="$(recorded_pid slurmd-node1)"
  [[ -n "$p" ]] && alive "$p" || return 0
  nsenter --target "$p" --net --uts --mount -- env SLURM_CONF="$CONF" \
    timeout 10 sinfo -h -N -o '%N %t' 2>/dev/null || true
}

wait_pidfile() {
  local f="$1" deadline=$(( SECONDS + $2 ))
  while (( SECONDS < deadline )); do
    if [[ -s "$f" ]]; then
      local p; p="$(tr -dc '0-9' < "$f")"
      if [[ -n "$p" ]] && alive "$p"; then echo "$p"; return 0; fi
    fi
    sleep 0.1
  done
  return 1
}

tail_logs() {
  local f
  for f in "$DIR"/log/*.log; do
    [[ -f "$f" ]] || continue
    log "---- last lines of $f"; tail -n 15 "$f" >&2 || true
  done
}

write_conf() {
  local hw cpus mem
  hw="$(slurmd -C 2>/dev/null | grep -m1 '^NodeName=')" || die "slurmd -C failed"
  cpus="$(grep -o 'CPUs=[0-9]*' <<< "$hw" | cut -d= -f2)"
  mem="$(grep -o 'RealMemory=[0-9]*' <<< "$hw" | cut -d= -f2)"
  # Each "node" declares the machine's CPUs (both share them: 2 x 2 ranks oversubscribe
  # a 2-core machine) and half its memory.
  cat > "$CONF.tmp" <<EOF
# Generated by tests/slurm/cluster_two_node.sh: private two-node test cluster under $DIR
ClusterName=latent-2n
SlurmctldHost=node1(${ADDR[node1]})
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
TmpFS=$DIR/local
PlugStackConfig=$DIR/etc/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
SwitchType=switch/none
MailProg=/bin/true
JobRequeue=1
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=5,sched_interval=5
KillWait=5
MinJobAge=600
ReturnToService=2
InactiveLimit=0
MessageTimeout=10
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
NodeName=node1 NodeAddr=${ADDR[node1]} CPUs=$cpus RealMemory=$(( mem / 2 )) State=UNKNOWN
NodeName=node2 NodeAddr=${ADDR[node2]} CPUs=$cpus RealMemory=$(( mem / 2 )) State=UNKNOWN
PartitionName=debug Nodes=node1,node2 Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
  : > "$DIR/etc/plugstack.conf"
}

cmd_start() {
  local b n p
  for b in munged mungekey slurmctld slurmd sinfo sbatch scontrol scancel squeue srun ip unshare nsenter mountpoint; do
    command -v "$b" >/dev/null 2>&1 || skip "$b not found (Debian packages slurm-wlm munge iproute2 util-linux)"
  done
  [[ "$(id -u)" -eq 0 ]] || skip "must run as root (network namespaces, SlurmUser=root)"
  for n in "${NODES[@]}"; do
    ns_exists "$n" && skip "network namespace $(ns "$n") exists already (another run? '$0 stop' removes it)"
  done
  [[ ! -f "$PIDS" ]] || cmd_stop

  mkdir -p "$DIR"/{etc,munge,state,spool,log,run,local,shared,node1-local,node2-local}
  chmod 755 "$DIR" "$DIR/munge"
  chmod 700 "$DIR/state" "$DIR/spool"
  chmod 1777 "$DIR/local" "$DIR/node1-local" "$DIR/node2-local"
  : > "$PIDS"

  # The network: two namespaces, one veth pair, addresses only inside them. The first
  # `ip netns add` on a machine bind-mounts /run/netns onto itself: if this run makes
  # that mount, stop removes it again.
  if ! mountpoint -q /run/netns 2>/dev/null; then echo "runnetns-mount 1" >> "$PIDS"; fi
  for n in "${NODES[@]}"; do
    ip netns add "$(ns "$n")" 2>/dev/null || { cmd_stop || true; skip "ip netns add not permitted here"; }
    echo "netns-$n $(ns "$n")" >> "$PIDS"
  done
  ip link add "${VETH[node1]}" netns "$(ns node1)" type veth peer name "${VETH[node2]}" netns "$(ns node2)" ||
    { cmd_stop || true; die "cannot create the veth pair"; }
  for n in "${NODES[@]}"; do
    ip -n "$(ns "$n")" addr add "${ADDR[$n]}/24" dev "${VETH[$n]}"
    ip -n "$(ns "$n")" link set "${VETH[$n]}" up
    ip -n "$(ns "$n")" link set lo up
  done

  # munge (host namespaces; the socket is a path both nodes reach).
  [[ -s "$DIR/etc/munge.key" ]] || mungekey --create --keyfile "$DIR/etc/munge.key" >/dev/null 2>&1 ||
    { cmd_stop || true; die "mungekey --create failed"; }
  chown root:root "$DIR/etc/munge.key"; chmod 600 "$DIR/etc/munge.key"
  rm -f "$DIR/munge/munge.socket" "$DIR/munge/munge.socket.lock" "$DIR/run/munged.pid"
  munged --force --key-file "$DIR/etc/munge.key" --socket "$DIR/munge/munge.socket" \
    --pid-file "$DIR/run/munged.pid" --log-file "$DIR/log/munged.log" \
    --seed-file "$DIR/munge/munged.seed" || { tail_logs; cmd_stop || true; die "munged failed to start"; }
  p="$(wait_pidfile "$DIR/run/munged.pid" 10)" || { tail_logs; cmd_stop || true; die "munged did not start"; }
  echo "munged $p" >> "$PIDS"

  write_conf
  rm -f "$DIR"/run/slurm*.pid

  # One slurmd per node, in the node's network namespace with its own hostname and a
  # mount namespace in which $DIR/nodeN-local is $DIR/local.
  for n in "${NODES[@]}"; do
    mkdir -p "$DIR/spool/$n"; chmod 700 "$DIR/spool/$n"
    # (nsenter --net, not `ip netns exec`: that remounts /sys, hiding the cgroup
    # filesystem slurmd needs.)
    # shellcheck disable=SC2016  # expanded by the inner sh
    nsenter --net="/run/netns/$(ns "$n")" unshare --uts --mount --propagation private \
      sh -c 'hostname "$1" && mount --bind "$2" "$3" && exec slurmd -f "$4" -N "$1"' \
      sh "$n" "$DIR/$n-local" "$DIR/local" "$CONF" ||
      { tail_logs; cmd_stop || true; die "slurmd on $n failed to start"; }
    p="$(wait_pidfile "$DIR/run/slurmd-$n.pid" 20)" || { tail_logs; cmd_stop || true; die "slurmd on $n did not start"; }
    echo "slurmd-$n $p" >> "$PIDS"
  done
  # slurmctld on node1 (its namespaces: those of node1's slurmd).
  p="$(recorded_pid slurmd-node1)"
  nsenter --target "$p" --net --uts --mount -- slurmctld -f "$CONF" -i ||
    { tail_logs; cmd_stop || true; die "slurmctld failed to start"; }
  p="$(wait_pidfile "$DIR/run/slurmctld.pid" 20)" || { tail_logs; cmd_stop || true; die "slurmctld did not start"; }
  echo "slurmctld $p" >> "$PIDS"

  local deadline=$(( SECONDS + START_TIMEOUT )) states=""
  while (( SECONDS < deadline )); do
    states="$(node_states | tr '\n' ' ')"
    [[ "$states" == "node1 idle node2 idle " ]] && break
    sleep 0.2
  done
  if [[ "$states" != "node1 idle node2 idle " ]]; then
    tail_logs; cmd_stop || true
    die "nodes not idle after ${START_TIMEOUT}s (sinfo: '${states:-nothing}')"
  fi
  log "two-node cluster up in $DIR (node1 ${ADDR[node1]}, node2 ${ADDR[node2]}; clients: $0 on node1 CMD)"
}

stop_pid() {
  local name="$1" pid="$2" i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for (( i = 0; i < 100; i++ )); do alive "$pid" || return 0; sleep 0.1; done
  log "$name ($pid) ignored SIGTERM for 10 s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for (( i = 0; i < 50; i++ )); do alive "$pid" || return 0; sleep 0.1; done
  log "warning: $name ($pid) still alive"; return 1
}

# PIDs of the live processes whose network namespace is that of namespace $1.
ns_pids() {
  ip netns pids "$1" 2>/dev/null | while read -r p; do alive "$p" && echo "$p"; done || true
}

cmd_stop() {
  local p ok=0 name n i
  p="$(recorded_pid slurmctld)"
  if [[ -n "$p" ]] && alive "$p" && [[ -f "$CONF" ]]; then
    local q; q="$(recorded_pid slurmd-node1)"
    if [[ -n "$q" ]] && alive "$q"; then
      nsenter --target "$q" --net --uts --mount -- env SLURM_CONF="$CONF" \
        timeout 10 scancel --quiet --user="$(id -un)" 2>/dev/null || true
      local deadline=$(( SECONDS + 20 )) left=0
      while (( SECONDS < deadline )); do
        left="$(nsenter --target "$q" --net --uts --mount -- env SLURM_CONF="$CONF" timeout 10 \
                squeue -h -t running,completing,configuring,suspended -o %i 2>/dev/null | wc -l)" || left=0
        (( left == 0 )) && break
        sleep 0.5
      done
      (( left == 0 )) || log "warning: $left job(s) still running after 20 s; stopping anyway"
    fi
  fi
  for name in slurmd-node2 slurmd-node1 slurmctld munged; do
    p="$(recorded_pid "$name")"
    [[ -z "$p" ]] || stop_pid "$name" "$p" || ok=1
  done
  # Whatever still runs inside the namespaces was started in them (job steps, orted,
  # ranks, the test's own clients): end it, then delete the namespaces.
  for n in "${NODES[@]}"; do
    ns_exists "$n" || continue
    local pids; pids="$(ns_pids "$(ns "$n")")"
    if [[ -n "$pids" ]]; then
      log "stopping processes left in $(ns "$n"): $(tr '\n' ' ' <<< "$pids")"
      # shellcheck disable=SC2086
      kill -TERM $pids 2>/dev/null || true
      for (( i = 0; i < 50; i++ )); do [[ -z "$(ns_pids "$(ns "$n")")" ]] && break; sleep 0.1; done
      pids="$(ns_pids "$(ns "$n")")"
      # shellcheck disable=SC2086
      [[ -z "$pids" ]] || kill -KILL $pids 2>/dev/null || true
      for (( i = 0; i < 50; i++ )); do [[ -z "$(ns_pids "$(ns "$n")")" ]] && break; sleep 0.1; done
    fi
    if grep -q "^netns-$n " "$PIDS" 2>/dev/null; then
      ip netns del "$(ns "$n")" 2>/dev/null || { log "warning: cannot delete $(ns "$n")"; ok=1; }
    fi
  done
  if grep -q '^runnetns-mount ' "$PIDS" 2>/dev/null && mountpoint -q /run/netns &&
     [[ -z "$(ls -A /run/netns 2>/dev/null)" ]]; then
    umount /run/netns 2>/dev/null || log "warning: cannot unmount /run/netns (made by ip netns add)"
  fi
  rm -f "$PIDS"
  (( ok == 0 )) || { log "error: some daemons or namespaces could not be removed"; return 1; }
  log "two-node cluster in $DIR stopped"
}

cmd_status() {
  local name p rc=0
  for name in munged slurmctld slurmd-node1 slurmd-node2; do
    p="$(recorded_pid "$name")"
    if [[ -n "$p" ]] && alive "$p"; then echo "$name: running (pid $p)"; else echo "$name: stopped"; rc=1; fi
  done
  (( rc != 0 )) || node_states
  return $rc
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  on) [[ $# -ge 3 && " ${NODES[*]} " == *" $2 "* ]] || die "usage: $0 on node1|node2 CMD..."
      n="$2"; shift 2; SLURM_CONF="$CONF" on_node "$n" env SLURM_CONF="$CONF" "$@" ;;
  pid) p="$(recorded_pid "slurmd-${2:-}")"; [[ -n "$p" ]] || die "no slurmd for '${2:-}'"; echo "$p" ;;
  *) sed -n '2,40p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
