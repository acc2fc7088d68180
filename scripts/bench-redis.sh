#!/usr/bin/env bash
# Cross-node fan-out through the Redis backplane: one redis-server (no
# persistence), nodes A and B (`silverback serve --pubsub --redis ...
# --threads 1`), the publisher on A, the subscribers spread over A and B
# (`silverback bench --mode fanout --url A --spread-url B`); then the same
# load on one node without Redis, for the cost of the hop.
#
# Reports, per run: deliveries/s, publish-to-delivery p50/p99, lost and
# duplicated (from the generator's JSON), and Redis' CPU per published
# message: its utime+stime over the whole run, and its own EVALSHA time
# (`INFO commandstats`), divided by the publishes it ran.
#
# With --socketio, then the same load on two Socket.IO 4.8 servers sharing
# the Redis through @socket.io/redis-adapter 8.3 (bench/node/
# socketio_fanout.mjs; the generator speaks Engine.IO v4 over WebSocket,
# `bench --socketio`). Its npm packages go into .peers/bench-node when
# missing (scripts/bench-node-lib.sh; --install: only that).
#
#   scripts/bench-redis.sh [--subscribers N] [--size BYTES] [--duration S]
#                          [--pipeline N] [--rate MSG_PER_S] [--socketio]
#                          [--install]
#
# --rate publishes at a fixed rate instead of as fast as the echoes allow
# (for Redis' CPU per message at the same rate across subscriber counts).
#
# Needs a release build (`cargo build --release -p silverback-cli`) and
# redis-server/redis-cli (scripts/install-peers.sh). Raw JSON of each run
# goes to target/bench-results/redis-<date>/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
die() { echo "bench-redis.sh: $*" >&2; exit 1; }

SUBSCRIBERS=2000
SIZE=64
DURATION=10
PIPELINE=1
SOCKETIO=0
RATE=()
INSTALL_ONLY=0
while [ $# -gt 0 ]; do
    case $1 in
        --subscribers) SUBSCRIBERS=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --pipeline) PIPELINE=$2; shift 2 ;;
        --rate) RATE=(--rate "$2"); shift 2 ;;
        --socketio) SOCKETIO=1; shift ;;
        --install) SOCKETIO=1; INSTALL_ONLY=1; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

# shellcheck source=scripts/bench-node-lib.sh
source scripts/bench-node-lib.sh
if [ "$SOCKETIO" = 1 ]; then
    npm_install_pinned socket.io@4.8.4 @socket.io/redis-adapter@8.3.0 redis@4.7.1
fi
if [ "$INSTALL_ONLY" = 1 ]; then exit 0; fi

PORT_BASE=${PORT_BASE:-21000}
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

BIN=${CARGO_TARGET_DIR:-target}/release/silverback
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release -p silverback-cli" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "no redis-server: scripts/install-peers.sh" >&2; exit 1; }
OUT=${CARGO_TARGET_DIR:-target}/bench-results/redis-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

next_port; REDIS_PORT=$PORT
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --loglevel warning >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!; PIDS+=("$REDIS_PID")
await_server "$REDIS_PID" "$REDIS_PORT" || { echo "redis-server did not start" >&2; exit 1; }
REDIS=redis://127.0.0.1:$REDIS_PORT

node() { # port [extra...]
    local port=$1; shift
    "$BIN" -q serve --pubsub --threads 1 --addr "127.0.0.1:$port" --no-compression \
        --queue-messages 100000 "$@" &
    PIDS+=("$!")
    await_server "$!" "$port" || { echo "node on $port did not start" >&2; exit 1; }
}

bench() { # name url [extra...]
    local name=$1 url=$2; shift 2
    local before_ticks after_ticks
    before_ticks=$(cpu_ticks "$REDIS_PID")
    redis-cli -p "$REDIS_PORT" CONFIG RESETSTAT >/dev/null
    "$BIN" bench --mode fanout --url "$url" --subscribers "$SUBSCRIBERS" --size "$SIZE" \
        --duration "$DURATION" --pipeline "$PIPELINE" --binary --json --no-progress "${RATE[@]}" "$@" \
        >"$OUT/$name.json"
    after_ticks=$(cpu_ticks "$REDIS_PID")
    redis-cli -p "$REDIS_PORT" INFO commandstats >"$OUT/$name.commandstats"
    python3 - "$OUT/$name.json" "$OUT/$name.commandstats" "$((after_ticks - before_ticks))" \
        "$(getconf CLK_TCK)" "$name" <<'EOF'
import json, re, sys
report = json.load(open(sys.argv[1]))
stats = open(sys.argv[2]).read()
ticks, hz, name = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
m = re.search(r"cmdstat_evalsha:calls=(\d+),usec=(\d+)", stats)
calls, usec = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
line = (f"{name}: deliveries/s={report['deliveries_per_sec']:.0f} p50={report['p50_us']:.0f}us "
        f"p99={report['p99_us']:.0f}us lost={report['lost']} duplicated={report['duplicated']} "
        f"publishes={calls}")
if calls:
    line += (f" redis_cpu_per_publish={ticks / hz * 1e6 / calls:.1f}us"
             f" (evalsha {usec / calls:.1f}us)")
print(line)
EOF
}

next_port; A=$PORT; node "$A" --redis "$REDIS" --node-id a
next_port; B=$PORT; node "$B" --redis "$REDIS" --node-id b
bench "two-nodes" "ws://127.0.0.1:$A/ws" --spread-url "ws://127.0.0.1:$B/ws"
next_port; C=$PORT; node "$C"
bench "one-node-no-redis" "ws://127.0.0.1:$C/ws"
if [ "$SOCKETIO" = 1 ]; then
    sio_node() { # port
        SILVERBACK_BENCH_NODE=$BENCH_NODE command node bench/node/socketio_fanout.mjs "127.0.0.1:$1" "$REDIS" \
            >"$OUT/socketio-$1.log" 2>&1 &
        PIDS+=("$!")
        await_server "$!" "$1" || { echo "Socket.IO node on $1 did not start" >&2; exit 1; }
    }
    next_port; SA=$PORT; sio_node "$SA"
    next_port; SB=$PORT; sio_node "$SB"
    SIO='socket.io/?EIO=4&transport=websocket'
    bench "socketio-two-nodes" "ws://127.0.0.1:$SA/$SIO" --spread-url "ws://127.0.0.1:$SB/$SIO" --socketio
fi
echo "raw results: $OUT"
