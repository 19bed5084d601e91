#!/bin/bash
# Alternates short wrk runs across the servers of one bench binary and prints, per run, the
# rate, the server's and wrk's CPU per request and the TCP segments per request: to tell a slow
# stretch of the host (every peer's wrk cost rises at once) from a slow server (only its own).
#
#   benches/wrk_alternate.sh BENCH_BINARY ROUNDS PEER...
#
# BENCH_BINARY is a built `http_hello` or `net_hello` (`cargo bench --bench http_hello --no-run`
# prints its path). One server per PEER argument (a peer may be named twice) runs for the whole
# script, GROVE_WORKERS (default 2) passed on; each round runs `wrk -t1 -cC -dSECS` against each
# in turn (C=256, SECS=4 unless set). SERVER_CPUS / WRK_CPUS (taskset CPU lists, e.g. 1 and 0)
# pin the servers and wrk. Segments are the machine's (/proc/net/snmp OutSegs), so run it on an
# otherwise quiet machine. Needs wrk, taskset, GNU time (/usr/bin/time) and python3; stops only
# the servers it started, by their PIDs.
set -eu
if [ $# -lt 3 ]; then
    echo "usage: $0 BENCH_BINARY ROUNDS PEER..." >&2
    exit 2
fi
BIN=$1; ROUNDS=$2; shift 2
PEERS=("$@")
C=${C:-256}; SECS=${SECS:-4}
ALL_CPUS=$(taskset -cp $$ | awk '{ print $NF }')
SERVER_CPUS=${SERVER_CPUS:-$ALL_CPUS}; WRK_CPUS=${WRK_CPUS:-$ALL_CPUS}
PIDS=(); PORTS=()
OUT=$(mktemp); TIMES=$(mktemp); LOG=$(mktemp)
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -f "$OUT" "$TIMES" "$LOG"
}
trap cleanup EXIT
# Below the kernel's usual range for outgoing ports (32768 and up).
port=$((10000 + RANDOM % 20000))
for i in "${!PEERS[@]}"; do
    port=$((port + 1))
    GROVE_WORKERS=${GROVE_WORKERS:-2} taskset -c "$SERVER_CPUS" "$BIN" --server "${PEERS[$i]}" \
        "$port" > /dev/null 2>> "$LOG" &
    PIDS[i]=$!; PORTS[i]=$port
done
for i in "${!PEERS[@]}"; do
    up=
    for _ in $(seq 1 100); do
        (echo > "/dev/tcp/127.0.0.1/${PORTS[$i]}") 2>/dev/null && { up=1; break; }
        sleep 0.1
    done
    if [ -z "$up" ]; then
        echo "server ${PEERS[$i]} did not listen on port ${PORTS[$i]} within 10 s:" >&2
        cat "$LOG" >&2
        exit 1
    fi
    wrk -t1 -c"$C" -d1s "http://127.0.0.1:${PORTS[$i]}/" > /dev/null
done
segs() { awk '/^Tcp:/ { getline; print $12 }' /proc/net/snmp; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
printf "%-13s %9s %14s %14s %9s\n" peer req/s "server us/req" "wrk us/req" segs/req
for _ in $(seq 1 "$ROUNDS"); do
    for i in "${!PEERS[@]}"; do
        c0=$(ticks "${PIDS[$i]}"); s0=$(segs)
        /usr/bin/time -f "%U %S" -o "$TIMES" taskset -c "$WRK_CPUS" \
            wrk -t1 -c"$C" -d"${SECS}s" "http://127.0.0.1:${PORTS[$i]}/" > "$OUT"
        c1=$(ticks "${PIDS[$i]}"); s1=$(segs)
        python3 - "${PEERS[$i]}" "$OUT" "$TIMES" "$c0" "$c1" "$s0" "$s1" "$(getconf CLK_TCK)" <<'PY'
import re, sys
peer, out, times, c0, c1, s0, s1, tck = sys.argv[1:]
text = open(out).read()
done = re.search(r"(\d+) requests in", text)
if not done or int(done.group(1)) == 0:
    sys.exit(f"wrk against {peer} completed no request:\n{text}")
n = int(done.group(1))
rps = float(re.search(r"Requests/sec:\s*([\d.]+)", text).group(1))
wrk = sum(map(float, open(times).read().split()))
srv = (int(c1) - int(c0)) / int(tck)
print(f"{peer:13} {rps:9.0f} {srv * 1e6 / n:14.2f} {wrk * 1e6 / n:14.2f} "
      f"{(int(s1) - int(s0)) / n:9.3f}")
PY
    done
done
