#!/usr/bin/env bash
# Comparative benchmark: silverback's echo server against the echo servers
# of other Rust WebSocket libraries (bench/: tokio-tungstenite,
# fastwebsockets), of uWebSockets (uWebSockets.js on Node: bench/node/
# echo_uws.mjs) and a minimal raw "ceiling" (one read + one write per
# batch), all driven by `silverback bench` under the same conditions:
#
#   - the server pinned to one core (taskset -c SERVER_CPU), on a
#     single-threaded runtime (`silverback serve --threads 1
#     --no-compression -q`; the Rust peers are current-thread tokio
#     already; uWebSockets.js runs on Node's one JavaScript thread);
#   - the load generator pinned to another core (taskset -c CLIENT_CPU);
#   - a fresh server process per run, on a fresh 127.0.0.1 port, polled
#     until it accepts, measured, then killed;
#   - servers alternate run by run (round-robin, R rounds, the first
#     server rotating each round); the MEDIAN of the R runs is reported.
#
# Server CPU per message: utime+stime of the server (/proc/PID/stat) read
# when the measured window opens (after the warmup) and when it closes,
# divided by the messages (or handshakes) of that window.
#
# Scenarios:
#   latency    1 conn x 16 B text, pipeline 1
#   pipelined  100 conns x 16 B text, pipeline 16
#   64k        10 conns x 64 KiB binary, pipeline 1
#   1m         1 conn x 1 MiB binary, pipeline 1
#   idle       10,000 idle connections (server RSS per connection)
#   connect    connect storm: 8 concurrent dialers, handshake + close
#
# Output: a markdown report (BENCHMARKS.md; with --quick it goes to the
# results folder only, so a smoke run never replaces real numbers) and the
# raw JSON of every run under target/bench-results/<date>/ (in
# CARGO_TARGET_DIR if set). The pub/sub fan-out section of BENCHMARKS.md
# (scripts/bench-fanout.sh) and the sections after it are kept.
#
# Servers: silverback, tungstenite, fastwebsockets, uws, ceiling (the
# default: these five), and baseline (below). uws needs node: npm `@trufflesuite/uws-js-unofficial`
# (uWebSockets.js's prebuilt addon, loaded directly, never the package's
# pure-JS fallback) is installed into .peers/bench-node when missing
# (scripts/bench-node-lib.sh, shared with scripts/bench-fanout.sh).
#
# Usage: scripts/bench.sh [--rounds N] [--duration S] [--warmup S] [--quick]
#          [--servers a,b,..] [--scenarios a,b,..] [--idle-conns N]
#          [--server-cpu C] [--client-cpu C] [--port-base P]
#          [--output FILE] [--no-build] [--baseline BIN]
#
# --baseline BIN adds a server `baseline`: another `silverback` binary (an
# earlier commit's, built elsewhere) run exactly as `silverback` is, for
# before/after comparisons (e.g. --servers silverback,baseline).
# A full run (3 rounds of 10 s, 5 servers) takes about 20 minutes. Run it
# on an otherwise idle machine with at least 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
INVOCATION="scripts/bench.sh${*:+ $*}"

ROUNDS=3
DURATION=10
WARMUP=2
QUICK=0
BUILD=1
SERVERS=silverback,tungstenite,fastwebsockets,uws,ceiling
SCENARIOS=latency,pipelined,64k,1m,idle,connect
IDLE_CONNS=10000
SERVER_CPU=0
CLIENT_CPU=1
PORT_BASE=28100
OUTPUT=
BASELINE_BIN=

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "bench.sh: $*" >&2; exit 2; }

rounds_set=0 duration_set=0 warmup_set=0
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) ROUNDS=${2:?}; rounds_set=1; shift ;;
        --duration) DURATION=${2:?}; duration_set=1; shift ;;
        --warmup) WARMUP=${2:?}; warmup_set=1; shift ;;
        --quick) QUICK=1 ;;
        --servers) SERVERS=${2:?}; shift ;;
        --scenarios) SCENARIOS=${2:?}; shift ;;
        --idle-conns) IDLE_CONNS=${2:?}; shift ;;
        --server-cpu) SERVER_CPU=${2:?}; shift ;;
        --client-cpu) CLIENT_CPU=${2:?}; shift ;;
        --port-base) PORT_BASE=${2:?}; shift ;;
        --output) OUTPUT=${2:?}; shift ;;
        --baseline) BASELINE_BIN=$(realpath "${2:?}"); shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done
