#!/usr/bin/env bash
# Autobahn|Testsuite conformance gate for silverback.
#
# Usage: conformance/run.sh [server|client|all]      (default: all)
#
#   server  wstest -m fuzzingclient against the autobahn_server example
#   client  the autobahn_client example against wstest -m fuzzingserver
#   all     both suites at the same time (each wstest is one single-threaded
#           Python process): each one's output goes to <AUTOBAHN_OUT>/<mode>.out
#           and is printed when it finishes, with a progress line meanwhile
#
# Sets up wstest (idempotent: conformance/setup.sh, into $TOOLS_DIR, default
# ~/.cache/autobahn), builds the examples in release, runs the suite on
# 127.0.0.1 only, summarizes, and compares every case's behavior with
# conformance/expected-server.json / expected-client.json. Exit status 0 only
# if every case matches, 1 if a case differs (the differing cases are printed),
# 2 on a harness problem (no report); for `all`, the worse of the two (a
# harness problem in one suite stops the other at once).
#
# Env:
#   TOOLS_DIR                  where wstest is installed (default ~/.cache/autobahn)
#   AUTOBAHN_OUT               reports and logs (default target/autobahn; HTML in <mode>/index.html)
#   AUTOBAHN_CASES             comma-separated case patterns (default "*": all); a partial run is
#                              compared with the matching part of the expected file only
#   AUTOBAHN_EXCLUDE           comma-separated case patterns to skip
#   AUTOBAHN_QUICK=1           skip 9.* (large messages) and 12.*/13.* (permessage-deflate)
#   AUTOBAHN_UPDATE_EXPECTED=1 rewrite the expected file(s) from this run instead of comparing
#                              (then justify every non-OK case in conformance/README.md)
#   AUTOBAHN_PROGRESS          seconds between progress lines of `all` (default 60, 0: none)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$ROOT/conformance"
cd "$ROOT"

MODE="${1:-all}"
case "$MODE" in
    server | client | all) ;;
    -h | --help)
        awk 'NR > 1 && !/^#/ { exit } NR > 1' "$HERE/run.sh"
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

# `all` runs this script once per mode, in the background; these children
# skip the setup and the build, which the parent has done.
PREPARED="${_AUTOBAHN_PREPARED:-0}"

SERVER_PID=""
SUITE_PID=""
ROLE_PIDS=()
SLEEP_PID=""
cleanup() {
    # `all`: each mode runs in a process group of its own (this script
    # again, the server under test, ...): stop each group; its own EXIT trap
    # stops the suite's process group.
    local pid
    for pid in "${ROLE_PIDS[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${ROLE_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    ROLE_PIDS=()
    if [ -n "$SLEEP_PID" ]; then
        kill "$SLEEP_PID" 2>/dev/null || true
        wait "$SLEEP_PID" 2>/dev/null || true
    fi
    SLEEP_PID=""
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

if [ "$PREPARED" != 1 ]; then
    echo "==> wstest setup"
    "$HERE/setup.sh"

    echo "==> building the examples (release)"
    cargo build --release -p silverback --example autobahn_server --example autobahn_client
fi
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
    # A free port below the ephemeral range, so that no port-0 bind or
    # outgoing connection (the server suite runs at the same time) can take
    # it between this check and wstest's bind.
    port="$(python3 - <<'PY'
import random, socket
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
lo, hi = max(1024, low - 12000), max(1025, low - 1)
for _ in range(200):
    p = random.randint(lo, hi)
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
    print(p)
    break
else:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
PY
)"
    AUTOBAHN_PORT="$port" AUTOBAHN_REPORT_DIR="$dir" AUTOBAHN_RUN_DIR="$dir/run" \
        suite "$HERE/run-client-suite.sh" "$AGENT" -- "$BIN/autobahn_client" '{url}' '{agent}'
    echo "client suite wall time: $((SECONDS - start))s"
    compare client "$dir/index.json" "$dir/run/fuzzingserver.json"
}

if [ "$MODE" != all ]; then
    status=0
    "run_$MODE" || status=$?
    if [ "$status" -eq 2 ]; then
        echo "==> Autobahn conformance ($MODE): harness problem (see above)"
    elif [ "$status" -ne 0 ]; then
        echo "==> Autobahn conformance ($MODE): results differ from the expected file (see above)"
    elif [ "${AUTOBAHN_UPDATE_EXPECTED:-0}" = 1 ]; then
        echo "==> Autobahn conformance ($MODE): conformance/expected-$MODE.json rewritten from this run"
    else
        echo "==> Autobahn conformance ($MODE): all results as expected"
    fi
    exit "$status"
fi

# all: both suites at the same time, each in a process group of its own
# (this script again), output to $OUT/<mode>.out, printed when it ends.

