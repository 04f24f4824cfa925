#!/usr/bin/env bash
# Installs what the test suite needs that a fresh Debian machine lacks. Idempotent:
# re-running only checks what is already there. Called by scripts/test.sh (the
# README's test command) and by .ci/run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

section() { printf '\n==> %s\n' "$*"; }

# Debian packages (apt).
#   chromium chromium-driver   browser tests (tests/browser_*.rs, via playwright-core)
#   prometheus                 tests/metrics_prometheus.rs scrapes the chat example with it
#   redis-server               the Redis backplane tests (tests/cluster_*.rs) start their own
#                              servers on free loopback ports (tests/common/services.rs)
#   nginx                      tests/cluster_nginx.rs: three nodes behind deploy/nginx.conf
#   haproxy                    tests/cluster_haproxy.rs: the same behind deploy/haproxy.cfg
# Only packages not yet installed are fetched; `apt-get update` runs only then.
APT_PACKAGES=(chromium chromium-driver prometheus redis-server nginx haproxy)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
    section "apt-get install ${missing[*]}"
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Interop test peers (tests/peers/): Python `websockets`, Node `ws`,
# playwright-core, and socket.io + jsonwebtoken (wshub-bench's test against the
# comparison's real Socket.IO server, wshub-bench/tests/socketio_node.rs), pinned in
# tests/peers/requirements.txt and tests/peers/package.json + package-lock.json.
section "test peers: Python (tests/peers/requirements.txt)"
# PIP_BREAK_SYSTEM_PACKAGES: lets pip install into a Debian-managed python3
# (PEP 668) too; no effect on other interpreters.
PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check \
    --root-user-action=ignore -r tests/peers/requirements.txt
python3 -c 'import websockets; print("websockets", websockets.__version__)'

section "test peers: Node (tests/peers/package-lock.json)"
npm ci --prefix tests/peers --no-audit --no-fund --loglevel=error
node -e 'const v = (p) => require("./tests/peers/node_modules/" + p + "/package.json").version;
console.log("node", process.version, "ws", v("ws"), "socket.io", v("socket.io"), "jsonwebtoken", v("jsonwebtoken"))'