if [ "$QUICK" = 1 ]; then
    # A smoke run: every server and scenario once, short windows.
    [ $rounds_set = 1 ] || ROUNDS=1
    [ $duration_set = 1 ] || DURATION=1
    [ $warmup_set = 1 ] || WARMUP=0.5
fi
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
[[ $DURATION =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--duration must be a number of seconds"
[[ $WARMUP =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--warmup must be a number of seconds"
[[ $IDLE_CONNS =~ ^[1-9][0-9]*$ ]] || die "--idle-conns must be a positive integer"

IFS=, read -r -a SERVER_LIST <<<"$SERVERS"
IFS=, read -r -a SCENARIO_LIST <<<"$SCENARIOS"
for s in "${SERVER_LIST[@]}"; do
    case $s in silverback|tungstenite|fastwebsockets|uws|ceiling) ;;
        baseline) [ -x "$BASELINE_BIN" ] || die "server baseline needs --baseline BIN" ;;
        *) die "unknown server: $s" ;;
    esac
done
for s in "${SCENARIO_LIST[@]}"; do
    case $s in latency|pipelined|64k|1m|idle|connect) ;; *) die "unknown scenario: $s" ;; esac
done

# shellcheck source=scripts/bench-node-lib.sh
. "$ROOT/scripts/bench-node-lib.sh"
if [[ " ${SERVER_LIST[*]} " == *" uws "* ]]; then install_node_peers; fi

command -v taskset >/dev/null || die "taskset (util-linux) is needed"
command -v python3 >/dev/null || die "python3 is needed for the report"
taskset -c "$SERVER_CPU" true 2>/dev/null || die "cannot pin to core $SERVER_CPU (nproc: $(nproc))"
taskset -c "$CLIENT_CPU" true 2>/dev/null || die "cannot pin to core $CLIENT_CPU (nproc: $(nproc))"
[ "$SERVER_CPU" != "$CLIENT_CPU" ] || echo "warning: server and client share core $SERVER_CPU" >&2

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
REL=$TARGET/release
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=$TARGET/bench-results/$STAMP
RAW=$RESULTS/raw
LOGS=$RESULTS/logs
mkdir -p "$RAW" "$LOGS"
if [ -z "$OUTPUT" ]; then
    if [ "$QUICK" = 1 ]; then OUTPUT=$RESULTS/BENCHMARKS.md; else OUTPUT=$ROOT/BENCHMARKS.md; fi
fi

if [ "$BUILD" = 1 ]; then
    echo "==> cargo build --release (silverback, bench peers)"
    cargo build --release --quiet -p silverback-cli -p silverback-bench-peers
fi
for b in silverback tungstenite-echo fastwebsockets-echo ceiling-echo; do
    [ -x "$REL/$b" ] || die "$REL/$b is missing (build without --no-build)"
done

# Idle: every connection is a descriptor on both sides.
want_fds=$((IDLE_CONNS + 1024))
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then soft=65536; else soft=$hard; fi
[ "$soft" -ge "$want_fds" ] || soft=$want_fds
ulimit -n "$soft" 2>/dev/null || ulimit -n "$hard"
if [[ " ${SCENARIO_LIST[*]} " == *" idle "* ]] && [ "$(ulimit -n)" -lt "$want_fds" ]; then
    echo "warning: ulimit -n is $(ulimit -n), below the $want_fds the idle scenario needs" >&2
fi

CLK_TCK=$(getconf CLK_TCK)
SERVER_PID=
BENCH_PID=
cleanup() {
    # BENCH_PID is `timeout`: it passes TERM on to the load generator.
    [ -z "$BENCH_PID" ] || kill -TERM "$BENCH_PID" 2>/dev/null || true
    [ -z "$SERVER_PID" ] || kill -KILL "$SERVER_PID" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"

start_server() { # server port log
    local server=$1 addr=127.0.0.1:$2 log=$3
    case $server in
        silverback) taskset -c "$SERVER_CPU" "$REL/silverback" -q serve --addr "$addr" \
            --threads 1 --no-compression --shutdown-timeout 1 >"$log" 2>&1 & ;;
        baseline) taskset -c "$SERVER_CPU" "$BASELINE_BIN" -q serve --addr "$addr" \
            --threads 1 --no-compression --shutdown-timeout 1 >"$log" 2>&1 & ;;
        tungstenite) taskset -c "$SERVER_CPU" "$REL/tungstenite-echo" "$addr" >"$log" 2>&1 & ;;
        fastwebsockets) taskset -c "$SERVER_CPU" "$REL/fastwebsockets-echo" "$addr" >"$log" 2>&1 & ;;
        ceiling) taskset -c "$SERVER_CPU" "$REL/ceiling-echo" "$addr" >"$log" 2>&1 & ;;
        # taskset execs node: $! is the node process (its RSS, its CPU).
        uws) SILVERBACK_UWS_ADDON=$UWS_ADDON taskset -c "$SERVER_CPU" node "$ROOT/bench/node/echo_uws.mjs" \
            "$addr" >"$log" 2>&1 & ;;
    esac
    await_server $! "$2"
}

