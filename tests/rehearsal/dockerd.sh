#!/usr/bin/env bash
# Start the local Docker engine for the rehearsal when none answers; idempotent, installs nothing.
#
# Needs Debian's docker.io (dockerd, containerd, runc, iptables come with it):
#   apt-get install -y docker.io redis-server postgresql curl
# Exit 0 once `GET /_ping` answers on the socket; exit 1 with the daemon's log otherwise.
#
# Env: DOCKERD_LOG (default /tmp/llmstack-dockerd.log), DOCKERD_WAIT seconds (default 60),
#      DOCKER_HOST (only unix:// sockets; default unix:///var/run/docker.sock).
#
# What works on these machines (Debian 12, kernel 6.x, root, cgroup v1): the daemon's defaults -
# overlay2 storage, cgroupfs, iptables (nft backend) NAT, a user-defined bridge with DNS by alias,
# ports published on 127.0.0.1. So dockerd runs with no flags; it starts its own containerd.
set -euo pipefail

sock="${DOCKER_HOST:-unix:///var/run/docker.sock}"
case "$sock" in
  unix://*) sock="${sock#unix://}" ;;
  *) echo "dockerd.sh: DOCKER_HOST=$sock is not a unix socket; the rehearsal needs a local engine" >&2; exit 1 ;;
esac
log="${DOCKERD_LOG:-/tmp/llmstack-dockerd.log}"
wait_s="${DOCKERD_WAIT:-60}"
pidfile=/var/run/docker.pid
containerd_pidfile=/var/run/docker/containerd/containerd.pid

ping() { curl -fsS --max-time 3 --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1; }
# A live process: a killed daemon can linger here as a zombie (PID 1 reaps late), and `kill -0`
# still finds a zombie; dockerd itself then waits forever for "its" dead containerd.
alive() { [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
pid_in() { [ -s "$1" ] && cat "$1" || true; }

if ping; then
  echo "dockerd.sh: engine already answers on $sock"
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
  if ping; then echo "dockerd.sh: engine up"; exit 0; fi
fi

# Leftovers of a daemon that was killed: its pid files and socket block a new one.
alive "$(pid_in "$pidfile")" && { echo "dockerd.sh: dockerd $(pid_in "$pidfile") does not answer" >&2; exit 1; }
rm -f "$pidfile"
alive "$(pid_in "$containerd_pidfile")" || rm -f "$containerd_pidfile"
[ -S "$sock" ] && rm -f "$sock"

echo "dockerd.sh: starting dockerd (log: $log)"
start=$(date +%s.%N)
setsid nohup dockerd --host "unix://$sock" >"$log" 2>&1 </dev/null &
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
echo "dockerd.sh: engine up in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')s"
