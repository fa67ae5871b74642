#!/usr/bin/env bash
# Load figures for users-gateway, as ratios measured in one run on this machine.
#
#   bench/load.sh            # needs wrk and nginx (apt-get install -y wrk nginx)
#
# 1. Cache hits: the gateway's /users?per_page=25 (all upstream pages cached) against nginx
#    serving the very same body as a static file, and the gateway's own /healthz.
# 2. Fan-out: with every sandbox answer delayed by LATENCY_MS, a cold page 1 should take one
#    upstream round trip (both sources in parallel), not two.
# Loopback only; every load is bounded by wrk's duration.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-5s}"
CONNECTIONS="${CONNECTIONS:-32}"
LATENCY_MS="${LATENCY_MS:-100}"
GW_PORT=18481
NGINX_PORT=18482
work=$(mktemp -d)
chmod 755 "$work" # nginx workers run as another user
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk"; exit 1; }
command -v nginx >/dev/null || { echo "nginx is missing: apt-get install -y nginx"; exit 1; }
cargo build --release --quiet
bin=target/release/users-gateway

wait_for() { for _ in $(seq 100); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "no answer from $1"; exit 1; }
rps() { wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "$1" | awk '/Requests\/sec/ {print int($2)}'; }

# --- 1. cache hits vs a static file -------------------------------------------------------
RUST_LOG=warn GATEWAY_LISTEN_ADDR="127.0.0.1:$GW_PORT" "$bin" --demo >"$work/gw.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$GW_PORT/healthz"
users="http://127.0.0.1:$GW_PORT/users?per_page=25"
curl -fs "$users" >"$work/users.json"
chmod 644 "$work/users.json"
cat >"$work/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
# The best configuration of the baseline (../shared/DEPENDENCIES.md): with nginx's defaults
# (1,000 requests per keep-alive connection, no sendfile) it runs at about half speed,
# which would flatter the gateway.
http {
  access_log off;
  default_type application/json;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  open_file_cache max=16 inactive=60s;
  server { listen 127.0.0.1:$NGINX_PORT; root $work; }
}
CONF
nginx -c "$work/nginx.conf"
wait_for "http://127.0.0.1:$NGINX_PORT/users.json"

echo "body: $(wc -c <"$work/users.json") bytes; wrk -t2 -c$CONNECTIONS -d$DURATION on 2 cores shared with the servers"
static=$(rps "http://127.0.0.1:$NGINX_PORT/users.json")
hit=$(rps "$users")
health=$(rps "http://127.0.0.1:$GW_PORT/healthz")
echo "nginx static file (same body):   $static req/s"
echo "gateway /users?per_page=25 hit:  $hit req/s   ($(awk "BEGIN {printf \"%.2f\", $hit/$static}")x nginx)"
echo "gateway /healthz:                $health req/s"
kill "${pids[@]}"; pids=()

# --- 2. fan-out latency ---------------------------------------------------------------------
RUST_LOG=warn GATEWAY_LISTEN_ADDR="127.0.0.1:$GW_PORT" "$bin" --demo --sandbox-latency-ms "$LATENCY_MS" >"$work/gw.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$GW_PORT/healthz"
time_of() { curl -fs -o /dev/null -w '%{time_total}' -H 'Cache-Control: no-cache' "$1"; }
cold_first=$(time_of "http://127.0.0.1:$GW_PORT/users?per_page=25")
cold_middle=$(time_of "http://127.0.0.1:$GW_PORT/users?page=30&per_page=25")
warm=$(curl -fs -o /dev/null -w '%{time_total}' "http://127.0.0.1:$GW_PORT/users?page=30&per_page=25")
echo "upstream latency ${LATENCY_MS} ms each:"
echo "  cold page 1 (both sources' page 1 in parallel):           $(awk "BEGIN {printf \"%.0f\", $cold_first*1000}") ms"
echo "  cold middle page, no-cache (page 1s, then the window page): $(awk "BEGIN {printf \"%.0f\", $cold_middle*1000}") ms"
echo "  the same page again (cache hit):                           $(awk "BEGIN {printf \"%.1f\", $warm*1000}") ms"
