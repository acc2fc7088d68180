#!/usr/bin/env bash
# Pub/sub fan-out benchmark: `silverback serve --pubsub` against the same
# raw pub/sub protocol written on other stacks (bench/: tokio-tungstenite
# with a broadcast channel per topic; bench/node/: Node `ws` looping over a
# topic's sockets, and uWebSockets.js's own topics), all driven by
# `silverback bench --mode fanout|rooms`:
#
#   - the server pinned to one core (taskset -c SERVER_CPU), single-threaded
#     (`silverback serve --pubsub -q --threads 1`; the Rust peer is a
#     current-thread tokio runtime; Node is single-threaded JavaScript);
#   - the load generator pinned to another core (taskset -c CLIENT_CPU); it
#     reports its own CPU time too, to show whether it was the limit;
#   - a fresh server per run on a fresh 127.0.0.1 port; servers alternate
#     run by run (round-robin); the MEDIAN of the rounds is reported.
#
# Protocol: a client of /ws?topic=NAME is subscribed to NAME; every data
# message it sends is published unchanged to every subscriber of its
# topics, the sender included.
#
# Scenarios:
#   fanout   1 publisher -> N subscribers on one topic, for each N of
#            --subscribers (default 1000,5000,10000); the publisher sends as
#            fast as its own copies come back (--pipeline in flight), or at
#            --rate msg/s
#   rooms    --rooms R topics x --members M connections, every member
#            publishing --room-rate msg/s to its room
#
# Metrics (per run, from the generator): deliveries/s, publish-to-delivery
# latency p50/p99/p99.9, lost / duplicated / out-of-order messages,
# server CPU per delivery (the server's /proc/PID/stat utime+stime over the
# measured window), the generator's CPU.
#
# Output: a marked section of BENCHMARKS.md (between `<!-- fanout:begin -->`
# and `<!-- fanout:end -->`; the rest of the file is kept), SVG charts in
# bench/charts/ (by the `fanout-charts` binary), and the raw JSON of every
# run under target/bench-results/fanout-<date>/. With --quick everything
# goes to the results folder only.
#
# Node peers: `ws` and `@trufflesuite/uws-js-unofficial` (uWebSockets.js
# prebuilt addon) are installed with npm into .peers/bench-node when
# missing (scripts/bench-node-lib.sh, shared with scripts/bench.sh);
# --install does only that and checks the addon loads.
#
# Usage: scripts/bench-fanout.sh [--rounds N] [--duration S] [--warmup S]
#          [--quick] [--servers a,b,..] [--scenarios fanout,rooms]
#          [--subscribers N,N,..] [--rate R] [--pipeline P] [--size B]
#          [--rooms R] [--members M] [--room-rate R] [--source-addrs K]
#          [--server-cpu C] [--client-cpu C] [--port-base P]
#          [--output FILE] [--charts DIR] [--no-build] [--install]
# Servers: silverback, tungstenite, ws, uws. A full run (3 rounds of 10 s,
# 4 servers, 3 sizes + rooms) takes about 15 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
INVOCATION="scripts/bench-fanout.sh${*:+ $*}"

ROUNDS=3
DURATION=10
WARMUP=2
QUICK=0
BUILD=1
INSTALL_ONLY=0
SERVERS=silverback,tungstenite,ws,uws
SCENARIOS=fanout,rooms
SUBSCRIBERS=1000,5000,10000
RATE=
PIPELINE=4
SIZE=64
ROOMS=1000
MEMBERS=10
ROOM_RATE=2
SOURCE_ADDRS=4
SERVER_CPU=0
CLIENT_CPU=1
PORT_BASE=29100
OUTPUT=
CHARTS=

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "bench-fanout.sh: $*" >&2; exit 2; }

