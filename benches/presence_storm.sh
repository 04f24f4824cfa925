#!/usr/bin/env bash
# The join storm of issue 13: N connections join one presence room (`bench:storm`)
# while 3 members who joined first count the presence bytes they receive.
#
#   bash benches/presence_storm.sh [N] [PORT] [OUTDIR]      # defaults: 19000 9400 target/storm
#
# Builds `benches/presence_storm.rs` and `wshub-bench` (release), runs the server
# pinned to core 0 and the generator and probe to core 1, and prints the server's CPU
# (utime + stime from /proc/PID/stat, before and after the storm) and peak RSS
# (VmHWM). STORM_BIG_ROOM=1000000 measures exact presence (as before big rooms),
# STORM_PRESENCE=off a namespace without presence.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${1:-19000}; PORT=${2:-9400}; OUT=${3:-target/storm}
mkdir -p "$OUT"
TARGET=${CARGO_TARGET_DIR:-target}
cargo bench --bench presence_storm --no-run
cargo build --release -p wshub-bench
BIN=$(ls -t "$TARGET"/release/deps/presence_storm-* | grep -v '\.d$' | head -1)
BENCH="$TARGET/release/wshub-bench"

taskset -c 0 "$BIN" server "$PORT" > "$OUT/server.out" 2>&1 &
SPID=$!
trap 'kill $SPID 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q PORT "$OUT/server.out" 2>/dev/null && break; sleep 0.1; done
cpu() { awk '{print $14 + $15}' "/proc/$SPID/stat"; }
TCK=$(getconf CLK_TCK)

taskset -c 1 "$BIN" probe "ws://127.0.0.1:$PORT/" 3 45 > "$OUT/probe.json" 2> "$OUT/probe.err" &
PROBE=$!
sleep 1   # the probe's members join first (no timing is taken from this)
C0=$(cpu); T0=$(date +%s.%N)
taskset -c 1 "$BENCH" idle "ws://127.0.0.1:$PORT/" --connections "$N" --room bench:storm \
    --duration 5s --server-pid "$SPID" --source-ips 200 --quiet --json > "$OUT/bench.json"
C1=$(cpu); T1=$(date +%s.%N)
HWM=$(awk '/VmHWM/ {print $2}' "/proc/$SPID/status")
wait "$PROBE"
echo "connections: $N"
awk -v a="$T0" -v b="$T1" 'BEGIN {printf "storm + 5 s hold, wall: %.1f s\n", b - a}'
awk -v a="$C0" -v b="$C1" -v t="$TCK" 'BEGIN {printf "server CPU (storm + hold): %.2f s\n", (b - a) / t}'
echo "server peak RSS: $((HWM / 1024)) MB"
echo "probe (presence bytes per member: total, largest second): $(cat "$OUT/probe.json")"
echo "generator report: $OUT/bench.json"