scenario_args() {
    case $1 in
        latency) echo "--mode echo --conns 1 --size 16 --pipeline 1 --text" ;;
        pipelined) echo "--mode echo --conns 100 --size 16 --pipeline 16 --text" ;;
        64k) echo "--mode echo --conns 10 --size 65536 --pipeline 1 --binary" ;;
        1m) echo "--mode echo --conns 1 --size 1048576 --pipeline 1 --binary" ;;
        idle) echo "--mode idle --conns $IDLE_CONNS --source-addrs 4" ;;
        connect) echo "--mode connect --conns 8" ;;
    esac
}

FAILED=0
run_one() { # scenario server round
    local scenario=$1 server=$2 round=$3
    local base=$RAW/$scenario.$server.r$round
    local log=$LOGS/$scenario.$server.r$round
    local status=ok c0=0 c1=0 t0=0 t1=0 hwm=0 rc=0
    # shellcheck disable=SC2207
    local args=($(scenario_args "$scenario"))
    local started=0 _
    for _ in 1 2 3; do   # another process may take the port first
        next_port
        if start_server "$server" "$PORT" "$log.server.log"; then
            started=1
            break
        fi
        stop_server
    done
    local url=ws://127.0.0.1:$PORT/ws
    if [ "$started" = 0 ]; then
        status="server did not start (last port $PORT): $(head -n 1 "$log.server.log" | tr -d '\042\134')"
    else
        case $scenario in
            idle) args+=(--server-pid "$SERVER_PID") ;;
            connect) args+=(--duration "$DURATION" --warmup 0) ;;
            *) args+=(--duration "$DURATION" --warmup "$WARMUP") ;;
        esac
        local limit
        limit=$(python3 -c "print(int($WARMUP + $DURATION + 120))")
        timeout -k 5 "$limit" taskset -c "$CLIENT_CPU" "$REL/silverback" bench --url "$url" \
            "${args[@]}" --json --no-progress >"$base.bench.json" 2>"$log.bench.log" &
        BENCH_PID=$!
        if [ "$scenario" != idle ]; then
            [ "$scenario" = connect ] || nap "$WARMUP"
            c0=$(cpu_ticks "$SERVER_PID" || echo 0) t0=$(now)
            nap "$DURATION"
            c1=$(cpu_ticks "$SERVER_PID" || echo 0) t1=$(now)
        fi
        wait "$BENCH_PID" || rc=$?
        BENCH_PID=
        hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0)
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            status="server died"
        elif [ "$rc" != 0 ]; then
            status="bench exited with $rc: $(tail -n 1 "$log.bench.log" | tr -d '\042\134')"
        fi
        stop_server
    fi
    [ "$status" = ok ] || FAILED=$((FAILED + 1))
    cat >"$base.server.json" <<EOF
{"scenario": "$scenario", "server": "$server", "round": $round, "port": $PORT,
 "status": "$status", "clk_tck": $CLK_TCK, "cpu_ticks_start": ${c0:-0}, "cpu_ticks_end": ${c1:-0},
 "t_start": ${t0:-0}, "t_end": ${t1:-0}, "peak_rss_kb": ${hwm:-0}}
EOF
    printf '  %-10s %-15s round %d: %s\n' "$scenario" "$server" "$round" "$status"
}

