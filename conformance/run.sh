#!/usr/bin/env bash
# Autobahn|Testsuite conformance gate for silverback.
#
# Usage: conformance/run.sh [server|client|all]      (default: all)
#
#   server  wstest -m fuzzingclient against the autobahn_server example
#   client  the autobahn_client example against wstest -m fuzzingserver
#
# Sets up wstest (idempotent: conformance/setup.sh, into $TOOLS_DIR, default
# ~/.cache/autobahn), builds the examples in release, runs the suite on
# 127.0.0.1 only, summarizes, and compares every case's behavior with
# conformance/expected-server.json / expected-client.json. Exit status 0 only
# if every case matches; otherwise the differing cases are printed.
#
# Env:
#   TOOLS_DIR                  where wstest is installed (default ~/.cache/autobahn)
#   AUTOBAHN_OUT               reports and logs (default target/autobahn; HTML in <mode>/index.html)
#   AUTOBAHN_CASES             comma-separated case patterns (default "*": all); a partial run is
#                              compared with the matching part of the expected file only
#   AUTOBAHN_EXCLUDE           extra comma-separated case patterns to skip
#   AUTOBAHN_QUICK=1           also skip 9.* (large messages, the slow part)
#   AUTOBAHN_UPDATE_EXPECTED=1 rewrite the expected file(s) from this run instead of comparing
#                              (then justify every non-OK case in conformance/README.md)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$ROOT/conformance"
cd "$ROOT"

MODE="${1:-all}"
case "$MODE" in
    server | client | all) ;;
    -h | --help)
        sed -n '2,23p' "$0"
        exit 0
        ;;
    *)
        echo "usage: $0 [server|client|all]" >&2
        exit 2
        ;;
esac

OUT="${AUTOBAHN_OUT:-$ROOT/target/autobahn}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
AGENT=silverback

# 12.* and 13.* test permessage-deflate (RFC 7692), which the examples do not
# negotiate: they are excluded until the deflate issue brings them in (enable
# compression in both examples, drop them from this list, add their results to
# the expected files). They are slow: ~11-13 minutes per role.
EXCLUDE="12.*,13.*${AUTOBAHN_EXCLUDE:+,$AUTOBAHN_EXCLUDE}"
export AUTOBAHN_EXCLUDE="$EXCLUDE"

SERVER_PID=""
SUITE_PID=""
cleanup() {
    # The suite runs in its own process group (wstest and, for the client
    # suite, the client under test): stop all of it.
    if [ -n "$SUITE_PID" ]; then
        kill -TERM -- "-$SUITE_PID" 2>/dev/null || kill -TERM "$SUITE_PID" 2>/dev/null || true
        wait "$SUITE_PID" 2>/dev/null || true
    fi
    SUITE_PID=""
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "==> wstest setup"
"$HERE/setup.sh"

echo "==> building the examples (release)"
cargo build --release -p silverback --example autobahn_server --example autobahn_client
BIN="$ROOT/target/release/examples"

# compare MODE INDEX_JSON SPEC: check the report against expected-MODE.json.
compare() {
    local flags=()
    [ "${AUTOBAHN_UPDATE_EXPECTED:-0}" = 1 ] && flags+=(--update)
    python3 "$HERE/compare.py" "$HERE/expected-$1.json" "$2" "$AGENT" --spec "$3" "${flags[@]}"
}

# Runs one suite script in a process group of its own (so that an interrupt
# of this script stops wstest too); exit 2 (harness problem: no report) is
# fatal, 1 (a FAILED case) is left to the comparison with the expected file.
suite() {
    local rc=0
    setsid "$@" &
    SUITE_PID=$!
    wait "$SUITE_PID" || rc=$?
    SUITE_PID=""
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
        echo "harness problem (exit $rc): no usable report" >&2
        exit 2
    fi
}

run_server() {
    local dir="$OUT/server" log url
    rm -rf "$dir"
    mkdir -p "$dir/run"
    log="$dir/run/server.log"
    echo "==> server suite (wstest fuzzingclient -> autobahn_server)"
    local start=$SECONDS
    "$BIN/autobahn_server" 127.0.0.1:0 >"$log" 2>&1 &
    SERVER_PID=$!
    # The example prints `listening on ws://ADDR` once bound (port 0: a free one).
    for _ in $(seq 1 100); do
        url="$(sed -n 's/^listening on \(ws:\/\/.*\)$/\1/p' "$log")"
        [ -n "$url" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$url" ]; then
        echo "autobahn_server did not start; log:" >&2
        cat "$log" >&2
        exit 2
    fi
    echo "autobahn_server at $url (pid $SERVER_PID)"
    AUTOBAHN_REPORT_DIR="$dir" AUTOBAHN_RUN_DIR="$dir/run" \
        suite "$HERE/run-server-suite.sh" "$url" "$AGENT"
    cleanup
    echo "server suite wall time: $((SECONDS - start))s"
    compare server "$dir/index.json" "$dir/run/fuzzingclient.json"
}

run_client() {
    local dir="$OUT/client" port
    rm -rf "$dir"
    mkdir -p "$dir/run"
    echo "==> client suite (autobahn_client -> wstest fuzzingserver)"
    local start=$SECONDS
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    AUTOBAHN_PORT="$port" AUTOBAHN_REPORT_DIR="$dir" AUTOBAHN_RUN_DIR="$dir/run" \
        suite "$HERE/run-client-suite.sh" "$AGENT" -- "$BIN/autobahn_client" '{url}' '{agent}'
    echo "client suite wall time: $((SECONDS - start))s"
    compare client "$dir/index.json" "$dir/run/fuzzingserver.json"
}

status=0
if [ "$MODE" = server ] || [ "$MODE" = all ]; then
    run_server || status=1
fi
if [ "$MODE" = client ] || [ "$MODE" = all ]; then
    run_client || status=1
fi
if [ "$status" -ne 0 ]; then
    echo "==> Autobahn conformance: results differ from the expected files (see above)"
else
    echo "==> Autobahn conformance: all results as expected"
fi
exit "$status"
