#!/usr/bin/env bash
# Start a local Docker engine for the rehearsal when none answers; idempotent, installs nothing.
#
#   dockerd.sh        engine A: the usual one, /var/run/docker.sock, the daemon's defaults
#   dockerd.sh b      engine B: the rehearsal's second Docker host on this machine (issue 14), with its own
#                     socket, data root, exec root (so its own containerd), pid file and address pool
#
# Needs Debian's docker.io (dockerd, containerd, runc, iptables come with it):
#   apt-get install -y docker.io redis-server postgresql curl
# Exit 0 once `GET /_ping` answers on the socket; exit 1 with the daemon's log otherwise.
#
# Env: DOCKERD_LOG (default /tmp/llmstack-dockerd.log, -b.log for B), DOCKERD_WAIT seconds (default 60),
#      DOCKER_HOST (engine A only; only unix:// sockets; default unix:///var/run/docker.sock).
#
# What works on these machines (Debian 12, kernel 6.x, root, cgroup v1): the daemon's defaults -
# overlay2 storage, cgroupfs, iptables (nft backend) NAT, a user-defined bridge with DNS by alias,
# ports published on 127.0.0.1. So engine A runs with no flags; it starts its own containerd.
#
# Engine B: `--iptables=false`: no iptables rules, so it cannot fight engine A over the NAT and filter
# chains; its published ports go through docker-proxy (the userland proxy) on the host address they
# name. Its default bridge is B_BRIDGE, made here with the address B_ADDRESS (not `--bridge none`: a
# daemon started with it deletes the docker0 interface, engine A's default bridge, and its 172.17.0.1
# with it). `--live-restore` for the same reason: a daemon that finds its last run's default network in
# its data root, and has `--default-address-pool`, deletes docker0 too unless live restore is on
# (moby's configureNetworking, "Clear stale bridge network"): every start of B but the first did.
# B_ADDRESS is where the rehearsal's host b publishes: a host address that engine A's containers reach.
# B's networks come from B_ADDRESS_POOL; neither overlaps engine A's default pools (172.17-31.0.0/16,
# 192.168.0.0/16). One kernel routes between the two engines' bridges, which two
# machines would not do: chain LLMSTACK-B (jumped to from DOCKER-USER, which engine A runs first and
# never flushes) accepts traffic inside B's pool (with br_netfilter, frames crossing one of B's bridges go
# through FORWARD, whose policy engine A sets to DROP) and drops any other forwarded traffic to or from
# it: engine A's containers reach B's only through what B publishes on a host address, as over a network.
set -euo pipefail

engine="${1:-a}"
B_ADDRESS_POOL=10.213.0.0/16
B_BRIDGE=llmstack-b0
B_ADDRESS=10.214.0.1
B_RUN=/run/llmstack-b
case "$engine" in
  a)
    sock="${DOCKER_HOST:-unix:///var/run/docker.sock}"
    case "$sock" in
      unix://*) sock="${sock#unix://}" ;;
      *) echo "dockerd.sh: DOCKER_HOST=$sock is not a unix socket; the rehearsal needs a local engine" >&2; exit 1 ;;
    esac
    log="${DOCKERD_LOG:-/tmp/llmstack-dockerd.log}"
    pidfile=/var/run/docker.pid
    containerd_pidfile=/var/run/docker/containerd/containerd.pid
    flags=()
    ;;
  b)
    sock="$B_RUN/docker.sock"
    log="${DOCKERD_LOG:-/tmp/llmstack-dockerd-b.log}"
    pidfile="$B_RUN/docker.pid"
    containerd_pidfile="$B_RUN/exec/containerd/containerd.pid"
    flags=(--data-root /var/lib/llmstack-b --exec-root "$B_RUN/exec" --pidfile "$pidfile"
           --bridge "$B_BRIDGE" --iptables=false --ip-masq=false --live-restore
           --default-address-pool "base=$B_ADDRESS_POOL,size=24")
    mkdir -p "$B_RUN"
    ip link show "$B_BRIDGE" >/dev/null 2>&1 || ip link add "$B_BRIDGE" type bridge
    ip -4 addr show dev "$B_BRIDGE" | grep -q "inet $B_ADDRESS/" || ip addr add "$B_ADDRESS/24" dev "$B_BRIDGE"
    ip link set "$B_BRIDGE" up
    ;;
  *) echo "dockerd.sh: unknown engine $engine (a or b)" >&2; exit 1 ;;
