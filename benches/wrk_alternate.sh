#!/bin/bash
# Alternates short wrk runs across the servers of one bench binary and prints, per run, the
# rate, the server's and wrk's CPU per request and the TCP segments per request: to tell a slow
# stretch of the host (every peer's wrk cost rises at once) from a slow server (only its own).
#
#   benches/wrk_alternate.sh BENCH_BINARY ROUNDS PEER...
#
# BENCH_BINARY is a built `http_hello` or `net_hello` (`cargo bench --bench http_hello --no-run`
# prints its path). One server per peer runs for the whole script (GROVE_WORKERS, default 2, is
# passed on); each round runs `wrk -t1 -cC -dSECS` against each in turn (C=256, SECS=4 unless
# set). SERVER_CPUS / WRK_CPUS (taskset lists, e.g. 1 and 0) pin the servers and wrk. Segments
# are the machine's (/proc/net/snmp OutSegs), so run it on an otherwise quiet machine. Needs wrk
# and taskset; stops only the servers it started, by their PIDs.
set -eu
BIN=$1; ROUNDS=$2; shift 2
C=${C:-256}; SECS=${SECS:-4}
SERVER_CPUS=${SERVER_CPUS:-0-$(($(nproc) - 1))}; WRK_CPUS=${WRK_CPUS:-$SERVER_CPUS}
declare -A PID PORT
cleanup() { for p in "${!PID[@]}"; do kill "${PID[$p]}" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
port=$((20000 + RANDOM % 20000))
for p in "$@"; do
    port=$((port + 1))
    GROVE_WORKERS=${GROVE_WORKERS:-2} taskset -c "$SERVER_CPUS" "$BIN" --server "$p" "$port" \
        > /dev/null 2>&1 &
    PID[$p]=$!; PORT[$p]=$port
done
for p in "$@"; do
    for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/${PORT[$p]}") 2>/dev/null && break; sleep 0.1; done
    wrk -t1 -c"$C" -d1s "http://127.0.0.1:${PORT[$p]}/" > /dev/null
done
segs() { awk '/^Tcp:/ { getline; print $12 }' /proc/net/snmp; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
OUT=$(mktemp); TIMES=$(mktemp)
printf "%-13s %9s %14s %14s %9s\n" peer req/s "server us/req" "wrk us/req" segs/req
for _ in $(seq 1 "$ROUNDS"); do
    for p in "$@"; do
        c0=$(ticks "${PID[$p]}"); s0=$(segs)
        /usr/bin/time -f "%U %S" -o "$TIMES" taskset -c "$WRK_CPUS" \
            wrk -t1 -c"$C" -d"${SECS}s" "http://127.0.0.1:${PORT[$p]}/" > "$OUT"
        c1=$(ticks "${PID[$p]}"); s1=$(segs)
        python3 - "$p" "$OUT" "$TIMES" "$c0" "$c1" "$s0" "$s1" "$(getconf CLK_TCK)" <<'PY'
import re, sys
peer, out, times, c0, c1, s0, s1, tck = sys.argv[1:]
text = open(out).read()
n = int(re.search(r"(\d+) requests in", text).group(1))
rps = float(re.search(r"Requests/sec:\s*([\d.]+)", text).group(1))
wrk = sum(map(float, open(times).read().split()))
srv = (int(c1) - int(c0)) / int(tck)
print(f"{peer:13} {rps:9.0f} {srv * 1e6 / n:14.2f} {wrk * 1e6 / n:14.2f} "
      f"{(int(s1) - int(s0)) / n:9.3f}")
PY
    done
done
rm -f "$OUT" "$TIMES"
