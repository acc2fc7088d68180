#!/usr/bin/env bash
# The whole test suite, on a fresh machine. CI runs exactly this (.ci/run).
# About 45-50 minutes on a new 2-core machine (peers and Chromium install,
# builds, tests, fuzzing, Autobahn); a timing summary per step is printed at
# the end, also when a step fails.
#
# Fast tier (needs only the Rust toolchains; the first failure stops the run):
#   fmt check; clippy (all targets, all features, -D warnings; this is also
#   the MSRV check of our code, see scripts/check-msrv.sh); rustdoc with
#   -D warnings; the MSRV check of the dependencies; the unit, sans-I/O and
#   loopback tests of silverback-proto, silverback and silverback-hub; the doctests; the
#   feature matrix (each package with features: clippy with no default
#   features and with each feature alone; silverback's tests with no
#   default features).
# Slow tier:
#   installs the interop peers (Python websockets and Node ws into .peers/,
#   Debian's chromium); the rest of the workspace's tests (the CLI tests,
#   interop with Python, Node and Chromium); a short run of every fuzz
#   target; the Autobahn|Testsuite conformance gate in both roles.
#
#   scripts/test.sh [--fast]      --fast: the fast tier only (no peers needed)
set -euo pipefail
cd "$(dirname "$0")/.."
fast_only=0
case ${1:-} in
'') ;;
--fast) fast_only=1 ;;
*)
    echo "usage: $0 [--fast]" >&2
    exit 2
    ;;
esac
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

# Steps and their durations, for the summary at the end.
step_names=()
step_secs=()
current=
current_start=0
end_step() {
    if [[ -n $current ]]; then
        step_names+=("$current")
        step_secs+=($((SECONDS - current_start)))
        current=
    fi
}
step() {
    end_step
    current=$*
    current_start=$SECONDS
    printf '\n==> %s\n' "$*"
}
tier() { printf '\n======== %s ========\n' "$*"; }
summary() {
    local status=$? failed=$current i
    end_step
    printf '\n==> timing (seconds per step)\n'
    for i in "${!step_names[@]}"; do
        printf '%6d  %s\n' "${step_secs[$i]}" "${step_names[$i]}"
    done
    printf '%6d  total\n' "$SECONDS"
    if ((status != 0)); then
        printf '==> FAILED (exit %d) in: %s\n' "$status" "${failed:-?}"
    fi
}
trap summary EXIT

# The tests of the fast tier: these packages' tests need no interop peer
# (sans-I/O, in-memory and 127.0.0.1 loopback tests against our own code).
# The build is always the whole workspace with all features, so that the
# slow tier's test run reuses it (selecting packages with -p would unify
# features differently and build silverback twice).
fast_tests='package(silverback-proto) | package(silverback) | package(silverback-hub)'
have_nextest=0
cargo nextest --version >/dev/null 2>&1 && have_nextest=1

tier "fast tier"

step "toolchain components"
for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done

step "cargo fmt --check"
cargo fmt --all --check

# Clippy takes the MSRV from `rust-version` in Cargo.toml: its
# incompatible_msrv lint fails this step on a std API newer than the MSRV.
step "cargo clippy (all features; with the MSRV lint)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "cargo doc (-D warnings: broken intra-doc links and the like)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features

step "MSRV: no dependency needs a newer Rust than rust-version"
scripts/check-msrv.sh

step "unit, sans-I/O and loopback tests (silverback-proto, silverback, silverback-hub)"
if ((have_nextest)); then
    cargo nextest run --workspace --all-features --no-fail-fast -E "$fast_tests"
else
    cargo test -p silverback-proto -p silverback -p silverback-hub --all-features --no-fail-fast --lib --bins --tests
fi

step "doctests"
cargo test --workspace --all-features --doc

# Feature matrix, kept cheap: the features are read from the manifests (a
# new feature is covered without editing this script); per package with
# features, clippy (a `cargo check` plus lints, -D warnings, so a cfg gap
# fails as an error or an unused-item warning) of all targets with no
# default features and with each feature alone; then ONE test run,
# silverback with no default features. The full feature set was tested
# above. All of it in the one target directory.
step "feature matrix: clippy --no-default-features, and each feature alone"
mapfile -t configs < <(cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    features = sorted(f for f in p["features"] if f != "default")
    if features:
        print(p["name"])
        for f in features:
            print(p["name"], f)
')
((${#configs[@]})) || { echo "feature matrix: no package has features?" >&2; exit 1; }
for config in "${configs[@]}"; do
    read -r pkg feature <<<"$config"
    printf -- '--- %s: --no-default-features%s\n' "$pkg" "${feature:+ --features $feature}"
    cargo clippy -p "$pkg" --all-targets --no-default-features ${feature:+--features "$feature"} -- -D warnings
done

step "feature matrix: silverback tests with --no-default-features"
if ((have_nextest)); then
    cargo nextest run -p silverback --no-default-features --no-fail-fast
else
    cargo test -p silverback --no-default-features --no-fail-fast --lib --tests
fi

((fast_only)) && exit 0

tier "slow tier"

step "interop peers (Python websockets, Node ws, headless Chromium)"
scripts/install-peers.sh

step "CLI and interop tests (the rest of the workspace)"
if ((have_nextest)); then
    cargo nextest run --workspace --all-features --no-fail-fast -E "not ($fast_tests)"
else
    cargo test --workspace --exclude silverback-proto --exclude silverback --exclude silverback-hub --all-features \
        --no-fail-fast --lib --bins --tests
fi

step "fuzz targets (cargo-fuzz, 20 s each)"
scripts/fuzz.sh --ci

step "Autobahn|Testsuite conformance (server and client, compared with conformance/expected-*.json)"
conformance/run.sh all
