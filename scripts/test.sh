#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the interop peers
# (and Chromium, and the Autobahn testsuite),
# then format check, clippy, all tests (unit, scenario, loopback, interop,
# CLI) and doctests. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components"
for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done

step "interop peers (Python websockets, Node ws, headless Chromium)"
scripts/install-peers.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --all-features --no-fail-fast
else
    cargo test --workspace --all-features --no-fail-fast --lib --bins --tests
fi

step "doctests"
cargo test --workspace --all-features --doc

step "fuzz targets (cargo-fuzz, 20 s each)"
scripts/fuzz.sh --ci

step "Autobahn|Testsuite conformance (server and client, compared with conformance/expected-*.json)"
conformance/run.sh all