rounds_set=0 duration_set=0 warmup_set=0 subs_set=0 rooms_set=0
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) ROUNDS=${2:?}; rounds_set=1; shift ;;
        --duration) DURATION=${2:?}; duration_set=1; shift ;;
        --warmup) WARMUP=${2:?}; warmup_set=1; shift ;;
        --quick) QUICK=1 ;;
        --servers) SERVERS=${2:?}; shift ;;
        --scenarios) SCENARIOS=${2:?}; shift ;;
        --subscribers) SUBSCRIBERS=${2:?}; subs_set=1; shift ;;
        --rate) RATE=${2:?}; shift ;;
        --pipeline) PIPELINE=${2:?}; shift ;;
        --size) SIZE=${2:?}; shift ;;
        --rooms) ROOMS=${2:?}; rooms_set=1; shift ;;
        --members) MEMBERS=${2:?}; shift ;;
        --room-rate) ROOM_RATE=${2:?}; shift ;;
        --source-addrs) SOURCE_ADDRS=${2:?}; shift ;;
        --server-cpu) SERVER_CPU=${2:?}; shift ;;
        --client-cpu) CLIENT_CPU=${2:?}; shift ;;
        --port-base) PORT_BASE=${2:?}; shift ;;
        --output) OUTPUT=${2:?}; shift ;;
        --charts) CHARTS=${2:?}; shift ;;
        --no-build) BUILD=0 ;;
        --install) INSTALL_ONLY=1 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done
if [ "$QUICK" = 1 ]; then
    # A smoke run: one short round, small fan-outs.
    [ $rounds_set = 1 ] || ROUNDS=1
    [ $duration_set = 1 ] || DURATION=2
    [ $warmup_set = 1 ] || WARMUP=0.5
    [ $subs_set = 1 ] || SUBSCRIBERS=100,300
    [ $rooms_set = 1 ] || ROOMS=20
fi
isnum() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
isnum "$DURATION" || die "--duration must be a number of seconds"
isnum "$WARMUP" || die "--warmup must be a number of seconds"
[[ $SUBSCRIBERS =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--subscribers must be a list of positive integers"
[ -z "$RATE" ] || isnum "$RATE" || die "--rate must be a number of messages per second"
isnum "$ROOM_RATE" || die "--room-rate must be a number of messages per second"
for v in PIPELINE SIZE ROOMS MEMBERS SOURCE_ADDRS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--$(echo "$v" | tr 'A-Z_' 'a-z-') must be a positive integer"
done

IFS=, read -r -a SERVER_LIST <<<"$SERVERS"
IFS=, read -r -a SCENARIO_LIST <<<"$SCENARIOS"
IFS=, read -r -a SUBS_LIST <<<"$SUBSCRIBERS"
for s in "${SERVER_LIST[@]}"; do
    case $s in silverback|tungstenite|ws|uws) ;; *) die "unknown server: $s" ;; esac
done
for s in "${SCENARIO_LIST[@]}"; do
    case $s in fanout|rooms) ;; *) die "unknown scenario: $s" ;; esac
done
uses_node() { [[ ",$SERVERS," == *,ws,* || ",$SERVERS," == *,uws,* ]]; }

# ----- Node peers (npm, into .peers/bench-node) --------------------------------
# shellcheck source=scripts/bench-node-lib.sh
. "$ROOT/scripts/bench-node-lib.sh"
if [ "$INSTALL_ONLY" = 1 ]; then
    install_node_peers
    exit 0
fi
if uses_node; then install_node_peers; fi

command -v taskset >/dev/null || die "taskset (util-linux) is needed"
command -v python3 >/dev/null || die "python3 is needed for the report"
taskset -c "$SERVER_CPU" true 2>/dev/null || die "cannot pin to core $SERVER_CPU (nproc: $(nproc))"
taskset -c "$CLIENT_CPU" true 2>/dev/null || die "cannot pin to core $CLIENT_CPU (nproc: $(nproc))"
[ "$SERVER_CPU" != "$CLIENT_CPU" ] || echo "warning: server and client share core $SERVER_CPU" >&2

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
REL=$TARGET/release
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=$TARGET/bench-results/fanout-$STAMP
RAW=$RESULTS/raw
LOGS=$RESULTS/logs
mkdir -p "$RAW" "$LOGS"
if [ "$QUICK" = 1 ]; then
    OUTPUT=${OUTPUT:-$RESULTS/BENCHMARKS.md}
    CHARTS=${CHARTS:-$RESULTS/charts}
