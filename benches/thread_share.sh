#!/bin/bash
# Where the two cores go while wrk loads one server of a bench binary: each thread's share of
# a core (server threads and wrk's), its voluntary and involuntary context switches per second,
# and the machine's idle share, over a 4 s window of a 6 s `wrk -t1` run.
#
#   benches/thread_share.sh BENCH_BINARY PEER PORT [CONNECTIONS]
#
# BENCH_BINARY is a built `http_hello` or `net_hello` (`cargo bench --bench http_hello --no-run`
# prints its path); PEER one of its peers. GROVE_WORKERS (default 2) and GROVE_IDLE_SPIN_US are
# passed to the server. Threads are summed by name (tokio's workers share one). Needs wrk and
# python3. Stops only the server it started, by its PID.
set -eu
BIN=$1; PEER=$2; PORT=$3; C=${4:-256}
GROVE_WORKERS=${GROVE_WORKERS:-2} "$BIN" --server "$PEER" "$PORT" > /dev/null 2>&1 &
SPID=$!
trap 'kill $SPID 2>/dev/null; wait $SPID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
wrk -t1 -c"$C" -d1s "http://127.0.0.1:$PORT/" > /dev/null
OUT=$(mktemp); A=$(mktemp); B=$(mktemp)
wrk -t1 -c"$C" -d6s "http://127.0.0.1:$PORT/" > "$OUT" &
WPID=$!
snap() {
  for t in /proc/$SPID/task/* /proc/$WPID/task/*; do
    echo "$(cat "$t/comm") $(awk '{print $14 + $15}' "$t/stat") \
      $(awk '/^voluntary/{v=$2} /^nonvoluntary/{n=$2} END{print v, n}' "$t/status")"
  done
  head -1 /proc/stat
}
sleep 1; snap > "$A"; sleep 4; snap > "$B"
wait $WPID
python3 - "$A" "$B" "$(awk '/Requests\/sec/{print $2}' "$OUT")" "$(getconf CLK_TCK)" <<'PY'
import sys
def read(path):
    threads, cpu = {}, None
    for line in open(path):
        f = line.split()
        if f[0] == 'cpu':
            cpu = list(map(int, f[1:]))
        else:
            t = threads.setdefault(f[0], [0, 0, 0])
            for i in range(3):
                t[i] += int(f[1 + i])
    return threads, cpu
(a, ca), (b, cb) = read(sys.argv[1]), read(sys.argv[2])
tick, secs = int(sys.argv[4]), 4
idle = (cb[3] + cb[4] - ca[3] - ca[4]) / (sum(cb) - sum(ca))
print(f"{float(sys.argv[3]):.0f} req/s, machine idle {100 * idle:.1f}%")
for name in b:
    if name in a:
        d = [y - x for x, y in zip(a[name], b[name])]
        if d[0] or d[1] > 10 * secs:
            print(f"  {name:16} {d[0] / tick / secs:.2f} cores, "
                  f"{d[1] / secs:.0f} voluntary + {d[2] / secs:.0f} involuntary switches/s")
PY
rm -f "$OUT" "$A" "$B"
