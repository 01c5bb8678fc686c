#!/usr/bin/env bash
# The host side of the test cluster's node (test/e2e/harness/node.ts): everything that changes
# this machine, and its undoing. Root only.
#
#   node-host.sh claim OWNER   pick a free slot N (0-59), make its network, print N
#   node-host.sh down N        tear slot N down, whatever state it is in; idempotent
#   node-host.sh list          the slots in use: N, owner, and whether the owner still runs
#
# Slot N owns, and nothing else on the machine is touched:
#   network namespace mooring-node-N   the node: containerd, kubelet, scheduler, controller-manager,
#                                      the CNI bridge mooring0 and the Pods' veths all live in it;
#                                      no default route, so nothing a Pod sends can leave the machine
#   veth mooring-hN <-> eth0           host 10.217.0.(4N+1)/30, node 10.217.0.(4N+2)/30
#   route 10.217.(N+1).0/24 via node   the Pods' addresses, reachable from the host
#   /tmp/mooring-node-N                state, data, logs (DIR below)
#   cgroup /mooring-node-N             in every v1 hierarchy (the kubelet's --cgroup-root)
# and, shared by all slots (saved by the first claim, restored by the last down, under a lock):
# the kernel settings that the kubelet changes, and /var/lib/kubelet/device-plugins, where every
# kubelet puts its device-plugin socket whatever its --root-dir.
#
# A slot is claimed by creating its network namespace (atomic). OWNER is the pid of the process
# that holds it (its death makes the slot stale: the next claim tears it down first) or
# `persistent` (make cluster-up: only `down` frees it).
set -uo pipefail

MAX_SLOTS=60
LOCK=/run/mooring-node.lock
SAVED=/run/mooring-node.saved
# What the kubelet sets at start (pkg/kubelet/cm: setupKernelTunables) and the CNI bridge would
# set in the host if it ran there.
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

step() { [ "${NODE_HOST_VERBOSE:-0}" = 1 ] && printf '[node-host] %3ss %s\n' "$SECONDS" "$*" >&2; return 0; }
die() {
  printf '[node-host] ERROR: %s\n' "$*" >&2
  exit 1
}
[ "$(id -u)" -eq 0 ] || die 'needs root (network namespaces, mounts, cgroups)'

slot_dir() { printf '/tmp/mooring-node-%s' "$1"; }
slot_netns() { printf 'mooring-node-%s' "$1"; }
host_if() { printf 'mooring-h%s' "$1"; }
host_ip() { printf '10.217.0.%s' $((4 * $1 + 1)); }
node_ip() { printf '10.217.0.%s' $((4 * $1 + 2)); }
pod_cidr() { printf '10.217.%s.0/24' $(($1 + 1)); }
cgroup_name() { printf 'mooring-node-%s' "$1"; }

# Slots whose namespace exists.
slots_in_use() {
  ip netns list 2>/dev/null | sed -n 's/^mooring-node-\([0-9]\{1,2\}\)\( .*\)\{0,1\}$/\1/p' | sort -n
}

owner_alive() { # N
  local owner
  owner="$(cat "$(slot_dir "$1")/owner" 2>/dev/null || true)"
  [ "$owner" = persistent ] && return 0
  [ -n "$owner" ] && kill -0 "$owner" 2>/dev/null
}

# The machine as it was before the first slot: "sysctl KEY=VALUE" and "absent PATH" lines.
save_machine() {
  [ -f "$SAVED" ] && return 0
  local key p
  {
    for key in "${SYSCTLS[@]}"; do printf 'sysctl %s=%s\n' "$key" "$(sysctl -n "$key")"; done
    for p in /var/lib/kubelet/device-plugins /var/lib/kubelet; do
      [ -e "$p" ] || printf 'absent %s\n' "$p"
    done
  } >"$SAVED.tmp"
  mv "$SAVED.tmp" "$SAVED"
}

restore_machine() {
  [ -f "$SAVED" ] || return 0
  local kind value
  while read -r kind value; do
    case "$kind" in
    sysctl) sysctl -q -w "$value" >/dev/null ;;
    absent)
      # Only what a kubelet of ours left there: its socket, then the directories if empty.
      rm -f "$value/kubelet.sock"
      rmdir "$value" 2>/dev/null
      ;;
    esac
  done <"$SAVED"
  rm -f "$SAVED"
}