echo "==> results in $RESULTS"
echo "==> $ROUNDS round(s), ${DURATION}s measured after ${WARMUP}s warmup; servers: ${SERVER_LIST[*]}"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
n=${#SERVER_LIST[@]}
for scenario in "${SCENARIO_LIST[@]}"; do
    for round in $(seq "$ROUNDS"); do
        for i in $(seq 0 $((n - 1))); do
            # Round-robin, the first server rotating each round.
            run_one "$scenario" "${SERVER_LIST[$(((i + round - 1) % n))]}" "$round"
            nap 0.2
        done
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# The report.
node_peer_versions
export RESULTS RAW OUTPUT ROUNDS DURATION WARMUP QUICK IDLE_CONNS SERVERS SCENARIOS \
    INVOCATION LOAD_START LOAD_END SERVER_CPU CLIENT_CPU ROOT BASELINE_BIN UWS_ADDON
python3 - <<'PY'
import glob, json, os, platform, re, statistics, subprocess, datetime

env = os.environ
raw = env["RAW"]
servers = env["SERVERS"].split(",")
scenarios = env["SCENARIOS"].split(",")


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        return "?"


def lock_versions():
    text = open(os.path.join(env["ROOT"], "Cargo.lock")).read()
    found = {}
    for name, version in re.findall(r'\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"', text):
        found.setdefault(name, []).append(version)
    return found


cpu_model = "?"
with open("/proc/cpuinfo") as f:
    for line in f:
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
versions = lock_versions()


def ver(name):
    return ", ".join(versions.get(name, ["?"]))


# Gather every run.
runs = {}
for path in sorted(glob.glob(os.path.join(raw, "*.server.json"))):
    meta = json.load(open(path))
    bench_path = path.replace(".server.json", ".bench.json")
    bench = None
    if meta["status"] == "ok":
        try:
            bench = json.load(open(bench_path))
        except Exception as e:
            meta["status"] = f"bad bench output: {e}"
    cpu_s = (meta["cpu_ticks_end"] - meta["cpu_ticks_start"]) / meta["clk_tck"]
    wall = meta["t_end"] - meta["t_start"]
    rec = {"status": meta["status"], "bench": bench, "peak_rss_kb": meta["peak_rss_kb"]}
    if bench and wall > 0:
        rate = bench["msgs_per_sec"] if bench["mode"] == "echo" else bench["handshakes_per_sec"]
        rec["cpu_pct"] = 100.0 * cpu_s / wall
        rec["cpu_us_per_op"] = cpu_s * 1e6 / (rate * wall) if rate > 0 else None
    runs.setdefault((meta["scenario"], meta["server"]), []).append(rec)


def med(recs, key):
    vals = []
    for r in recs:
        v = r["bench"].get(key) if key in (r["bench"] or {}) else r.get(key)
        if v is not None:
            vals.append(v)
    return statistics.median(vals) if vals else None


def fmt(v, digits=0, suffix=""):
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:,.0f}{suffix}"
    return f"{v:,.{digits}f}{suffix}"


def rel(v, base):
    if v is None or base in (None, 0):
        return "–"
    return f"{v / base:.2f}×"


LABELS = {
    "latency": "(a) latency: 1 connection × 16 B text, pipeline 1",
    "pipelined": "(b) 100 connections × 16 B text, pipeline 16",
    "64k": "(c) 10 connections × 64 KiB binary, pipeline 1",
    "1m": "(d) 1 connection × 1 MiB binary, pipeline 1",
    "idle": f"(e) idle: {int(env['IDLE_CONNS']):,} connections held (server RSS per connection)",
    "connect": "(f) connect storm: 8 concurrent dialers, handshake + clean close",
}
NAMES = {
    "silverback": "silverback",
    "baseline": f"silverback baseline ({env.get('BASELINE_BIN', '')})",
    "tungstenite": f"tokio-tungstenite {ver('tokio-tungstenite')}",
    "fastwebsockets": f"fastwebsockets {ver('fastwebsockets')}",
    "uws": f"uWebSockets.js {env['UWS_PKG_VERSION']} (Node {env['NODE_VERSION']})",
    "ceiling": "ceiling (raw, 1 read + 1 write)",
}

out = []
w = out.append
quick = env["QUICK"] == "1"
w("# Benchmarks")
w("")
if quick:
    w("> **Smoke run (`--quick`)**: one short round per server, on whatever else the")
    w("> machine was doing. It checks that the rig works; its numbers are not for comparison.")
    w("")
w(f"Echo servers on one core each, driven by `silverback bench` on another. "
  f"Medians of {env['ROUNDS']} round(s) per server and scenario; each run "
  f"{env['DURATION']} s measured after {env['WARMUP']} s of warmup.")