esac
wait_s="${DOCKERD_WAIT:-60}"

forward_b() {
  [ "$engine" = b ] || return 0
  iptables -N LLMSTACK-B 2>/dev/null || iptables -F LLMSTACK-B
  iptables -A LLMSTACK-B -s "$B_ADDRESS_POOL" -d "$B_ADDRESS_POOL" -j ACCEPT
  iptables -A LLMSTACK-B -d "$B_ADDRESS_POOL" -j DROP
  iptables -A LLMSTACK-B -s "$B_ADDRESS_POOL" -j DROP
  iptables -N DOCKER-USER 2>/dev/null || true
  iptables -C DOCKER-USER -j LLMSTACK-B 2>/dev/null || iptables -I DOCKER-USER -j LLMSTACK-B
  iptables -C FORWARD -j DOCKER-USER 2>/dev/null || iptables -I FORWARD -j DOCKER-USER
}

ping() { curl -fsS --max-time 3 --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1; }
# A live process: a killed daemon can linger here as a zombie (PID 1 reaps late), and `kill -0`
# still finds a zombie; dockerd itself then waits forever for "its" dead containerd.
alive() { [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
pid_in() { [ -s "$1" ] && cat "$1" || true; }

if ping; then
  forward_b
  echo "dockerd.sh: engine $engine already answers on $sock"
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "dockerd.sh: dockerd not found (apt-get install -y docker.io)" >&2
  exit 1
fi

deadline=$(( $(date +%s) + wait_s ))
if alive "$(pid_in "$pidfile")"; then
  # A daemon that is still starting: wait for it instead of starting a second one.
  echo "dockerd.sh: dockerd (pid $(pid_in "$pidfile")) is running but not answering yet; waiting"
  until ping || ! alive "$(pid_in "$pidfile")" || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.2; done
  if ping; then forward_b; echo "dockerd.sh: engine $engine up"; exit 0; fi
fi

# Leftovers of a daemon that was killed: its pid files and socket block a new one.
alive "$(pid_in "$pidfile")" && { echo "dockerd.sh: dockerd $(pid_in "$pidfile") does not answer" >&2; exit 1; }
rm -f "$pidfile"
alive "$(pid_in "$containerd_pidfile")" || rm -f "$containerd_pidfile"
[ -S "$sock" ] && rm -f "$sock"

# Engine A's bridge before B starts, to check B left it alone (see --live-restore above).
a_bridge_before=$(ip -br addr show docker0 2>/dev/null || true)
echo "dockerd.sh: starting dockerd for engine $engine (log: $log)"
start=$(date +%s.%N)
setsid nohup dockerd --host "unix://$sock" "${flags[@]}" >"$log" 2>&1 </dev/null &
pid=$!
until ping; do
  if ! alive "$pid" || [ "$(date +%s)" -ge "$deadline" ]; then
    if alive "$pid"; then echo "dockerd.sh: no answer on $sock after ${wait_s}s" >&2; else echo "dockerd.sh: dockerd exited" >&2; fi
    echo "dockerd.sh: last lines of $log:" >&2
    tail -n 40 "$log" >&2 || true
    exit 1
  fi
  sleep 0.2
done
forward_b
if [ "$engine" = b ] && [ -n "$a_bridge_before" ] && ! ip link show docker0 >/dev/null 2>&1; then
  echo "dockerd.sh: engine B's start deleted docker0, engine A's default bridge ($a_bridge_before);" \
       "restart engine A to get it back" >&2
  exit 1
fi
echo "dockerd.sh: engine $engine up in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')s"