# The processes that node.ts recorded in DIR/pids, one "NAME PID START" line each (START: the
# process's start time, field 22 of /proc/PID/stat, so that a reused pid is never signalled).
start_time() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }
recorded() { # DIR NAME...: the pids of those names that still run
  local dir="$1" name pid start want
  shift
  [ -f "$dir/pids" ] || return 0
  while read -r name pid start; do
    for want in "$@"; do
      [ "$name" = "$want" ] && [ "$(start_time "$pid")" = "$start" ] && printf '%s\n' "$pid"
    done
  done <"$dir/pids"
}

stop_recorded() { # DIR GRACE NAME...: SIGTERM, then SIGKILL after GRACE seconds
  local dir="$1" grace="$2" pids i
  shift 2
  pids="$(recorded "$dir" "$@")"
  [ -n "$pids" ] || return 0
  kill -TERM $pids 2>/dev/null
  for i in $(seq 1 $((grace * 5))); do
    [ -z "$(recorded "$dir" "$@")" ] && return 0
    sleep 0.2
  done
  kill -KILL $(recorded "$dir" "$@") 2>/dev/null
  sleep 0.2
}

cgroup_dirs() { # N: this slot's cgroup in each hierarchy that has it
  local c
  for c in /sys/fs/cgroup/*/; do
    [ -d "$c$(cgroup_name "$1")" ] && printf '%s\n' "$c$(cgroup_name "$1")"
  done
}

kill_cgroup_tasks() { # N: SIGKILL every process in the slot's cgroups
  local cg
  for cg in $(cgroup_dirs "$1"); do
    find "$cg" -name tasks -exec cat {} + 2>/dev/null
  done | sort -u | xargs -r kill -9 2>/dev/null
  return 0
}

cmd_down() {
  local n="$1" dir ns sock ids id cg pid extra
  dir="$(slot_dir "$n")"
  ns="$(slot_netns "$n")"
  sock="$dir/containerd/containerd.sock"

  step 'control loops'
  # 1. No more control loops: nothing restarts a container while it is taken down.
  stop_recorded "$dir" 10 mooring kubelet kube-scheduler kube-controller-manager

  step 'containers'
  # 2. Every container: its processes are in the slot's cgroups (SIGKILL: nothing of them is
  #    kept), then the shims serving this containerd, then containerd. The container ids (for
  #    the files below) are the names of containerd's task directories.
  ids="$(ls "$dir/containerd/state/io.containerd.runtime.v2.task/k8s.io" 2>/dev/null)"
  kill_cgroup_tasks "$n"
  for pid in $(grep -lsa -- "$sock" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
    [ -r "/proc/$pid/cmdline" ] || continue
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q containerd-shim && kill -9 "$pid" 2>/dev/null
  done
  stop_recorded "$dir" 1 containerd
  kill_cgroup_tasks "$n"

  # 3. What containerd and the kubelet keep outside the slot's directory.
  # Sockets of shims that did not remove their own (runtime/v2/shim: /run/containerd/s/
  # sha256(<containerd address>/<namespace>/<id>)).
  for id in $ids; do
    rm -f "/run/containerd/s/$(printf '%s' "$sock/k8s.io/$id" | sha256sum | cut -d' ' -f1)"
  done
  rmdir /run/containerd/s /run/containerd 2>/dev/null || true
  # CNI results of our networks (libcni caches them under /var/lib/cni whatever the config).
  rm -f /var/lib/cni/results/"$ns"-* 2>/dev/null
  for id in $ids; do rm -f /var/lib/cni/results/cni-loopback-"$id"-* 2>/dev/null; done
  rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null || true
  # The kubelet's links to container logs (a fixed directory) that point into this slot.
  if [ -d /var/log/containers ]; then
    find /var/log/containers -maxdepth 1 -type l -lname "$dir/*" -delete 2>/dev/null
    rmdir /var/log/containers 2>/dev/null || true
  fi

  step 'control plane'
  # 4. The control plane and anything else the harness started for this slot.
  # Throw-away state: a short grace, then SIGKILL.
  stop_recorded "$dir" 1 kube-apiserver etcd
  # Directories that node.ts recorded (the control plane's, Mooring's): temporary ones only.
  if [ -f "$dir/remove-dirs" ]; then
    while read -r extra; do
      case "$extra" in /tmp/mooring-*) rm -rf "$extra" ;; esac
    done <"$dir/remove-dirs"
  fi

  step 'mounts'
  # 5. Mounts under the slot's directory (overlay rootfs, volumes, netns files, shm), deepest
  #    first, detached at once (no process of the slot is left to hold one).
  awk -v d="$dir/" '{ gsub(/\\040/, " ", $5); if (index($5, d) == 1) print $5 }' /proc/self/mountinfo |
    awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2- | tr '\n' '\0' |
    xargs -0r umount -l 2>/dev/null
  rm -rf "$dir"

  step 'cgroups'
  # 6. Cgroups, deepest first (a cgroup is removed with rmdir once it has no process).
  for cg in $(cgroup_dirs "$n"); do
    find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done

  step 'network'
  # 7. The network: deleting the namespace deletes the bridge, the Pods' host-side veths, the
  #    host's veth end and its route with it.
  ip netns del "$ns" 2>/dev/null || true
  ip link del "$(host_if "$n")" 2>/dev/null || true

  step 'machine settings'
  # 8. The kernel settings and the kubelets' shared directory, once no slot is left.
  if [ -z "$(slots_in_use)" ]; then restore_machine; fi
}

cmd_claim() {
  local owner="$1" n dir ns cg c
  for n in $(seq 0 $((MAX_SLOTS - 1))); do
    ns="$(slot_netns "$n")"
    if ip netns list | grep -qx -- "$ns\( .*\)\{0,1\}"; then
      owner_alive "$n" && continue
      printf '[node-host] slot %s: its owner is gone, tearing it down\n' "$n" >&2
      cmd_down "$n"
    fi
    ip netns add "$ns" 2>/dev/null || continue
    dir="$(slot_dir "$n")"
    save_machine
    rm -rf "$dir"
    mkdir -p "$dir"
    printf '%s\n' "$owner" >"$dir/owner"
    # containerd's content and snapshots in memory: importing is faster, and the teardown frees
    # them at once (an rm -rf of the unpacked images took ~20 s on a busy disk).
    mkdir -p "$dir/containerd"
    mount -t tmpfs -o size=4g,mode=0711 mooring-node-containerd "$dir/containerd" || {
      cmd_down "$n"
      die "could not mount a tmpfs on $dir/containerd"
    }
    {
      ip link add "$(host_if "$n")" type veth peer name eth0 netns "$ns" &&
        ip addr add "$(host_ip "$n")/30" dev "$(host_if "$n")" &&
        ip link set "$(host_if "$n")" up &&
        ip -n "$ns" link set lo up &&
        ip -n "$ns" addr add "$(node_ip "$n")/30" dev eth0 &&
        ip -n "$ns" link set eth0 up &&
        ip route add "$(pod_cidr "$n")" via "$(node_ip "$n")" dev "$(host_if "$n")" &&
        ip netns exec "$ns" sysctl -q -w net.ipv4.ip_forward=1 >/dev/null
    } || {
      cmd_down "$n"
      die "could not make the network of slot $n"
    }
    # The kubelet's --cgroup-root must exist in every hierarchy; a new cpuset starts empty.
    for c in /sys/fs/cgroup/*/; do
      [ -L "${c%/}" ] && continue
      cg="$c$(cgroup_name "$n")"
      mkdir -p "$cg"
      if [ -f "$c/cpuset.cpus" ]; then
        cat "$c/cpuset.cpus" >"$cg/cpuset.cpus"
        cat "$c/cpuset.mems" >"$cg/cpuset.mems"
      fi
    done
    printf '%s\n' "$n"
    return 0
  done
  die "no free slot among $MAX_SLOTS (node-host.sh list)"
}

cmd_list() {
  local n
  for n in $(slots_in_use); do
    if owner_alive "$n"; then
      printf '%s %s running\n' "$n" "$(cat "$(slot_dir "$n")/owner" 2>/dev/null)"
    else
      printf '%s %s gone\n' "$n" "$(cat "$(slot_dir "$n")/owner" 2>/dev/null || echo '?')"
    fi
  done
}

exec 9>"$LOCK"
flock 9
case "${1:-}" in
claim)
  [ $# -eq 2 ] || die 'usage: node-host.sh claim OWNER-PID|persistent'
  cmd_claim "$2"
  ;;
down)
  [ $# -eq 2 ] && [[ "$2" =~ ^[0-9]+$ ]] || die 'usage: node-host.sh down N'
  cmd_down "$2"
  ;;
list) cmd_list ;;
*) die 'usage: node-host.sh claim OWNER | down N | list' ;;
esac