w("")
w("| | |")
w("|---|---|")
w(f"| date | {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} |")
w(f"| command | `{env['INVOCATION']}` |")
w(f"| commit | {sh('git', '-C', env['ROOT'], 'describe', '--always', '--dirty')} |")
w(f"| machine | {os.cpu_count()} cores (`nproc`: {sh('nproc')}), {cpu_model} |")
w(f"| kernel | {platform.system()} {platform.release()} {platform.machine()} |")
w(f"| rustc | {sh('rustc', '--version')} |")
w(f"| crates (Cargo.lock) | silverback {ver('silverback')}, tokio-tungstenite {ver('tokio-tungstenite')} "
  f"(tungstenite {ver('tungstenite')}), fastwebsockets {ver('fastwebsockets')}, hyper {ver('hyper')}, "
  f"tokio {ver('tokio')} |")
if "uws" in servers:
    w(f"| Node peer | Node {env['NODE_VERSION']}, npm `@trufflesuite/uws-js-unofficial` {env['UWS_PKG_VERSION']} "
      f"(uWebSockets.js, its prebuilt addon `{os.path.basename(env.get('UWS_ADDON', '?'))}`) |")
w(f"| pinning | server `taskset -c {env['SERVER_CPU']}`, load generator `taskset -c {env['CLIENT_CPU']}` |")
w(f"| load average | {env['LOAD_START']} at start, {env['LOAD_END']} at end |")
w("")


def runs_ok(recs):
    ok = sum(1 for r in recs if r["status"] == "ok")
    return f"{ok}/{len(recs)}"


def failures(recs):
    return sorted({r["status"] for r in recs if r["status"] != "ok"})


