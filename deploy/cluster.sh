#!/usr/bin/env bash
# A wshub cluster on this machine: Redis, three chat nodes and nginx in front.
#
#   bash deploy/cluster.sh            # then open http://127.0.0.1:8080/ (two windows)
#
# - redis-server on 127.0.0.1:6390 (no persistence), the backplane;
# - three chat example nodes on 127.0.0.1:9001..9003 (`--redis`, one shared
#   CHAT_SECRET so a token signed by one node is valid on all, `--trusted-proxy
#   127.0.0.1/32` so they believe nginx's X-Forwarded-For);
# - nginx on 127.0.0.1:8080 with deploy/nginx.conf: round-robin, no stickiness.
#
# Each page load and each reconnect may land on another node; messages, history and
# recovery work across them. Ctrl-C stops everything. Files (logs, nginx's temp
# files) go to a temporary directory, printed at start. Needs redis-server and
# nginx (`apt-get install redis-server nginx`). REDIS_PORT, HTTP_PORT override the
# ports.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REDIS_PORT=${REDIS_PORT:-6390}
HTTP_PORT=${HTTP_PORT:-8080}
NODES=(9001 9002 9003)
DIR=$(mktemp -d -t wshub-cluster-XXXXXX)
mkdir -p "$DIR/logs" "$DIR/tmp"
echo "cluster: files in $DIR"

pids=()
stop() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# CHAT: a chat binary built already (else it is built here).
if [[ -z ${CHAT:-} ]]; then
    cargo build --quiet --example chat
    CHAT=${CARGO_TARGET_DIR:-target}/debug/examples/chat
fi

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$DIR" >"$DIR/logs/redis.log" 2>&1 &
pids+=($!)

export CHAT_SECRET=${CHAT_SECRET:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}
for port in "${NODES[@]}"; do
    "$CHAT" --port "$port" --redis "redis://127.0.0.1:$REDIS_PORT/" \
        --trusted-proxy 127.0.0.1/32 >"$DIR/logs/node-$port.log" 2>&1 &
    pids+=($!)
done

# deploy/nginx.conf as it is, but for the port when HTTP_PORT is set.
sed "s/listen 127.0.0.1:8080;/listen 127.0.0.1:$HTTP_PORT;/" deploy/nginx.conf >"$DIR/nginx.conf"
nginx -p "$DIR" -c "$DIR/nginx.conf" \
    -g "daemon off; pid $DIR/nginx.pid; error_log $DIR/logs/nginx-error.log;" &
pids+=($!)

# Wait until nginx and every node answer.
for port in "$HTTP_PORT" "${NODES[@]}"; do
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
done
echo "cluster: open http://127.0.0.1:$HTTP_PORT/ (nodes ${NODES[*]}, redis $REDIS_PORT); Ctrl-C stops"
wait -n
echo "cluster: a process ended; stopping (logs in $DIR/logs)"
