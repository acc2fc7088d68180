#!/usr/bin/env bash
# Run the Autobahn|Testsuite against a WebSocket CLIENT (wstest -m fuzzingserver).
#
# Usage: run-client-suite.sh AGENT_NAME [--] CLIENT_CMD [ARGS...]
#   Starts `wstest -m fuzzingserver` on ws://127.0.0.1:$AUTOBAHN_PORT, then runs CLIENT_CMD.
#   The client must speak the Autobahn protocol against the base URL:
#     GET /getCaseCount                       -> one text message with the number N
#     GET /runCase?case=I&agent=AGENT         (I = 1..N) echo every text/binary message back
#     GET /updateReports?agent=AGENT          -> server writes the reports
#   The base URL and agent are given to the client as env AUTOBAHN_URL / AUTOBAHN_AGENT, and
#   the literal arguments {url} and {agent} in CLIENT_CMD are replaced by them.
#   e.g. run-client-suite.sh my-client -- ./target/release/autobahn-client {url} {agent}
#
# Env:
#   TOOLS_DIR              venvs/reports dir made by setup.sh (default: ~/.cache/autobahn)
#   AUTOBAHN_PORT          fuzzingserver port on 127.0.0.1 (default 9001)
#   AUTOBAHN_QUICK=1       exclude the slow groups 9.* and 12.*/13.*
#   AUTOBAHN_CASES         comma-separated case patterns to run (default "*")
#   AUTOBAHN_EXCLUDE       extra comma-separated case patterns to exclude
#   AUTOBAHN_RUN_DIR       where the spec and logs go (default: a new temp dir under $TOOLS_DIR)
#   AUTOBAHN_REPORT_DIR    report dir (default $TOOLS_DIR/reports/clients)
#   AUTOBAHN_CLIENT_TIMEOUT  time limit for the client command in seconds (default 3600)
# If the client exits without calling /updateReports, the script requests the reports itself
# (and says so). Exit: 0 all cases non-FAILED, 1 some FAILED/incomplete, 2 harness problem.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS_DIR="${TOOLS_DIR:-${HOME:-/root}/.cache/autobahn}"
PY2="$TOOLS_DIR/venv-wstest/bin/python"

if [ $# -lt 2 ]; then
  sed -n '2,24p' "$0" >&2
  exit 2
fi
AGENT="$1"; shift
[ "${1:-}" = "--" ] && shift
[ $# -ge 1 ] || { echo "missing client command" >&2; exit 2; }

if [ ! -x "$PY2" ]; then
  echo "wstest not installed under $TOOLS_DIR; run $SCRIPT_DIR/setup.sh first" >&2
  exit 2
fi

PORT="${AUTOBAHN_PORT:-9001}"
URL="ws://127.0.0.1:$PORT"
REPORT_DIR="${AUTOBAHN_REPORT_DIR:-$TOOLS_DIR/reports/clients}"
mkdir -p "$REPORT_DIR"
REPORT_DIR="$(cd "$REPORT_DIR" && pwd)"
if [ -n "${AUTOBAHN_RUN_DIR:-}" ]; then
  RUN_DIR="$AUTOBAHN_RUN_DIR"; mkdir -p "$RUN_DIR"
else
  RUN_DIR="$(mktemp -d "$TOOLS_DIR/run-client.XXXXXX")"
fi
SPEC="$RUN_DIR/fuzzingserver.json"
LOG="$RUN_DIR/wstest.log"
CLIENT_LOG="$RUN_DIR/client.log"

if python3 -c 'import socket,sys; s=socket.socket(); sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$PORT"; then
  echo "port $PORT on 127.0.0.1 is already in use; set AUTOBAHN_PORT" >&2
  exit 2
fi

python3 "$SCRIPT_DIR/abctl.py" spec client "$SPEC" "$URL" "$AGENT" "$REPORT_DIR" \
  "${AUTOBAHN_QUICK:-0}" "${AUTOBAHN_CASES:-*}" "${AUTOBAHN_EXCLUDE:-}"
rm -f "$REPORT_DIR/index.json"

WSTEST_PID=""
CLIENT_PID=""
cleanup() {
  # `timeout` runs the client in a process group of its own and passes a
  # TERM on to it.
  if [ -n "$CLIENT_PID" ] && kill -0 "$CLIENT_PID" 2>/dev/null; then
    kill "$CLIENT_PID" 2>/dev/null || true
    wait "$CLIENT_PID" 2>/dev/null || true
  fi
  if [ -n "$WSTEST_PID" ] && kill -0 "$WSTEST_PID" 2>/dev/null; then
    kill "$WSTEST_PID" 2>/dev/null || true
    wait "$WSTEST_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

(cd "$RUN_DIR" && exec "$PY2" "$SCRIPT_DIR/wstest_local.py" -m fuzzingserver -s "$SPEC" -u 0) >"$LOG" 2>&1 &
WSTEST_PID=$!
if ! python3 "$SCRIPT_DIR/abctl.py" wait-port 127.0.0.1 "$PORT" 60; then
  echo "wstest fuzzingserver did not come up; log:" >&2
  tail -n 30 "$LOG" >&2
  exit 2
fi

args=()
for x in "$@"; do
  x="${x//\{url\}/$URL}"
  x="${x//\{agent\}/$AGENT}"
  args+=("$x")
done

echo "fuzzingserver at $URL (pid $WSTEST_PID, log $LOG); running client: ${args[*]} (log $CLIENT_LOG)"
start=$(date +%s)
set +e
AUTOBAHN_URL="$URL" AUTOBAHN_AGENT="$AGENT" timeout "${AUTOBAHN_CLIENT_TIMEOUT:-3600}" "${args[@]}" >"$CLIENT_LOG" 2>&1 &
CLIENT_PID=$!
wait "$CLIENT_PID"
crc=$?
CLIENT_PID=""
set -e
end=$(date +%s)
echo "client exited with $crc after $((end - start))s"

if [ ! -f "$REPORT_DIR/index.json" ]; then
  echo "client did not request /updateReports (or reports not written yet); requesting them now"
  python3 "$SCRIPT_DIR/abctl.py" update-reports "$URL" "$AGENT" || true
fi
if [ ! -f "$REPORT_DIR/index.json" ]; then
  echo "no report written; wstest log tail:" >&2
  tail -n 30 "$LOG" >&2
  exit 2
fi
EXPECT="$(sed -n 's/^Ok, will run \([0-9][0-9]*\) test cases.*/\1/p' "$LOG" | head -n 1)"
set +e
python3 "$SCRIPT_DIR/summarize.py" "$REPORT_DIR/index.json" --agent "$AGENT" \
  --expect "${EXPECT:-0}" --json "$REPORT_DIR/summary.json"
src=$?
set -e
echo "wall time (client run): $((end - start))s; HTML report: $REPORT_DIR/index.html"
if [ "$crc" -ne 0 ]; then
  echo "note: client command exited with status $crc (see $CLIENT_LOG)"
fi
exit $src