# progress MODE: "N/M cases" from the suite's wstest log.
progress() {
    local log="$OUT/$1/run/wstest.log" n total
    [ -f "$log" ] || { echo "starting"; return; }
    n="$(grep -c '^Running test case ID' "$log" || true)"
    total="$(sed -n 's/^Ok, will run \([0-9][0-9]*\) test cases.*/\1/p' "$log" | head -n 1)"
    echo "${n:-0}/${total:-?} cases"
}

# tally MODE: the counts per behavior from the suite's summary.json.
tally() {
    python3 - "$OUT/$1/summary.json" "$AGENT" <<'PY' 2>/dev/null || echo "no summary"
import json, sys
s = json.load(open(sys.argv[1]))[sys.argv[2]]
o = s["overall"]
print(f"{s['total']} cases: " + ", ".join(f"{o[b]} {b}" for b in
      ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]))
PY
}

MODES=(server client)
declare -A PID_OF RC_OF
start=$SECONDS
for m in "${MODES[@]}"; do
    rm -f "$OUT/$m.out"
    _AUTOBAHN_PREPARED=1 AUTOBAHN_OUT="$OUT" setsid bash "$HERE/run.sh" "$m" >"$OUT/$m.out" 2>&1 &
    PID_OF[$m]=$!
    ROLE_PIDS+=("$!")
    echo "==> $m suite started (pid ${PID_OF[$m]}, output $OUT/$m.out)"
done

interval="${AUTOBAHN_PROGRESS:-60}"
next=$((SECONDS + interval))
left=${#MODES[@]}
harness=0
while [ "$left" -gt 0 ]; do
    sleep 1 &
    SLEEP_PID=$!
    wait "$SLEEP_PID" || true
    SLEEP_PID=""
    for m in "${MODES[@]}"; do
        [ -n "${RC_OF[$m]:-}" ] && continue
        kill -0 "${PID_OF[$m]}" 2>/dev/null && continue
        rc=0
        wait "${PID_OF[$m]}" || rc=$?
        RC_OF[$m]=$rc
        left=$((left - 1))
        if [ "$rc" -gt 1 ]; then
            harness=1
        fi
        remaining=()
        for pid in "${ROLE_PIDS[@]}"; do
            [ "$pid" = "${PID_OF[$m]}" ] || remaining+=("$pid")
        done
        ROLE_PIDS=("${remaining[@]+"${remaining[@]}"}")
        echo
        echo "==> $m suite finished after $((SECONDS - start))s (exit $rc); its output ($OUT/$m.out):"
        cat "$OUT/$m.out"
    done
    if [ "$harness" = 1 ] && [ "$left" -gt 0 ]; then
        # The gate has failed anyway: do not wait for the other suite.
        echo
        echo "==> harness problem: stopping the other suite"
        cleanup
        for m in "${MODES[@]}"; do
            [ -n "${RC_OF[$m]:-}" ] && continue
            RC_OF[$m]=stopped
            echo "==> $m suite stopped after $((SECONDS - start))s; its output ($OUT/$m.out):"
            cat "$OUT/$m.out"
        done
        left=0
    fi
    if [ "$interval" -gt 0 ] && [ "$left" -gt 0 ] && [ "$SECONDS" -ge "$next" ]; then
        line=""
        for m in "${MODES[@]}"; do
            [ -n "${RC_OF[$m]:-}" ] && continue
            line+=" $m: $(progress "$m");"
        done
        echo "... $((SECONDS - start))s:${line%;}"
        next=$((SECONDS + interval))
    fi
done

echo
echo "==> Autobahn conformance, both suites in $((SECONDS - start))s:"
status=0
for m in "${MODES[@]}"; do
    rc=${RC_OF[$m]}
    case "$rc" in
        0)
            verdict="as expected"
            if [ "${AUTOBAHN_UPDATE_EXPECTED:-0}" = 1 ]; then
                verdict="conformance/expected-$m.json rewritten from this run"
            fi
            ;;
        1)
            verdict="DIFFERS from conformance/expected-$m.json"
            if [ "$status" -eq 0 ]; then
                status=1
            fi
            ;;
        stopped) verdict="STOPPED (the other suite had a harness problem)" ;;
        *)
            verdict="HARNESS PROBLEM (exit $rc)"
            status=2
            ;;
    esac
    if [ "$rc" = stopped ]; then
        printf '  %-6s %s\n' "$m" "$verdict"
    else
        printf '  %-6s %s; %s\n' "$m" "$(tally "$m")" "$verdict"
    fi
done
if [ "$status" -eq 2 ]; then
    echo "==> Autobahn conformance: harness problem (see above)"
elif [ "$status" -ne 0 ]; then
    echo "==> Autobahn conformance: results differ from the expected files (see above)"
elif [ "${AUTOBAHN_UPDATE_EXPECTED:-0}" = 1 ]; then
    echo "==> Autobahn conformance: expected files rewritten from this run"
else
    echo "==> Autobahn conformance: all results as expected"
fi
exit "$status"
