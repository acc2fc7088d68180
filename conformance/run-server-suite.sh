#!/usr/bin/env bash
# Run the Autobahn|Testsuite against a WebSocket ECHO SERVER (wstest -m fuzzingclient).
#
# Usage: run-server-suite.sh WS_URL AGENT_NAME
#   e.g. run-server-suite.sh ws://127.0.0.1:9001 my-server
# The server must already be running and echo every text/binary message back.
#
# Env:
#   TOOLS_DIR            venvs/reports dir made by setup.sh (default: ~/.cache/autobahn)
#   AUTOBAHN_QUICK=1     exclude the slow groups 9.* (limits/performance) and 12.*/13.* (permessage-deflate)
#   AUTOBAHN_CASES       comma-separated case patterns to run (default "*")
#   AUTOBAHN_EXCLUDE     extra comma-separated case patterns to exclude
#   AUTOBAHN_RUN_DIR     where the spec and logs go (default: a new temp dir under $TOOLS_DIR)
#   AUTOBAHN_REPORT_DIR  where wstest writes index.json + per-case reports (default $TOOLS_DIR/reports/servers)
#   AUTOBAHN_TIMEOUT     overall time limit in seconds (default 3600)
# Exit: 0 all cases non-FAILED, 1 some FAILED/incomplete, 2 harness problem.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS_DIR="${TOOLS_DIR:-${HOME:-/root}/.cache/autobahn}"
PY2="$TOOLS_DIR/venv-wstest/bin/python"

if [ $# -lt 2 ]; then
  sed -n '2,16p' "$0" >&2
  exit 2
fi
URL="$1"
AGENT="$2"

if [ ! -x "$PY2" ]; then
  echo "wstest not installed under $TOOLS_DIR; run $SCRIPT_DIR/setup.sh first" >&2
  exit 2
fi

REPORT_DIR="${AUTOBAHN_REPORT_DIR:-$TOOLS_DIR/reports/servers}"
mkdir -p "$REPORT_DIR"
REPORT_DIR="$(cd "$REPORT_DIR" && pwd)"
if [ -n "${AUTOBAHN_RUN_DIR:-}" ]; then
  RUN_DIR="$AUTOBAHN_RUN_DIR"; mkdir -p "$RUN_DIR"
else
  RUN_DIR="$(mktemp -d "$TOOLS_DIR/run-server.XXXXXX")"
fi
SPEC="$RUN_DIR/fuzzingclient.json"
LOG="$RUN_DIR/wstest.log"

# host/port of the server, to wait until it accepts connections
HOSTPORT="$(python3 -c 'import sys,urllib.parse as u; s=u.urlsplit(sys.argv[1]); print(s.hostname, s.port or (443 if s.scheme=="wss" else 80))' "$URL")"
# shellcheck disable=SC2086
python3 "$SCRIPT_DIR/abctl.py" wait-port $HOSTPORT 30 || { echo "server $URL not reachable" >&2; exit 2; }

python3 "$SCRIPT_DIR/abctl.py" spec server "$SPEC" "$URL" "$AGENT" "$REPORT_DIR" \
  "${AUTOBAHN_QUICK:-0}" "${AUTOBAHN_CASES:-*}" "${AUTOBAHN_EXCLUDE:-}"
rm -f "$REPORT_DIR/index.json"

# wstest runs in the background so that an interrupt stops it at once
# (`timeout` gives it a process group of its own and passes a TERM on).
WSTEST_PID=""
cleanup() {
  if [ -n "$WSTEST_PID" ] && kill -0 "$WSTEST_PID" 2>/dev/null; then
    kill "$WSTEST_PID" 2>/dev/null || true
    wait "$WSTEST_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
echo "running wstest fuzzingclient against $URL (agent $AGENT), log: $LOG, reports: $REPORT_DIR"
start=$(date +%s)
set +e
(cd "$RUN_DIR" && exec timeout "${AUTOBAHN_TIMEOUT:-3600}" "$PY2" "$SCRIPT_DIR/wstest_local.py" -m fuzzingclient -s "$SPEC") >"$LOG" 2>&1 &
WSTEST_PID=$!
wait "$WSTEST_PID"
wrc=$?
WSTEST_PID=""
set -e
end=$(date +%s)
echo "wstest exited with $wrc after $((end - start))s"
if [ ! -f "$REPORT_DIR/index.json" ]; then
  echo "no report written; last log lines:" >&2
  tail -n 30 "$LOG" >&2
  exit 2
fi
EXPECT="$(sed -n 's/^Ok, will run \([0-9][0-9]*\) test cases.*/\1/p' "$LOG" | head -n 1)"
set +e
python3 "$SCRIPT_DIR/summarize.py" "$REPORT_DIR/index.json" --agent "$AGENT" \
  --expect "${EXPECT:-0}" --json "$REPORT_DIR/summary.json"
src=$?
set -e
echo "wall time: $((end - start))s; HTML report: $REPORT_DIR/index.html"
[ "$wrc" -ne 0 ] && [ "$src" -eq 0 ] && src=2
exit $src
