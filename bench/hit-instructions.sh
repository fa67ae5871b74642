#!/usr/bin/env bash
# Instructions per cached /users hit, counted by callgrind: the same figure run after run,
# whatever else the machine does (so before/after of one change is exact, unlike req/s).
#
#   bench/hit-instructions.sh [BINARY] [N]     # default target/release/users-gateway, 1000
#   EXTRA_ENV="RUST_LOG=info,access=off" bench/hit-instructions.sh   # without the access log
#   bench/hit-instructions.sh target/release/examples/bare_axum      # the framework's ceiling
#
# Needs valgrind and python3. Starts the server under callgrind, warms the page with 20
# requests, zeroes the counters, sends N keep-alive requests over one connection, dumps.
# For a readable profile, build with `CARGO_PROFILE_RELEASE_DEBUG=line-tables-only` and run
# `callgrind_annotate --inclusive=yes` on the file this prints.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/users-gateway}
n=${2:-1000}
path='/users?page=1&per_page=25'
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install -y valgrind"; exit 1; }
work=$(mktemp -d)
port=$((20000 + RANDOM % 10000))
case "$(basename "$bin")" in
  bare_axum)
    # The same body bytes the gateway sends, served by a bare axum route.
    GATEWAY_LISTEN_ADDR=127.0.0.1:$port target/release/users-gateway --demo >/dev/null 2>&1 &
    gw=$!
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port$path" -o "$work/body.json" 2>/dev/null && break; sleep 0.1; done
    kill $gw; wait $gw 2>/dev/null || true
    cmd=("$bin" "$work/body.json" "127.0.0.1:$port")
    ;;
  *) cmd=("$bin" --demo) ;;
esac
# Exported, not passed through `env`: valgrind does not follow an exec.
export GATEWAY_LISTEN_ADDR="127.0.0.1:$port"
for assignment in ${EXTRA_ENV:-}; do export "${assignment?}"; done
valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" "${cmd[@]}" >"$work/server.log" 2>&1 &
vpid=$!
trap 'kill $vpid 2>/dev/null || true' EXIT
for _ in $(seq 600); do curl -fs "http://127.0.0.1:$port$path" >/dev/null 2>&1 && break; sleep 0.2; done
client() {
  python3 - "$port" "$path" "$1" <<'PY'
import http.client, sys
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    c.request("GET", path)
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
}
client 20
callgrind_control -z $vpid >/dev/null
client "$n"
callgrind_control -d $vpid >/dev/null
sleep 1
total=$(callgrind_annotate "$work/cg.$vpid.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
echo "$bin ${EXTRA_ENV:-}: $((total / n)) instructions per cached hit (profile: $work/cg.$vpid.1)"
