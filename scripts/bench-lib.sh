# Shared by scripts/bench.sh and scripts/bench-fanout.sh (sourced, not run):
# timing, ports below the ephemeral range, and a server's start and stop.
# Needs PORT_BASE set; start_server's caller launches the server in the
# background first (`launch_server`), then calls `await_server PORT`.

# utime + stime of a process, in clock ticks.
cpu_ticks() {
    local stat
    stat=$(<"/proc/$1/stat") || return 1
    stat=${stat##*) }   # fields from the 3rd on (the name may hold spaces)
    # shellcheck disable=SC2086
    set -- $stat
    echo $((${12} + ${13}))
}
now() { date +%s.%N; }
# sleep, interruptible: a trapped signal ends `wait` at once.
nap() { sleep "$1" & wait $!; }
accepts() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Server ports come from below the ephemeral range, so that no client
# socket (thousands of them) can hold the next server's port.
read -r EPHEMERAL_LOW EPHEMERAL_HIGH </proc/sys/net/ipv4/ip_local_port_range
if [ "$PORT_BASE" -lt "$EPHEMERAL_HIGH" ] && [ $((PORT_BASE + 1000)) -gt "$EPHEMERAL_LOW" ]; then
    echo "warning: --port-base $PORT_BASE is in the ephemeral range $EPHEMERAL_LOW-$EPHEMERAL_HIGH" >&2
fi
PORT=$PORT_BASE
# A port no socket uses (each run gets its own: no TIME_WAIT carried over).
port_busy() {
    if command -v ss >/dev/null; then
        [ -n "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]
    else
        accepts "$1"
    fi
}
next_port() {
    PORT=$((PORT + 1))
    [ "$PORT" -lt $((PORT_BASE + 1000)) ] || PORT=$((PORT_BASE + 1))
    while port_busy "$PORT"; do PORT=$((PORT + 1)); done
}

# The server just started in the background (`$!`, through taskset, which
# execs it: same pid) becomes SERVER_PID; waits up to 10 s for it to
# accept on PORT. Fails if it exits first or never accepts.
await_server() { # pid port
    SERVER_PID=$1
    local i
    for i in $(seq 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        if accepts "$2"; then return 0; fi
        sleep 0.1
    done
    return 1
}

stop_server() {
    local i
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for i in $(seq 30); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}
