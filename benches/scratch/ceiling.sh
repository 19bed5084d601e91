#!/bin/bash
# Alternates the ceiling server (spin, block) with a bench binary's grove server, one server at
# a time, under `wrk -t1 -c256 -d5s`: req/s, the server's cores, wrk's µs per request and cores.
#
#   cd benches/scratch && cargo build --release --bin ceiling
#   ./ceiling.sh ROUNDS <http_hello binary>
#
# Each server is started on its own port, warmed with `wrk -d1s`, measured, and stopped by its
# PID. GROVE_WORKERS (default 2) goes to grove. Needs wrk, GNU time (/usr/bin/time).
set -eu
ROUNDS=$1; BENCH=$2
T=$(mktemp); O=$(mktemp)
trap 'rm -f "$T" "$O"' EXIT
port=$((10000 + RANDOM % 20000))
measure() { # NAME COMMAND... (the command takes its port from $port)
    local name=$1; shift
    "$@" > /dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    wrk -t1 -c256 -d1s "http://127.0.0.1:$port/" > /dev/null
    local c0 c1
    c0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
    /usr/bin/time -f "%U %S" -o "$T" wrk -t1 -c256 -d5s "http://127.0.0.1:$port/" > "$O"
    c1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
    kill "$pid"; wait "$pid" 2> /dev/null || true
    local n rps
    n=$(awk '/requests in/ { print $1 }' "$O"); rps=$(awk '/Requests\/sec/ { print $2 }' "$O")
    awk -v name="$name" -v rps="$rps" -v n="$n" -v srv=$((c1 - c0)) -v tck="$(getconf CLK_TCK)" \
        '{ printf "%-13s %9.0f req/s  server %.2f cores  wrk %.2f us/req, %.2f cores\n",
           name, rps, srv / tck / 5, ($1 + $2) * 1e6 / n, ($1 + $2) / 5 }' "$T"
}
for _ in $(seq 1 "$ROUNDS"); do
    port=$((port + 1)); measure "ceiling spin" target/release/ceiling "$port" spin
    port=$((port + 1)); measure "ceiling block" target/release/ceiling "$port" block
    port=$((port + 1))
    measure grove env GROVE_WORKERS="${GROVE_WORKERS:-2}" "$BENCH" --server grove "$port"
done
