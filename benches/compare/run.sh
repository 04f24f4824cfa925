#!/usr/bin/env bash
# The comparison of issue 12: every peer under the same generator (wshub-bench), each
# server pinned to one core and the generator to the other, then a section of
# BENCHMARKS.md with the table, the ratios, the commands and the machine.
#
#   bash benches/compare/run.sh
#
# It installs the Node peers (npm ci, versions pinned by node/package-lock.json),
# builds the Rust peers (servers/, a cargo project of its own) and the generator, and
# runs each scenario against a freshly started server. Every run stops by itself.
#
# Environment (all optional):
#   PEERS="wshub tokio-tungstenite ws socketio socketioxide"   which peers
#   SCENARIOS="burst paced idle compression churn scale"       which scenarios
#   REPEAT=3           runs of the cheap scenarios (burst, paced, compression); medians
#   SERVER_CPU=0 GEN_CPU=1   the cores (taskset -c)
#   OUT=dir            where the JSON reports go (default benches/compare/results/DATE)
#   NO_WRITE=1         leave BENCHMARKS.md alone (print the section instead)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PEERS=${PEERS:-"wshub tokio-tungstenite ws socketio socketioxide"}
SCENARIOS=${SCENARIOS:-"burst paced idle compression churn scale"}
REPEAT=${REPEAT:-3}
SERVER_CPU=${SERVER_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
OUT=${OUT:-$HERE/results/$(date -u +%Y%m%dT%H%M%SZ)}
SECRET=compare-bench-secret
mkdir -p "$OUT"

log() { echo "[compare $(date -u +%H:%M:%S)] $*" >&2; }

# --- build -------------------------------------------------------------------------
log "installing the Node peers (npm ci)"
(cd "$HERE/node" && npm ci --no-audit --no-fund --silent)
log "building the generator and the Rust peers (release)"
(cd "$ROOT" && cargo build --release -p wshub-bench --quiet)
(cd "$HERE/servers" && cargo build --release --quiet)
BENCH_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
SERVERS_BIN=${CARGO_TARGET_DIR:-$HERE/servers/target}/release
GEN="$BENCH_BIN/wshub-bench"

# --- peers -------------------------------------------------------------------------
SIO_PATH='/socket.io/?EIO=4&transport=websocket'
port_of() {
  case $1 in
    ws) echo 9101 ;; socketio) echo 9102 ;; tokio-tungstenite) echo 9103 ;;
    socketioxide) echo 9104 ;; wshub) echo 9105 ;;
  esac
}
url_of() {
  local port; port=$(port_of "$1")
  case $1 in
    socketio|socketioxide) echo "ws://127.0.0.1:$port$SIO_PATH" ;;
    *) echo "ws://127.0.0.1:$port/" ;;
  esac
}
proto_of() {
  case $1 in
    wshub) echo wshub ;; ws|tokio-tungstenite) echo plain ;; *) echo socketio ;;
  esac
}
# What each peer cannot do, and why (empty: it can).
cannot() { # peer scenario
  case "$1:$2" in
    tokio-tungstenite:deflate) echo "tokio-tungstenite 0.30 has no permessage-deflate" ;;
    socketioxide:deflate) echo "socketioxide rides on tokio-tungstenite: no permessage-deflate" ;;
  esac
}

SERVER_PID=
# start PEER [ENV=VALUE...]: starts the peer on its core, waits for its port.
start() {
  local peer=$1; shift
  local port; port=$(port_of "$peer")
  local cmd
  case $peer in
    ws) cmd=(node "$HERE/node/ws-broadcast.js") ;;
    socketio) cmd=(node "$HERE/node/socketio.js") ;;
    tokio-tungstenite) cmd=("$SERVERS_BIN/tt-broadcast") ;;
    socketioxide) cmd=("$SERVERS_BIN/sio-broadcast") ;;
    wshub) cmd=("$SERVERS_BIN/wshub-broadcast") ;;
  esac
  env PORT="$port" "$@" taskset -c "$SERVER_CPU" "${cmd[@]}" >"$OUT/$peer.server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  log "$peer did not start (see $OUT/$peer.server.log)"
  return 1
}
stop() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}
trap stop EXIT

