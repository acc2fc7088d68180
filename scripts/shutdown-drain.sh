#!/usr/bin/env bash
# Graceful shutdown under load (not part of CI): starts `silverback serve`
# (release build), opens CONNECTIONS WebSocket connections to it (default
# 1000, with crates/cli/examples/drain_load.rs), sends the server SIGTERM,
# and reports how long the drain took and how many connections closed with
# 1001, from the server's drain report line and from the clients' side.
#
#   scripts/shutdown-drain.sh [CONNECTIONS] [SHUTDOWN_TIMEOUT_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-1000}
DEADLINE=${2:-10}

# Each connection is a descriptor in the server and one in the client.
want=$((2 * N + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
    ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
echo "fd limit: $(ulimit -n)"

cargo build --release --quiet -p silverback-cli --bin silverback --example drain_load
BIN=target/release/silverback
LOAD=target/release/examples/drain_load

LOG=$(mktemp -t silverback-drain.XXXXXX)
SERVER=
cleanup() {
    if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then kill -KILL "$SERVER"; fi
    rm -f "$LOG"
}
trap cleanup EXIT

RUST_LOG=info "$BIN" serve --addr 127.0.0.1:0 --shutdown-timeout "$DEADLINE" 2>"$LOG" &
SERVER=$!

URL=
for _ in $(seq 100); do
    URL=$(sed -n 's/.*listening on \(ws:\/\/[^ ]*\).*/\1/p' "$LOG" | head -n 1)
    [ -n "$URL" ] && break
    kill -0 "$SERVER" 2>/dev/null || { cat "$LOG"; echo "server exited" >&2; exit 1; }
    sleep 0.1
done
[ -n "$URL" ] || { cat "$LOG"; echo "server not listening" >&2; exit 1; }
echo "server: pid $SERVER on $URL, --shutdown-timeout $DEADLINE"

load_status=0
"$LOAD" "$URL" "$N" "$SERVER" || load_status=$?

server_status=0
wait "$SERVER" || server_status=$?
SERVER=

echo "server: exit status $server_status"
grep -o '[A-Z]*: shutting down.*' "$LOG" | sed 's/^/server: /' || true
grep -o '[0-9]* connections drained in .*' "$LOG" | sed 's/^/server: /' || echo "server: no drain report line" >&2
echo "server: $(grep -c ' INFO open ' "$LOG") open lines, $(grep -c ' INFO closed peer=' "$LOG") closed lines, $(grep -c ' INFO closed unexpectedly ' "$LOG") closed unexpectedly"
if grep -q ' WARN \| ERROR ' "$LOG"; then
    echo "server warnings/errors:"
    grep ' WARN \| ERROR ' "$LOG" | head -n 20
fi
[ "$load_status" -eq 0 ] && [ "$server_status" -eq 0 ]
