# Sourced by ci/browser.sh and ci/typescript.sh: start users-gateway processes on loopback
# ports the OS picks (port 0), wait until they serve, and stop them all on exit.
#
#   start_gateway NAME [VAR=value ...] [-- [ARG ...]]   sets $gateway_url (without `--`: --demo;
#                                                      `--` alone: no argument, configured by VARs)
#   start_sandbox NAME [ARG ...]                      sets $sandbox_env (VAR=value words)
#
#   resolve_binary NAME                               $BINARY made absolute (built when unset)
#
# Needs $BINARY. Logs go to $servers_dir/NAME.{out,err}, printed when something fails.

resolve_binary() {
    if [[ -z "${BINARY:-}" ]]; then
        cargo build --locked --quiet
        BINARY="${CARGO_TARGET_DIR:-target}/debug/users-gateway"
    fi
    [[ -x "$BINARY" ]] || { echo "$1: no executable at $BINARY" >&2; exit 1; }
    BINARY="$(cd "$(dirname "$BINARY")" && pwd)/$(basename "$BINARY")"
}

servers_dir="$(mktemp -d)"
server_pids=()

stop_servers() {
    local pid
    for pid in "${server_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${server_pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    server_pids=()
    rm -rf "$servers_dir"
}

server_logs() {
    local f
    for f in "$servers_dir"/*.out "$servers_dir"/*.err; do
        [[ -s "$f" ]] || continue
        echo "--- $f (last 30 lines)" >&2
        tail -n 30 "$f" >&2
    done
}

# wait_for_line NAME PID SED_EXPR: the first output line SED_EXPR prints (10 s at most).
wait_for_line() {
    local name=$1 pid=$2 expr=$3 line="" i
    for i in $(seq 1 100); do
        line="$(sed -n "$expr" "$servers_dir/$name.out" | head -n 1)"
        [[ -n "$line" ]] && { printf '%s\n' "$line"; return 0; }
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name: exited early" >&2
            server_logs
            return 1
        fi
        sleep 0.1
    done
    echo "$name: did not print its address within 10 s" >&2
    server_logs
    return 1
}

start_gateway() {
    local name=$1 envs=() args=() addr i
    shift
    while [[ $# -gt 0 && "$1" != "--" ]]; do envs+=("$1"); shift; done
    if [[ "${1:-}" == "--" ]]; then
        shift
        args=("$@")
    else
        args=(--demo)
    fi
    env GATEWAY_LISTEN_ADDR=127.0.0.1:0 RUST_LOG=warn "${envs[@]}" "$BINARY" "${args[@]}" \
        >"$servers_dir/$name.out" 2>"$servers_dir/$name.err" &
    local pid=$!
    server_pids+=("$pid")
    addr="$(wait_for_line "$name" "$pid" 's|^Swagger UI: http://\([^/]*\)/docs$|\1|p')" || return 1
    gateway_url="http://$addr"
    for i in $(seq 1 100); do
        curl -fsS -o /dev/null "$gateway_url/healthz" 2>/dev/null && { echo "$name: users-gateway ${args[*]:-(configured by the environment)} on $gateway_url"; return 0; }
        sleep 0.1
    done
    echo "$name: $gateway_url/healthz did not answer within 10 s" >&2
    server_logs
    return 1
}

start_sandbox() {
    local name=$1 line
    shift
    "$BINARY" sandbox --ti-addr 127.0.0.1:0 --tis-addr 127.0.0.1:0 "$@" \
        >"$servers_dir/$name.out" 2>"$servers_dir/$name.err" &
    local pid=$!
    server_pids+=("$pid")
    # The line after "Point a gateway at it:": VAR=value ... cargo run --release
    line="$(wait_for_line "$name" "$pid" '/^Point a gateway at it:/{n;p;}')" || return 1
    read -r -a sandbox_env <<<"$line"
    local kept=() word
    for word in "${sandbox_env[@]}"; do [[ "$word" == *=* ]] && kept+=("$word"); done
    sandbox_env=("${kept[@]}")
    [[ ${#sandbox_env[@]} -eq 4 ]] || { echo "$name: unexpected sandbox banner: $line" >&2; server_logs; return 1; }
    echo "$name: users-gateway sandbox $* (${sandbox_env[*]})"
}
