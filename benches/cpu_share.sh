#!/bin/bash
# Who saturates first: one server of a bench binary under `wrk -t1`, with the CPU that the
# server and wrk each use (the server's per request also split into user and kernel time) and
# the server's context switches per request.
#
#   benches/cpu_share.sh BENCH_BINARY PEER PORT [CONNECTIONS] [SECONDS]
#
# BENCH_BINARY is a built `net_hello` or `http_hello` (`cargo bench --bench net_hello --no-run`
# prints its path); PEER is one of its peers (grove, may, tokio; grove, may_minihttp, hyper).
# GROVE_WORKERS (default 2) is passed to the server. Needs wrk and bc. Stops only the server
# it started, by its PID.
set -eu
BIN=$1; PEER=$2; PORT=$3; C=${4:-256}; D=${5:-5}
GROVE_WORKERS=${GROVE_WORKERS:-2} "$BIN" --server "$PEER" "$PORT" > /dev/null 2>&1 &
SPID=$!
trap 'kill $SPID 2>/dev/null; wait $SPID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
wrk -t1 -c"$C" -d1s "http://127.0.0.1:$PORT/" > /dev/null
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ksys() { awk '{print $15}' "/proc/$1/stat"; }
switches() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/{s+=$2} END{print s}'; }
S0=$(cpu $SPID); SK0=$(ksys $SPID); CS0=$(switches $SPID)
OUT=$(mktemp)
wrk -t1 -c"$C" -d"${D}s" "http://127.0.0.1:$PORT/" > "$OUT" &
WPID=$!
# wrk's own share, over half a second near the end of its run.
sleep $((D - 1)); W0=$(cpu $WPID); K0=$(ksys $WPID); sleep 0.5; W1=$(cpu $WPID); K1=$(ksys $WPID)
wait $WPID
S1=$(cpu $SPID); SK1=$(ksys $SPID); CS1=$(switches $SPID)
REQ=$(awk '/requests in/{print $1}' "$OUT")
RPS=$(awk '/Requests\/sec/{print $2}' "$OUT")
rm -f "$OUT"
TICK=$(getconf CLK_TCK)
printf '%s c%s: %s req/s; server %.2f cores, %.2f us/req (kernel %.2f); wrk %.2f cores (kernel %.2f); server context switches %.3f/req\n' \
  "$PEER" "$C" "$RPS" \
  "$(echo "($S1 - $S0) / $TICK / $D" | bc -l)" \
  "$(echo "($S1 - $S0) * 1000000 / $TICK / $REQ" | bc -l)" \
  "$(echo "($SK1 - $SK0) * 1000000 / $TICK / $REQ" | bc -l)" \
  "$(echo "($W1 - $W0) / $TICK / 0.5" | bc -l)" \
  "$(echo "($K1 - $K0) / $TICK / 0.5" | bc -l)" \
  "$(echo "($CS1 - $CS0) / $REQ" | bc -l)"
