#!/usr/bin/env bash
# Installs the interop peers the tests talk to, inside the checkout:
#   .peers/venv   Python virtualenv with `websockets` and `h2` (PyPI)
#   .peers/node   Node.js project with `ws` (npm)
#   /usr/bin/chromium  Debian's headless Chromium (apt; needs root), for the
#                 browser test (crates/cli/tests/browser.rs)
#   /usr/bin/promtool  from Debian's prometheus (apt; needs root), to validate
#                 `silverback serve`'s /metrics (crates/cli/tests/metrics.rs)
#   /usr/bin/redis-server  Debian's redis-server (apt; needs root), for the
#                 Redis backplane tests (crates/cli/tests/redis.rs)
# Idempotent: re-running only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS=$ROOT/.peers
mkdir -p "$PEERS"

PY_WEBSOCKETS_VERSION=15.0.1
# HTTP/2 by hand (RFC 8441 extended CONNECT): interop/h2_ws_client.py.
PY_H2_VERSION=4.3.0
NODE_WS_VERSION=8.18.3

if ! "$PEERS/venv/bin/python" -c "import websockets, sys; sys.exit(websockets.__version__ != '$PY_WEBSOCKETS_VERSION')" 2>/dev/null; then
    echo "installing Python websockets==$PY_WEBSOCKETS_VERSION into .peers/venv"
    python3 -m venv "$PEERS/venv"
    "$PEERS/venv/bin/pip" install --quiet --disable-pip-version-check "websockets==$PY_WEBSOCKETS_VERSION"
fi

if ! "$PEERS/venv/bin/python" -c "import h2, sys; sys.exit(h2.__version__ != '$PY_H2_VERSION')" 2>/dev/null; then
    echo "installing Python h2==$PY_H2_VERSION into .peers/venv"
    "$PEERS/venv/bin/python" -m pip install --quiet --disable-pip-version-check "h2==$PY_H2_VERSION"
fi

if [ "$(node -p "require('$PEERS/node/node_modules/ws/package.json').version" 2>/dev/null)" != "$NODE_WS_VERSION" ]; then
    echo "installing Node ws@$NODE_WS_VERSION into .peers/node"
    mkdir -p "$PEERS/node"
    (cd "$PEERS/node" && { [ -f package.json ] || echo '{"name":"silverback-peers","private":true}' > package.json; } \
        && npm install --silent --no-audit --no-fund "ws@$NODE_WS_VERSION")
fi

# Debian packages, by the program each provides: the missing ones are
# installed together (needs root), the package lists fetched only when needed
# (none yet on a fresh machine, or stale ones the install fails with).
APT_PEERS=(/usr/bin/chromium:chromium /usr/bin/promtool:prometheus /usr/bin/redis-server:redis-server)
missing=()
for entry in "${APT_PEERS[@]}"; do
    [ -x "${entry%%:*}" ] || missing+=("${entry#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian ${missing[*]} (apt-get)"
    SUDO=
    [ "$(id -u)" = 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    apt_install() { $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
    if ! apt-cache show "${missing[@]}" >/dev/null 2>&1 || ! apt_install 2>/dev/null; then
        $SUDO apt-get update -qq >/dev/null
        apt_install
    fi
fi

"$PEERS/venv/bin/python" -c "import websockets; print('python websockets', websockets.__version__)"
"$PEERS/venv/bin/python" -c "import h2; print('python h2', h2.__version__)"
node -e "console.log('node ws', require('$PEERS/node/node_modules/ws/package.json').version)"
/usr/bin/chromium --version 2>/dev/null
/usr/bin/promtool --version 2>&1 | head -1
/usr/bin/redis-server --version
