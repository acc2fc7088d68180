#!/usr/bin/env bash
# Set up the Autobahn|Testsuite (wstest) for silverback's conformance gate
# (conformance/run.sh calls it; adapted from the team's shared recipe).
#
# Route: the official, unmodified `autobahntestsuite` package from PyPI is
# Python-2.7-only. Debian bookworm has no Python 2, so we install python2.7
# from the previous Debian release (bullseye) through the SAME apt archive
# this machine is already configured for (the URI is read from the existing
# apt sources, never hard-coded), then create a py2.7 virtualenv and
# pip-install autobahntestsuite into it with pinned dependency versions.
#
# Everything lands in $TOOLS_DIR (default: ~/.cache/autobahn,
# never inside a git repo).
#
# Idempotent: re-running skips every step that is already done.
#
# Env:
#   TOOLS_DIR                    where venvs/reports go
#   AUTOBAHN_KEEP_APT_SOURCE=1   keep the temporary bullseye apt source (default: removed after install)
#   AUTOBAHN_PYTHON27            a python2.7 interpreter to use instead of the apt one
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS_DIR="${TOOLS_DIR:-${HOME:-/root}/.cache/autobahn}"
mkdir -p "$TOOLS_DIR"
TOOLS_DIR="$(cd "$TOOLS_DIR" && pwd)"

log() { printf '[autobahn-setup] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

OLD_SUITE="${AUTOBAHN_PY2_SUITE:-bullseye}"
APT_SRC_FILE="/etc/apt/sources.list.d/autobahn-py2-${OLD_SUITE}.sources"
APT_PIN_FILE="/etc/apt/preferences.d/autobahn-py2-${OLD_SUITE}.pref"

# Find the URI of the main Debian archive from the existing apt configuration
# (deb822 *.sources files or one-line sources.list entries).
derive_debian_uri() {
  local codename
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  python3 - "$codename" <<'PY'
import glob, sys
codename = sys.argv[1]
cands = []
# deb822 format
for path in sorted(glob.glob('/etc/apt/sources.list.d/*.sources')):
    try:
        text = open(path).read()
    except OSError:
        continue
    for stanza in text.split('\n\n'):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith('#') or ':' not in line or line[:1].isspace():
                continue
            k, v = line.split(':', 1)
            fields[k.strip().lower()] = v.split()
        if 'deb' not in fields.get('types', []) or fields.get('enabled', ['yes'])[0] == 'no':
            continue
        suites = fields.get('suites', [])
        if codename in suites:
            cands.extend(fields.get('uris', []))
# one-line format
for path in ['/etc/apt/sources.list'] + sorted(glob.glob('/etc/apt/sources.list.d/*.list')):
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        parts = line.split('#', 1)[0].split()
        if not parts or parts[0] != 'deb':
            continue
        parts = parts[1:]
        if parts and parts[0].startswith('['):
            while parts and not parts[0].endswith(']'):
                parts.pop(0)
            parts = parts[1:]
        if len(parts) >= 2 and parts[1] == codename:
            cands.append(parts[0])
for uri in cands:
    if 'security' not in uri:
        print(uri.rstrip('/'))
        sys.exit(0)
sys.exit(1)
PY
}

# A python2.7 that really runs and has its headers (a pyenv shim may answer
# `command -v python2.7` and then refuse to run): prints its absolute path.
find_python27() {
  local c p
  for c in "${AUTOBAHN_PYTHON27:-}" /usr/bin/python2.7 /usr/local/bin/python2.7 "$(command -v python2.7 2>/dev/null || true)"; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    "$c" -c 'import distutils, ssl, zlib' >/dev/null 2>&1 || continue
    p="$("$c" -c 'import sys; from distutils import sysconfig; sys.stdout.write(sysconfig.get_python_inc())' 2>/dev/null)" || continue
    [ -e "$p/Python.h" ] || continue
    "$c" -c 'import sys; sys.stdout.write(sys.executable)'
    return 0
  done
  return 1
}

ensure_python27() {
  if PY27="$(find_python27)" && command -v gcc >/dev/null 2>&1; then
    log "python2.7 (with headers) and gcc already present: $PY27"
    return 0
  fi
  log "installing python2.7 + python2.7-dev (+ gcc) via apt"
  $SUDO apt-get update -qq
  local cand
  cand="$(apt-cache policy python2.7 2>/dev/null | awk '/Candidate:/{print $2}')"
  local added=0
  if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
    local uri
    uri="$(derive_debian_uri)" || { log "could not derive the Debian archive URI from apt sources"; exit 1; }
    log "adding temporary apt source for suite '$OLD_SUITE' (same archive as the existing sources), pinned low"
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$uri" "$OLD_SUITE" | $SUDO tee "$APT_SRC_FILE" >/dev/null
    printf 'Package: *\nPin: release n=%s\nPin-Priority: 100\n' "$OLD_SUITE" | $SUDO tee "$APT_PIN_FILE" >/dev/null
    added=1
    $SUDO apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    python2.7 python2.7-dev gcc libc6-dev >/dev/null
  if [ "$added" = 1 ] && [ "${AUTOBAHN_KEEP_APT_SOURCE:-0}" != 1 ]; then
    log "removing temporary apt source again (installed packages stay)"
    $SUDO rm -f "$APT_SRC_FILE" "$APT_PIN_FILE"
    $SUDO apt-get update -qq || true
  fi
  PY27="$(find_python27)" || { log "python2.7 still not usable after the apt install"; exit 1; }
  "$PY27" --version
}

ensure_venv_tools() {
  # Python 3 venv that only holds virtualenv<20.22 (last series able to create py2.7 envs).
  if [ -x "$TOOLS_DIR/venv-tools/bin/virtualenv" ]; then return 0; fi
  log "creating $TOOLS_DIR/venv-tools (virtualenv for py2.7)"
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    log "installing python3-venv via apt"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  python3 -m venv "$TOOLS_DIR/venv-tools"
  "$TOOLS_DIR/venv-tools/bin/pip" install -q 'virtualenv==20.21.1'
}

ensure_venv_wstest() {
  local vw="$TOOLS_DIR/venv-wstest"
  if [ -x "$vw/bin/wstest" ] && "$vw/bin/python" -c 'import autobahntestsuite.fuzzing' >/dev/null 2>&1; then
    log "wstest already installed: $("$vw/bin/wstest" -a 2>/dev/null | tr '\n' ' ')"
    return 0
  fi
  log "creating py2.7 virtualenv $vw and installing autobahntestsuite from PyPI"
  rm -rf "$vw"
  "$TOOLS_DIR/venv-tools/bin/virtualenv" -q -p "$PY27" "$vw"
  # pip 20.3.4 is the last pip for Python 2.7 (virtualenv 20.21 seeds exactly that).
  "$vw/bin/pip" install -q --no-python-version-warning 'pip==20.3.4'
  "$vw/bin/pip" install -q --no-python-version-warning \
    -c "$SCRIPT_DIR/constraints-wstest-py27.txt" 'autobahntestsuite==25.10.1'
  "$vw/bin/wstest" -a
}

ensure_python27
ensure_venv_tools
ensure_venv_wstest
log "done. TOOLS_DIR=$TOOLS_DIR"