# gen PEER NAME ARGS...: one generator run, its JSON report in $OUT/PEER.NAME.json.
gen() {
  local peer=$1 name=$2; shift 2
  local sub=$1; shift
  log "$peer: $name"
  echo "wshub-bench $sub $(url_of "$peer") --proto $(proto_of "$peer") $*" |
    sed -E 's/--server-pid [0-9]+/--server-pid PID/' >>"$OUT/commands.txt"
  taskset -c "$GEN_CPU" "$GEN" "$sub" "$(url_of "$peer")" --proto "$(proto_of "$peer")" \
    --quiet --json "$@" >"$OUT/$peer.$name.json" 2>>"$OUT/$peer.gen.log" ||
    log "$peer: $name failed (see $OUT/$peer.gen.log)"
}

# --- scenarios ---------------------------------------------------------------------
run_peer() {
  local peer=$1 s i
  for s in $SCENARIOS; do
    case $s in
      burst)
        # 1. Burst fan-out: 1,000 subscribers, 2,000 messages of 64 bytes at once.
        for i in $(seq "$REPEAT"); do
          start "$peer"
          gen "$peer" "burst.$i" broadcast --subscribers 1000 --messages 2000 --size 64 \
            --drain 120s --server-pid "$SERVER_PID"
          stop
        done ;;
      paced)
        # 2. Paced: 100 publishes/s for 10 s to 1,000 subscribers.
        for i in $(seq "$REPEAT"); do
          start "$peer"
          gen "$peer" "paced.$i" broadcast --subscribers 1000 --rate 100 --duration 10s \
            --size 64 --drain 10s --server-pid "$SERVER_PID"
          stop
        done ;;
      idle)
        # 3. Idle: 10,000 connections, each joined to a room of 100 (wshub: presence
        # on), held 5 s. Rooms of 100, not one of 10,000: there every join reply
        # carries the whole member list, quadratic in bytes (issue 13's subject).
        start "$peer"
        gen "$peer" idle idle --connections 10000 --rooms 100 --duration 5s \
          --server-pid "$SERVER_PID"
        stop ;;
      compression)
        # 4. Compression: 1.5 KiB JSON to 1,000 subscribers, 20/s for 10 s and a burst
        # of 500, without and (where the peer can) with permessage-deflate.
        for i in $(seq "$REPEAT"); do
          start "$peer"
          gen "$peer" "c-paced.$i" broadcast --subscribers 1000 --rate 20 --duration 10s \
            --size 1536 --drain 10s --server-pid "$SERVER_PID"
          gen "$peer" "c-burst.$i" broadcast --subscribers 1000 --messages 500 \
            --size 1536 --drain 120s --server-pid "$SERVER_PID"
          stop
          if [ -z "$(cannot "$peer" deflate)" ]; then
            start "$peer" DEFLATE=1
            gen "$peer" "d-paced.$i" broadcast --subscribers 1000 --rate 20 --duration 10s \
              --size 1536 --drain 10s --deflate --server-pid "$SERVER_PID"
            gen "$peer" "d-burst.$i" broadcast --subscribers 1000 --messages 500 \
              --size 1536 --drain 120s --deflate --server-pid "$SERVER_PID"
            stop
          fi
        done ;;
      churn)
        # 5. Churn: connect (HS256 JWT checked by the server), join, close, as fast as
        # 64 at a time go, for 10 s.
        if [ -z "$(cannot "$peer" churn)" ]; then
          start "$peer" JWT_SECRET="$SECRET"
          gen "$peer" churn connect-rate --duration 10s --jwt-secret "$SECRET" \
            --connect-concurrency 64
          stop
        fi ;;
      scale)
        # 6. Scale: 19,000 connections (wshub: in rooms of 100, presence on), held 5 s.
        start "$peer"
        gen "$peer" scale idle --connections 19000 --rooms 190 --duration 5s \
          --server-pid "$SERVER_PID"
        stop ;;
    esac
  done
}

for peer in $PEERS; do run_peer "$peer"; done

# --- the machine, and the section --------------------------------------------------
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores)"
  echo "kernel: $(uname -r)"
  echo "rustc: $(rustc -V)"
  echo "node: $(node -v)"
  echo "npm: $(cd "$HERE/node" && node -p "['ws','socket.io','jsonwebtoken'].map(p => p + '@' + require('./node_modules/' + p + '/package.json').version).join(' ')")"
  echo "loadavg at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work shares the machine)"
} >"$OUT/machine.txt"
log "results in $OUT"
if [ -n "${NO_WRITE:-}" ]; then
  python3 "$HERE/report.py" "$OUT"
else
  python3 "$HERE/report.py" "$OUT" --write "$ROOT/BENCHMARKS.md"
fi