else
    OUTPUT=${OUTPUT:-$ROOT/BENCHMARKS.md}
    CHARTS=${CHARTS:-$ROOT/bench/charts}
fi

if [ "$BUILD" = 1 ]; then
    echo "==> cargo build --release (silverback, tungstenite-fanout, fanout-charts)"
    cargo build --release --quiet -p silverback-cli -p silverback-bench-peers \
        --bin silverback --bin tungstenite-fanout --bin fanout-charts
fi
for b in silverback tungstenite-fanout fanout-charts; do
    [ -x "$REL/$b" ] || die "$REL/$b is missing (build without --no-build)"
done
if [[ ",$SERVERS," == *,silverback,* ]] && ! "$REL/silverback" serve --help 2>/dev/null | grep -q -- --pubsub; then
    echo "warning: this silverback has no \`serve --pubsub\`: its runs will fail" >&2
fi

# Every connection is a descriptor on both sides (each side is one process).
max_conns=$((ROOMS * MEMBERS))
for n in "${SUBS_LIST[@]}"; do [ $((n + 1)) -le $max_conns ] || max_conns=$((n + 1)); done
want_fds=$((max_conns + 1024))
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then soft=65536; else soft=$hard; fi
ulimit -n "$soft" 2>/dev/null || ulimit -n "$hard"
[ "$(ulimit -n)" -ge "$want_fds" ] || echo "warning: ulimit -n is $(ulimit -n), below the $want_fds the largest run needs" >&2

SERVER_PID=
BENCH_PID=
cleanup() {
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
        silverback) taskset -c "$SERVER_CPU" "$REL/silverback" serve --pubsub -q --addr "$addr" \
            --threads 1 >"$log" 2>&1 & ;;
        tungstenite) taskset -c "$SERVER_CPU" "$REL/tungstenite-fanout" "$addr" >"$log" 2>&1 & ;;
        ws) taskset -c "$SERVER_CPU" node "$ROOT/bench/node/fanout_ws.mjs" "$addr" >"$log" 2>&1 & ;;
        uws) SILVERBACK_UWS_ADDON=$UWS_ADDON taskset -c "$SERVER_CPU" node "$ROOT/bench/node/fanout_uws.mjs" \
            "$addr" >"$log" 2>&1 & ;;
    esac
    await_server $! "$2"
}

FAILED=0
run_one() { # case server round
    local case=$1 server=$2 round=$3
    local base=$RAW/$case.$server.r$round log=$LOGS/$case.$server.r$round
    local status=ok rc=0 hwm=0 started=0 _
    local args
    if [ "$case" = rooms ]; then
        args=(--mode rooms --rooms "$ROOMS" --members "$MEMBERS" --rate "$ROOM_RATE")
    else
        args=(--mode fanout --subscribers "${case#fanout-}")
        if [ -n "$RATE" ]; then args+=(--rate "$RATE"); else args+=(--pipeline "$PIPELINE"); fi
    fi
    args+=(--size "$SIZE" --source-addrs "$SOURCE_ADDRS" --duration "$DURATION" --warmup "$WARMUP")
    for _ in 1 2 3; do   # another process may take the port first
        next_port
        if start_server "$server" "$PORT" "$log.server.log"; then
            started=1
            break
        fi
        stop_server
    done
    if [ "$started" = 0 ]; then
        status="server did not start (last port $PORT): $(head -n 1 "$log.server.log" | tr -d '\042\134')"
    else
        local limit
        limit=$(python3 -c "print(int($WARMUP + $DURATION + 180))")
        timeout -k 5 "$limit" taskset -c "$CLIENT_CPU" "$REL/silverback" bench --url "ws://127.0.0.1:$PORT/ws" \
            "${args[@]}" --server-pid "$SERVER_PID" --json --no-progress >"$base.bench.json" 2>"$log.bench.log" &
        BENCH_PID=$!
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
{"case": "$case", "server": "$server", "round": $round, "port": $PORT,
 "status": "$status", "peak_rss_kb": ${hwm:-0}}
EOF
    printf '  %-13s %-12s round %d: %s\n' "$case" "$server" "$round" "$status"
}

