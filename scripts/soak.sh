#!/usr/bin/env bash
# Soak test (not part of CI): starts `silverback serve` (release build) and
# keeps CONNECTIONS WebSocket connections exchanging messages with it for
# MINUTES (crates/cli/examples/soak.rs: echoes of 16 B..64 KiB checked byte
# for byte, pings, half of the connections compressed, connections closing
# and dialing again after 30..300 exchanges). Every 10 s it prints the
# server's RSS and open file descriptors (/proc/PID/status, /proc/PID/fd);
# at the end a summary: start (listening, no connections), peak, last
# sample under load, and after the load ended (all connections closed).
#
#   scripts/soak.sh [CONNECTIONS] [MINUTES] [INTERVAL_MS]
#
# Defaults: 2000 connections, 10 minutes, one message per connection per
# second. Exits non-zero if the load saw any error, the server died, or
# file descriptors were left open after the load ended.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-2000}
MINUTES=${2:-10}
INTERVAL_MS=${3:-1000}
SECS=${SOAK_SECONDS:-$((MINUTES * 60))} # SOAK_SECONDS: a shorter smoke run

# Each connection is a descriptor in the server and one in the client.
want=$((2 * N + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
    ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
echo "fd limit: $(ulimit -n)"

cargo build --release --quiet -p silverback-cli --bin silverback --example soak
BIN=target/release/silverback
LOAD=target/release/examples/soak

LOG=$(mktemp -t silverback-soak.XXXXXX)
SERVER=
LOADPID=
cleanup() {
    if [ -n "$LOADPID" ] && kill -0 "$LOADPID" 2>/dev/null; then kill -KILL "$LOADPID"; fi
    if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then kill -KILL "$SERVER"; fi
    rm -f "$LOG"
}
trap cleanup EXIT

RUST_LOG=info "$BIN" serve --addr 127.0.0.1:0 2>"$LOG" &
SERVER=$!
URL=
for _ in $(seq 100); do
    URL=$(sed -n 's/.*listening on \(ws:\/\/[^ ]*\).*/\1/p' "$LOG" | head -n 1)
    [ -n "$URL" ] && break
    kill -0 "$SERVER" 2>/dev/null || { cat "$LOG"; echo "server exited" >&2; exit 1; }
    sleep 0.1
done
[ -n "$URL" ] || { cat "$LOG"; echo "server not listening" >&2; exit 1; }

rss_kib() { awk '/^VmRSS:/ { print $2 }' /proc/"$SERVER"/status; }
fds() { find /proc/"$SERVER"/fd -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
sample() {
    local r f
    r=$(rss_kib)
    f=$(fds)
    printf 'server: t=%4ss rss=%s fds=%s (%s)\n' "$1" "$(mib "$r")" "$f" "$2"
    LAST_RSS=$r
    LAST_FDS=$f
    if [ "$r" -gt "$PEAK_RSS" ]; then PEAK_RSS=$r; fi
    if [ "$f" -gt "$PEAK_FDS" ]; then PEAK_FDS=$f; fi
}

echo "server: pid $SERVER on $URL; load: $N connections for $MINUTES min, a message every ${INTERVAL_MS} ms each"
PEAK_RSS=0
PEAK_FDS=0
sample 0 "start, no connections"
START_RSS=$LAST_RSS
START_FDS=$LAST_FDS

"$LOAD" "$URL" "$N" "$SECS" "$INTERVAL_MS" &
LOADPID=$!
t0=$(date +%s)
while kill -0 "$LOADPID" 2>/dev/null; do
    for _ in $(seq 100); do
        kill -0 "$LOADPID" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$SERVER" 2>/dev/null || { echo "server died" >&2; cat "$LOG"; exit 1; }
    kill -0 "$LOADPID" 2>/dev/null || break
    sample $(($(date +%s) - t0)) "under load"
done
load_status=0
wait "$LOADPID" || load_status=$?
LOADPID=
END_RSS=$LAST_RSS
END_FDS=$LAST_FDS

# Connections are closed: give the server a moment to free them.
sleep 5
sample $(($(date +%s) - t0)) "after the load"
AFTER_RSS=$LAST_RSS
AFTER_FDS=$LAST_FDS

# Stop the server the way an operator would, and let it drain.
kill -TERM "$SERVER"
server_status=0
wait "$SERVER" || server_status=$?
SERVER=

echo
echo "summary ($N connections, ${SECS} s):"
echo "  rss:  start $(mib "$START_RSS"), peak $(mib "$PEAK_RSS"), end of load $(mib "$END_RSS"), after $(mib "$AFTER_RSS")"
echo "  fds:  start $START_FDS, peak $PEAK_FDS, end of load $END_FDS, after $AFTER_FDS"
echo "  load exit status: $load_status, server exit status: $server_status"
echo "  server log: $(grep -c ' INFO open ' "$LOG") opened, $(grep -c ' INFO closed peer=' "$LOG") closed, $(grep -c ' INFO closed unexpectedly ' "$LOG") closed unexpectedly"
if grep -q ' WARN \| ERROR ' "$LOG"; then
    echo "server warnings/errors ($(grep -c ' WARN \| ERROR ' "$LOG")):"
    grep ' WARN \| ERROR ' "$LOG" | head -n 20
fi
status=0
[ "$load_status" -eq 0 ] && [ "$server_status" -eq 0 ] || status=1
if [ "$AFTER_FDS" -gt "$START_FDS" ]; then
    echo "file descriptors left open: $AFTER_FDS after vs $START_FDS at start" >&2
    status=1
fi
exit "$status"
