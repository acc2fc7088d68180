#!/usr/bin/env bash
# Installs the interop peers the tests talk to, inside the checkout:
#   .peers/venv   Python virtualenv with `websockets` (PyPI)
#   .peers/node   Node.js project with `ws` (npm)
#   /usr/bin/chromium  Debian's headless Chromium (apt; needs root), for the
#                 browser test (crates/cli/tests/browser.rs)
#   /usr/bin/redis-server  Debian's redis-server (apt; needs root), for the
#                 Redis backplane tests (crates/cli/tests/redis.rs)
# Idempotent: re-running only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS=$ROOT/.peers
mkdir -p "$PEERS"

PY_WEBSOCKETS_VERSION=15.0.1
NODE_WS_VERSION=8.18.3

if ! "$PEERS/venv/bin/python" -c "import websockets, sys; sys.exit(websockets.__version__ != '$PY_WEBSOCKETS_VERSION')" 2>/dev/null; then
    echo "installing Python websockets==$PY_WEBSOCKETS_VERSION into .peers/venv"
    python3 -m venv "$PEERS/venv"
    "$PEERS/venv/bin/pip" install --quiet --disable-pip-version-check "websockets==$PY_WEBSOCKETS_VERSION"
fi

if [ "$(node -p "require('$PEERS/node/node_modules/ws/package.json').version" 2>/dev/null)" != "$NODE_WS_VERSION" ]; then
    echo "installing Node ws@$NODE_WS_VERSION into .peers/node"
    mkdir -p "$PEERS/node"
    (cd "$PEERS/node" && { [ -f package.json ] || echo '{"name":"silverback-peers","private":true}' > package.json; } \
        && npm install --silent --no-audit --no-fund "ws@$NODE_WS_VERSION")
fi

if [ ! -x /usr/bin/chromium ]; then
    echo "installing Debian chromium (apt-get)"
    SUDO=
    [ "$(id -u)" = 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    apt_install() { $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
    # Fetch the package lists only when needed: none yet (a fresh machine),
    # or the install from the lists already there fails (stale lists).
    if ! apt-cache show chromium >/dev/null 2>&1 || ! apt_install 2>/dev/null; then
        $SUDO apt-get update -qq >/dev/null
        apt_install
    fi
fi

if [ ! -x /usr/bin/redis-server ]; then
    echo "installing Debian redis-server (apt-get)"
    SUDO=
    [ "$(id -u)" = 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    apt_install_redis() { $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null; }
    if ! apt-cache show redis-server >/dev/null 2>&1 || ! apt_install_redis 2>/dev/null; then
        $SUDO apt-get update -qq >/dev/null
        apt_install_redis
    fi
fi

"$PEERS/venv/bin/python" -c "import websockets; print('python websockets', websockets.__version__)"
node -e "console.log('node ws', require('$PEERS/node/node_modules/ws/package.json').version)"
/usr/bin/chromium --version 2>/dev/null
/usr/bin/redis-server --version