CASES=()
for s in "${SCENARIO_LIST[@]}"; do
    if [ "$s" = fanout ]; then
        for n in "${SUBS_LIST[@]}"; do CASES+=("fanout-$n"); done
    else
        CASES+=(rooms)
    fi
done

echo "==> results in $RESULTS"
echo "==> $ROUNDS round(s), ${DURATION}s measured after ${WARMUP}s; servers: ${SERVER_LIST[*]}; cases: ${CASES[*]}"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
n=${#SERVER_LIST[@]}
for case in "${CASES[@]}"; do
    for round in $(seq "$ROUNDS"); do
        for i in $(seq 0 $((n - 1))); do
            run_one "$case" "${SERVER_LIST[$(((i + round - 1) % n))]}" "$round"
            nap 0.5
        done
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ----- the report --------------------------------------------------------------
node_peer_versions
export RESULTS RAW OUTPUT CHARTS ROUNDS DURATION WARMUP QUICK SERVERS INVOCATION LOAD_START LOAD_END \
    SERVER_CPU CLIENT_CPU ROOT SIZE PIPELINE RATE ROOMS MEMBERS ROOM_RATE SOURCE_ADDRS
CASES_STR=$(IFS=,; echo "${CASES[*]}")
export CASES_STR
python3 - <<'PY'
import datetime, glob, json, os, platform, re, statistics, subprocess

env = os.environ
servers = env["SERVERS"].split(",")
cases = env["CASES_STR"].split(",")


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        return "?"


versions = {}
for name, version in re.findall(r'\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"',
                                open(os.path.join(env["ROOT"], "Cargo.lock")).read()):
    versions.setdefault(name, []).append(version)
ver = lambda n: ", ".join(versions.get(n, ["?"]))
cpu_model = "?"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu_model = line.split(":", 1)[1].strip()
        break

NAMES = {
    "silverback": "silverback (`serve --pubsub`)",
    "tungstenite": f"tokio-tungstenite {ver('tokio-tungstenite')} + broadcast",
    "ws": f"Node ws {env['WS_VERSION']}",
    "uws": f"uWebSockets.js ({env['UWS_PKG_VERSION']})",
}

runs = {}
for path in sorted(glob.glob(os.path.join(env["RAW"], "*.server.json"))):
    meta = json.load(open(path))
    bench = None
    if meta["status"] == "ok":
        try:
            bench = json.load(open(path.replace(".server.json", ".bench.json")))
        except Exception as e:
            meta["status"] = f"bad bench output: {e}"
    runs.setdefault((meta["case"], meta["server"]), []).append(
        {"status": meta["status"], "bench": bench, "peak_rss_kb": meta["peak_rss_kb"]})


def med(good, key):
    vals = [r["bench"][key] if key in r["bench"] else r.get(key) for r in good]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, digits=0, suffix=""):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}{suffix}"


def rel(v, base):
    if v is None or not base:
        return "–"
    return f"{v / base:.2f}×"


KEYS = ["deliveries_per_sec", "publishes_per_sec", "p50_us", "p99_us", "p999_us", "server_cpu_us_per_delivery",
        "server_cpu_pct", "client_cpu_pct", "client_cpu_us_per_delivery", "connect_secs"]
summary = {"servers": [{"key": s, "name": NAMES[s]} for s in servers], "fanout": [], "rooms": []}
table = {}
notes = []
for case in cases:
    for sv in servers:
        recs = runs.get((case, sv), [])
        good = [r for r in recs if r["status"] == "ok"]
        m = {k: med(good, k) for k in KEYS}
        m["peak_mib"] = (lambda v: v / 1024 if v else None)(med(good, "peak_rss_kb"))
        for k in ("lost", "duplicated", "out_of_order", "errors"):
            m[k] = sum(r["bench"][k] for r in good)
        m["lost_max"] = max((r["bench"]["lost_max"] for r in good), default=0)
        m["runs"] = f"{len(good)}/{len(recs)}"
        for r in recs:
            if r["status"] != "ok":
                notes.append(f"{case} / {sv}: {r['status']}")
        table[(case, sv)] = m
        row = {"server": sv, **{k: m[k] for k in ("deliveries_per_sec", "p50_us", "p99_us", "p999_us")}}
        if case == "rooms":
            summary["rooms"].append(row)
        else:
            row["subscribers"] = int(case.split("-", 1)[1])
            summary["fanout"].append(row)
