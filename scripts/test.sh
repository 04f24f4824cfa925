#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: installs the test peers
# (scripts/test-deps.sh), then runs `cargo test --workspace --all-features`: the
# `wshub` crate and the load tool `wshub-bench`. Extra arguments go to `cargo test` on
# `wshub` alone (e.g. `bash scripts/test.sh --test hub_presence`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/test-deps.sh
if (($#)); then
    printf '\n==> cargo test --all-features %s\n' "$*"
    cargo test --all-features "$@"
else
    printf '\n==> cargo test --workspace --all-features\n'
    cargo test --workspace --all-features
fi
