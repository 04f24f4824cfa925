#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: installs the test peers
# (scripts/test-deps.sh), then runs `cargo test --all-features`. Extra arguments go to
# `cargo test` (e.g. `bash scripts/test.sh --test hub_presence`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/test-deps.sh
printf '\n==> cargo test --all-features %s\n' "$*"
cargo test --all-features "$@"