notes = []
summary = {}
for sc in scenarios:
    w(f"## {LABELS[sc]}")
    w("")
    base = {}
    rows = []
    for sv in servers:
        recs = runs.get((sc, sv), [])
        good = [r for r in recs if r["status"] == "ok"]
        m = {}
        if sc == "idle":
            m["rss_kib"] = (lambda v: v / 1024 if v is not None else None)(med(good, "server_rss_per_conn_bytes"))
            m["held"] = med(good, "idle_connections")
            m["peak_mib"] = (lambda v: v / 1024 if v is not None else None)(med(good, "peak_rss_kb"))
        elif sc == "connect":
            m["rate"] = med(good, "handshakes_per_sec")
            m["clean"] = med(good, "clean_close_ratio")
            m["cpu_us"] = med(good, "cpu_us_per_op")
            m["cpu_pct"] = med(good, "cpu_pct")
            m["errors"] = sum(r["bench"]["errors"] for r in good)
        else:
            for k in ("msgs_per_sec", "mb_per_sec", "p50_us", "p99_us"):
                m[k] = med(good, k)
            m["cpu_us"] = med(good, "cpu_us_per_op")
            m["cpu_pct"] = med(good, "cpu_pct")
            m["peak_mib"] = (lambda v: v / 1024 if v is not None else None)(med(good, "peak_rss_kb"))
            m["errors"] = sum(r["bench"]["errors"] for r in good)
        m["runs"] = runs_ok(recs)
        for f in failures(recs):
            notes.append(f"{sc} / {sv}: {f}")
        if sv == "silverback":
            base = m
        rows.append((sv, m))
        summary.setdefault(sc, {})[sv] = m
    if sc == "idle":
        w("| server | RSS per connection | rel. to silverback | connections held | peak RSS | runs ok |")
        w("|---|---:|---:|---:|---:|---:|")
        for sv, m in rows:
            w(f"| {NAMES[sv]} | {fmt(m['rss_kib'], 2, ' KiB')} | {rel(m['rss_kib'], base.get('rss_kib'))} "
              f"| {fmt(m['held'])} | {fmt(m['peak_mib'], 1, ' MiB')} | {m['runs']} |")
    elif sc == "connect":
        w("| server | handshakes/s | rel. to silverback | server CPU per handshake | server CPU | clean closes | errors | runs ok |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|")
        for sv, m in rows:
            clean = fmt(m["clean"] * 100 if m["clean"] is not None else None, 1, " %")
            w(f"| {NAMES[sv]} | {fmt(m['rate'])} | {rel(m['rate'], base.get('rate'))} "
              f"| {fmt(m['cpu_us'], 1, ' µs')} | {fmt(m['cpu_pct'], 0, ' %')} | {clean} | {m['errors']} | {m['runs']} |")
    else:
        w("| server | msg/s | rel. to silverback | MB/s | p50 | p99 | server CPU per message | server CPU | peak RSS | errors | runs ok |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        digits = 2 if sc in ("latency", "pipelined") else 1
        for sv, m in rows:
            w(f"| {NAMES[sv]} | {fmt(m['msgs_per_sec'])} | {rel(m['msgs_per_sec'], base.get('msgs_per_sec'))} "
              f"| {fmt(m['mb_per_sec'], 1)} | {fmt(m['p50_us'], 1, ' µs')} | {fmt(m['p99_us'], 1, ' µs')} "
              f"| {fmt(m['cpu_us'], digits, ' µs')} | {fmt(m['cpu_pct'], 0, ' %')} | {fmt(m['peak_mib'], 1, ' MiB')} "
              f"| {m['errors']} | {m['runs']} |")
    w("")

if notes:
    w("## Failed runs")
    w("")
    for n in notes:
        w(f"- {n}")
    w("")

w("## How it is measured")
w("")
w(f"""- Servers: `silverback serve --threads 1 --no-compression -q` (current-thread runtime);
  `tungstenite-echo`, `fastwebsockets-echo` and `ceiling-echo` from `bench/` (crate
  `silverback-bench-peers`), each on `#[tokio::main(flavor = "current_thread")]`, written
  as the library's own examples write an echo server: tokio-tungstenite's `accept_async`
  + `next()`/`send()` loop (`examples/autobahn-server.rs`); fastwebsockets' hyper 1
  upgrade + `FragmentCollector` `read_frame`/`write_frame` in `task::unconstrained`
  (`examples/echo_server.rs`); the ceiling parses every frame of one read and answers
  them all with one write. `bench/node/echo_uws.mjs`: uWebSockets.js (uWebSockets'
  C++ core as a Node addon, loaded directly), `ws.send(message, isBinary)` from the
  `message` handler on one Node thread, compression disabled, `idleTimeout: 0`.
  Every server sets `TCP_NODELAY`, as `silverback serve` does (uWebSockets: its
  uSockets layer, on every accepted socket).
- Each run starts a fresh server process pinned to core {env['SERVER_CPU']} on a fresh 127.0.0.1 port,
  waits until the port accepts, runs `taskset -c {env['CLIENT_CPU']} silverback bench ... --json
  --no-progress` and kills the server. Servers take turns run by run (round-robin,
  the first server rotating each round); each figure is the median of the rounds,
  metric by metric.
- msg/s counts echoes checked byte for byte during the measured window; p50/p99 are
  round-trip times of single messages (with pipelining they include queueing).
- Server CPU per message: the server's utime+stime (`/proc/PID/stat`, resolution
  1/{sh('getconf', 'CLK_TCK')} s) over the measured window, divided by the messages echoed
  (connect storm: handshakes) in it. Server CPU: that CPU time over wall time (100 % =
  the server's core saturated; below, the load generator is the bottleneck).
- Peak RSS: the server's VmHWM at the end of the run. Idle: RSS growth after
  {int(env['IDLE_CONNS']):,} handshakes (spread over 4 source addresses), divided by the
  connections.
- Raw JSON of every run: `{os.path.relpath(env['RESULTS'], env['ROOT'])}/raw/`.
- Where each server's time goes, and what limits the targets not met: `bench/README.md`.
""")

text = "\n".join(out).rstrip() + "\n"
# What follows the echo tables (the pub/sub section of
# scripts/bench-fanout.sh and the sections after it: HTTP/2, metrics,
# Redis), if the file has them, stays.
try:
    old = open(env["OUTPUT"]).read()
except FileNotFoundError:
    old = ""
start = old.find("<!-- fanout:begin")
if start >= 0:
    text = text + "\n" + old[start:]
with open(env["OUTPUT"], "w") as f:
    f.write(text)
with open(os.path.join(env["RESULTS"], "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
if os.path.abspath(env["OUTPUT"]) != os.path.abspath(os.path.join(env["RESULTS"], "BENCHMARKS.md")):
    with open(os.path.join(env["RESULTS"], "BENCHMARKS.md"), "w") as f:
        f.write(text)
print(text)
PY
echo "==> report: $OUTPUT"
echo "==> raw results: $RESULTS"
if [ "$FAILED" != 0 ]; then
    echo "==> $FAILED run(s) failed" >&2
    exit 1
fi
