#!/usr/bin/env bash
# A paired before/after run of two wshub bench servers (builds of
# servers/src/bin/wshub-broadcast.rs from two commits), alternating round by round so
# that the machine's noise falls on both alike. The servers are pinned to core 0, the
# generator to core 1, as in run.sh.
#
#   cp "$CARGO_TARGET_DIR/release/wshub-broadcast" /tmp/before   # at the old commit
#   ... change, rebuild (cargo build --release in benches/compare/servers) ...
#   bash benches/compare/ab.sh /tmp/before "$CARGO_TARGET_DIR/release/wshub-broadcast"
#
# Two different peers pair the same way: give each side's protocol, e.g. wshub
# against the tokio-tungstenite server (built by `cargo build --release` in servers/):
#
#   PROTO_B=plain bash benches/compare/ab.sh "$T/wshub-broadcast" "$T/tt-broadcast"
#
# Environment: ROUNDS=5, SCENARIO="paced" (or "burst", "c-paced", "d-paced", "d-burst",
# "idle", "churn": connect, join, close, without JWT), PROTO_A=wshub, PROTO_B=wshub
# (the generator's --proto for each side: wshub, plain or socketio).
# Prints, per scenario, each side's median server CPU per publish, latency and
# deliveries/s (idle: RSS per connection).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
A=$1 B=$2
PROTO_A=${PROTO_A:-wshub}
PROTO_B=${PROTO_B:-wshub}
ROUNDS=${ROUNDS:-5}
SCENARIO=${SCENARIO:-paced}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
GEN=${CARGO_TARGET_DIR:-$ROOT/target}/release/wshub-bench
PORT=9199

args() {
  case $1 in
    paced) echo "broadcast --subscribers 1000 --rate 100 --duration 10s --size 64 --drain 10s" ;;
    burst) echo "broadcast --subscribers 1000 --messages 2000 --size 64 --drain 60s" ;;
    c-paced) echo "broadcast --subscribers 1000 --rate 20 --duration 10s --size 1536 --drain 10s" ;;
    d-paced) echo "broadcast --subscribers 1000 --rate 20 --duration 10s --size 1536 --drain 10s --deflate" ;;
    d-burst) echo "broadcast --subscribers 1000 --messages 500 --size 1536 --drain 60s --deflate" ;;
    idle) echo "idle --connections 10000 --rooms 100 --duration 3s" ;;
    churn) echo "connect-rate --duration 10s --connect-concurrency 64" ;;
  esac
}

one() { # SIDE BIN ROUND
  local side=$1 bin=$2 round=$3
  PORT=$PORT taskset -c 0 "$bin" >/dev/null 2>&1 &
  local pid=$!
  SERVER_PID=$pid
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    sleep 0.05
  done
  local proto=$PROTO_A
  [ "$side" = b ] && proto=$PROTO_B
  local pid_arg=(--server-pid "$pid" --proto "$proto")
  [ "$SCENARIO" = churn ] && pid_arg=(--proto "$proto")
  # shellcheck disable=SC2046
  taskset -c 1 "$GEN" $(args "$SCENARIO" | cut -d' ' -f1) "ws://127.0.0.1:$PORT/" \
    $(args "$SCENARIO" | cut -d' ' -f2-) "${pid_arg[@]}" --quiet --json \
    >"$OUT/$side.$round.json"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

SERVER_PID=
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true' EXIT
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then one a "$A" "$r"; one b "$B" "$r"; else one b "$B" "$r"; one a "$A" "$r"; fi
done

python3 - "$OUT" <<'EOF'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
def med(side, get):
    vals = []
    for f in sorted(out.glob(f"{side}.*.json")):
        try:
            vals.append(get(json.loads(f.read_text())))
        except (KeyError, TypeError, ValueError):
            pass
    return statistics.median(vals) if vals else float("nan"), vals
rows = [
    ("server CPU per publish, ms", lambda r: r["details"]["server_cpu_per_publish_ms"]),
    ("p50 latency, ms", lambda r: r["latency"]["p50_us"] / 1000),
    ("p99 latency, ms", lambda r: r["latency"]["p99_us"] / 1000),
    ("deliveries/s", lambda r: r["delivered_per_s"]),
    ("delivered %", lambda r: 100 * r["delivered_ratio"]),
    ("generator CPU %", lambda r: r["generator_cpu_pct"]),
    ("RSS per connection, KiB", lambda r: r["details"]["server_rss_per_conn_kib"]),
    ("connects/s", lambda r: r["details"]["connects_per_s"]),
]
print(f"{'':32} {'before (a)':>14} {'after (b)':>14} {'b/a':>6}   runs")
for name, get in rows:
    a, av = med("a", get)
    b, bv = med("b", get)
    if not av:
        continue
    ratio = b / a if a else float("nan")
    print(f"{name:32} {a:14.3f} {b:14.3f} {ratio:6.2f}   a={['%.3g' % v for v in av]} b={['%.3g' % v for v in bv]}")
print(f"(JSON reports in {out})")
EOF