with open(os.path.join(env["RESULTS"], "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)

charts_rel = os.path.relpath(env["CHARTS"], os.path.dirname(os.path.abspath(env["OUTPUT"])))
out = []
w = out.append
w("<!-- fanout:begin (written by scripts/bench-fanout.sh; scripts/bench.sh keeps it) -->")
w("## Pub/sub fan-out")
w("")
if env["QUICK"] == "1":
    w("> **Smoke run (`--quick`)**: small fan-outs, one short round, on whatever else the")
    w("> machine was doing. It checks that the rig works; its numbers are not for comparison.")
    w("")
rate = f"{env['RATE']} msg/s" if env["RATE"] else f"as fast as its own copies return ({env['PIPELINE']} in flight)"
w(f"One server on one core, `silverback bench --mode fanout|rooms` on another. Medians of "
  f"{env['ROUNDS']} round(s); each run {env['DURATION']} s measured after {env['WARMUP']} s of publishing. "
  f"Messages: {env['SIZE']} B binary, carrying a sequence number and a send timestamp.")
w("")
w("| | |")
w("|---|---|")
w(f"| date | {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} |")
w(f"| command | `{env['INVOCATION']}` |")
w(f"| commit | {sh('git', '-C', env['ROOT'], 'describe', '--always', '--dirty')} |")
w(f"| machine | {os.cpu_count()} cores, {cpu_model}; {platform.system()} {platform.release()} |")
w(f"| software | {sh('rustc', '--version')}; Node {env['NODE_VERSION']}; tokio {ver('tokio')} |")
w(f"| pinning | server `taskset -c {env['SERVER_CPU']}`, load generator `taskset -c {env['CLIENT_CPU']}` |")
w(f"| load average | {env['LOAD_START']} at start, {env['LOAD_END']} at end |")
w("")
fan_cases = [c for c in cases if c != "rooms"]
if fan_cases:
    w(f"### 1 publisher → N subscribers (publisher: {rate})")
    w("")
    w("| server | subscribers | deliveries/s | rel. to silverback | p50 | p99 | p99.9 | server CPU per delivery "
      "| server CPU | generator CPU | lost (max per sub) | dup. | out of order | errors | runs ok |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case in fan_cases:
        base = table.get((case, "silverback"), {}).get("deliveries_per_sec")
        for sv in servers:
            m = table[(case, sv)]
            w(f"| {NAMES[sv]} | {int(case.split('-', 1)[1]):,} | {fmt(m['deliveries_per_sec'])} "
              f"| {rel(m['deliveries_per_sec'], base)} | {fmt(m['p50_us'], 0, ' µs')} | {fmt(m['p99_us'], 0, ' µs')} "
              f"| {fmt(m['p999_us'], 0, ' µs')} | {fmt(m['server_cpu_us_per_delivery'], 3, ' µs')} "
              f"| {fmt(m['server_cpu_pct'], 0, ' %')} | {fmt(m['client_cpu_pct'], 0, ' %')} "
              f"| {m['lost']:,} ({m['lost_max']:,}) | {m['duplicated']:,} | {m['out_of_order']:,} | {m['errors']} | {m['runs']} |")
    w("")
    w(f"![deliveries per second against subscribers]({charts_rel}/fanout-deliveries.svg)")
    w(f"![latency against subscribers]({charts_rel}/fanout-latency.svg)")
    w("")
if "rooms" in cases:
    w(f"### Rooms: {int(env['ROOMS']):,} rooms × {env['MEMBERS']} members, each member publishing "
      f"{env['ROOM_RATE']} msg/s")
    w("")
    w("| server | deliveries/s | rel. to silverback | p50 | p99 | p99.9 | server CPU per delivery | server CPU "
      "| generator CPU | peak RSS | lost (max per sub) | dup. | out of order | errors | runs ok |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = table.get(("rooms", "silverback"), {}).get("deliveries_per_sec")
    for sv in servers:
        m = table[("rooms", sv)]
        w(f"| {NAMES[sv]} | {fmt(m['deliveries_per_sec'])} | {rel(m['deliveries_per_sec'], base)} "
          f"| {fmt(m['p50_us'], 0, ' µs')} | {fmt(m['p99_us'], 0, ' µs')} | {fmt(m['p999_us'], 0, ' µs')} "
          f"| {fmt(m['server_cpu_us_per_delivery'], 3, ' µs')} | {fmt(m['server_cpu_pct'], 0, ' %')} "
          f"| {fmt(m['client_cpu_pct'], 0, ' %')} | {fmt(m['peak_mib'], 1, ' MiB')} "
          f"| {m['lost']:,} ({m['lost_max']:,}) | {m['duplicated']:,} | {m['out_of_order']:,} | {m['errors']} | {m['runs']} |")
    w("")
    w(f"![rooms latency percentiles]({charts_rel}/rooms-latency.svg)")
    w("")
if notes:
    w("Failed runs:")
    w("")
    for n in notes:
        w(f"- {n}")
    w("")
w("How it is measured:")
w("")
w(f"""- Servers, all on the raw pub/sub protocol of `silverback serve --pubsub` (a client of
  `/ws?topic=NAME` is subscribed; each data message it sends goes unchanged to every
  subscriber of its topics, itself included): `silverback serve --pubsub -q --threads 1`;
  `tungstenite-fanout` (bench/: a `tokio::sync::broadcast` channel per topic, capacity 1024,
  and a writer task per socket, on a current-thread runtime); `bench/node/fanout_ws.mjs`
  (Node `ws`, a loop over the topic's sockets); `bench/node/fanout_uws.mjs` (uWebSockets.js's
  own topics, `app.publish`, its prebuilt addon loaded directly). No compression anywhere.
- Fan-out: the publisher is subscribed too and counts its own copies apart. Rooms: every
  member receives its room's messages, its own included, and they count as deliveries.
- deliveries/s: messages received by subscribers within the measured window. Latency: send
  timestamp (in the message) to receipt, for messages sent within the window; it includes
  the time a message waits in the load generator for its turn on the generator's core.
- lost: published but never received once the publishers stopped and the subscribers had
  3 s to catch up (summed over subscribers and runs; in parentheses the worst subscriber of
  any run); dup./out of order: received twice, received after a later one.
- Server CPU: utime+stime of the server process (`/proc/PID/stat`) over the measured window,
  per delivery and as a share of one core; generator CPU the same for `silverback bench`
  (near 100 % means the generator, not the server, was the limit).
- {int(env['SOURCE_ADDRS'])} source addresses (127.0.0.1–{int(env['SOURCE_ADDRS'])}); connections opened 256 at a time; measuring
  starts once every connection has received a warm-up message on its topic.
- Raw JSON: `{os.path.relpath(env['RESULTS'], env['ROOT'])}/raw/`; charts: `fanout-charts`
  (bench/) from `summary.json` there.""")
w("<!-- fanout:end -->")
section = "\n".join(out) + "\n"

path = env["OUTPUT"]
old = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
m = re.search(r"<!-- fanout:begin.*?<!-- fanout:end -->\n?", old, re.S)
if m:
    text = old[:m.start()] + section + old[m.end():]
else:
    text = old.rstrip() + "\n\n" + section
with open(path, "w") as f:
    f.write(text)
with open(os.path.join(env["RESULTS"], "fanout-section.md"), "w") as f:
    f.write(section)
print(section)
PY
"$REL/fanout-charts" "$RESULTS/summary.json" "$CHARTS"
echo "==> report: $OUTPUT (section fanout); charts: $CHARTS"
echo "==> raw results: $RESULTS"
if [ "$FAILED" != 0 ]; then
    echo "==> $FAILED run(s) failed" >&2
    exit 1
fi
