#!/usr/bin/env bash
# WebSockets over HTTP/2 (RFC 8441) against HTTP/1.1, both through
# silverback's Dialer, on the bench server `silverback-h2-echo` (hyper,
# HTTP/1.1 upgrades and extended CONNECT on one port):
#   connect  WebSockets opened and closed per second, and server CPU per
#            WebSocket (h2: every one a new stream of ONE pooled connection;
#            HTTP/1.1: a TCP (+TLS) connection each), 8 dialers at once;
#   echo     16-byte echo, 1 socket and 16 sockets, server CPU per message.
# The server runs on core 0, the generator on core 1.
#
#   scripts/bench-h2.sh [--scheme wss|ws] [--duration S] [--rounds N]
#
# Needs release builds (built if missing). Prints a table; the JSON of each
# run goes to target/bench-results/h2-<date>/.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEME=wss
DURATION=5
ROUNDS=3
while [ $# -gt 0 ]; do
    case $1 in
        --scheme) SCHEME=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

PORT_BASE=${PORT_BASE:-22000}
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

REL=${CARGO_TARGET_DIR:-target}/release
if [ ! -x "$REL/silverback" ] || [ ! -x "$REL/silverback-h2-echo" ]; then
    cargo build --release -p silverback-cli -p silverback-bench-peers --bin silverback --bin silverback-h2-echo
fi
OUT=${CARGO_TARGET_DIR:-target}/bench-results/h2-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
trap '[ -z "${SERVER_PID:-}" ] || stop_server' EXIT

TLS=()
[ "$SCHEME" = wss ] && TLS=(--tls)

# run NAME TRANSPORT-FLAG BENCH-ARGS...: one measurement, its JSON kept.
run() {
    local name=$1 transport=$2
    shift 2
    next_port
    taskset -c 0 "$REL/silverback-h2-echo" "127.0.0.1:$PORT" "${TLS[@]}" >/dev/null 2>&1 &
    await_server $! "$PORT" || { echo "the bench server did not start" >&2; exit 1; }
    taskset -c 1 "$REL/silverback" -q bench --no-progress --json --insecure "$transport" \
        --server-pid "$SERVER_PID" --url "$SCHEME://127.0.0.1:$PORT/ws" \
        --duration "$DURATION" "$@" >"$OUT/$name.json"
    stop_server
}

field() { python3 -c "import json,sys; v=json.load(open(sys.argv[1]))[sys.argv[2]]; print(f'{v:.1f}' if isinstance(v,float) else v)" "$@"; }

printf '%-28s %-9s %12s %18s\n' "$SCHEME, 16-byte messages" transport "per second" "server CPU (µs/op)"
for round in $(seq "$ROUNDS"); do
    for transport in --dialer --http2; do
        label=${transport#--}
        [ "$label" = dialer ] && label=http/1.1 || label=h2
        run "connect-$label-$round" "$transport" --mode connect --conns 8
        run "echo1-$label-$round" "$transport" --mode echo --conns 1 --pipeline 1 --size 16 --warmup 1
        run "echo16-$label-$round" "$transport" --mode echo --conns 16 --pipeline 1 --size 16 --warmup 1
        for what in connect echo1 echo16; do
            f=$OUT/$what-$label-$round.json
            rate=handshakes_per_sec
            [ "$what" = connect ] || rate=msgs_per_sec
            printf '%-28s %-9s %12s %18s\n' "$what (round $round)" "$label" \
                "$(field "$f" "$rate")" "$(field "$f" server_cpu_us_per_op)"
        done
    done
done
echo "JSON: $OUT"
