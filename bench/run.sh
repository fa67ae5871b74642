#!/usr/bin/env bash
# users-gateway's benchmark, one command, one run: every figure of docs/BENCHMARKS.md.
#
#   bench/run.sh                       # needs wrk, nginx, curl (apt-get install -y wrk nginx curl)
#   ROUNDS=5 DURATION=10s bench/run.sh # longer; every knob is an environment variable (below)
#   SCENARIOS="hit" bench/run.sh       # only some of: hit expiry large
#
# 1. hit: a cached `GET /users?page=1&per_page=25` against the ceilings it is compared with,
#    in interleaved rounds (nginx, bare axum, gateway, gateway with caller auth, then again):
#    nginx at its best for a static file (2 workers, sendfile, tcp_nopush,
#    keepalive_requests 1000000, access_log off, open_file_cache) serving the gateway's very
#    body bytes, and a bare axum `Bytes` handler (examples/bare_axum.rs) serving them too.
#    `wrk -t2 --latency` on loopback at each of CONNS; medians over ROUNDS of req/s, p50, p99
#    and CPU µs per request of the server process (utime+stime from /proc/PID/stat, all its
#    threads, nginx's master and workers, before/after, divided by the requests wrk counted).
#    The gateway runs as shipped: default middleware and log level (RUST_LOG unset), its
#    access log written to stdout, here /dev/null (GATEWAY_LOG_TO=FILE to keep it).
# 2. expiry: TTL 1 s, sandbox latency 50 ms, wrk cycling over 5 pages without pause: p99 against
#    the warm-hit p99 of a long-TTL run, and upstream requests per second (/metrics); with
#    stale-while-revalidate at its default and at 0 when the gateway knows the setting. Plus
#    cold fan-out: a cold page 1 and a cold middle page against the 50 ms upstreams.
# 3. large: a tenant of 20,000 TI users of ~3.5 KB (TI page size 100) and 10,000 TIS users,
#    default cache bound: a plain cached page, the first page of sort=last_name and of an
#    email= filter (time, upstream calls), the rest of a sorted walk, and peak RSS (VmHWM).
#
# Loopback only. Every load is bounded by wrk's duration; the defaults take about 5 minutes.
# Every process started here is stopped on exit. The machine's other work shows in the
# figures: the load average is printed before and after; compare ratios within one run.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-5}"                        # interleaved rounds of the hit comparison
DURATION="${DURATION:-5s}"                   # each wrk run of the hit comparison
WARMUP="${WARMUP:-1s}"                       # one warm-up run per server before round 1
CONNS="${CONNS:-64 256}"                     # wrk connections
THREADS="${THREADS:-2}"                      # wrk threads
EXPIRY_DURATION="${EXPIRY_DURATION:-10s}"
EXPIRY_CONNECTIONS="${EXPIRY_CONNECTIONS:-64}"
EXPIRY_LATENCY_MS="${EXPIRY_LATENCY_MS:-50}"
EXPIRY_PAGES="${EXPIRY_PAGES:-5}"            # pages 1..N of per_page=25, cycled
LARGE_TI_USERS="${LARGE_TI_USERS:-20000}"
LARGE_TIS_USERS="${LARGE_TIS_USERS:-10000}"
LARGE_TI_PAGE_SIZE="${LARGE_TI_PAGE_SIZE:-100}"
LARGE_TI_RECORD_BYTES="${LARGE_TI_RECORD_BYTES:-3500}"
LARGE_WALK_PAGES="${LARGE_WALK_PAGES:-20}"   # sorted pages after the first
LARGE_EMAIL="${LARGE_EMAIL:-smith}"
SCENARIOS="${SCENARIOS:-hit expiry large}"
PORT_BASE="${PORT_BASE:-18480}"
API_KEY="bench-caller-key"

GW_PORT=$((PORT_BASE + 1)) NGINX_PORT=$((PORT_BASE + 2)) AXUM_PORT=$((PORT_BASE + 3)) GW_AUTH_PORT=$((PORT_BASE + 4))
SB_TI_PORT=$((PORT_BASE + 5)) SB_TIS_PORT=$((PORT_BASE + 6))
HIT_PATH="/users?page=1&per_page=25"

missing=()
for tool in wrk nginx curl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bench/run.sh needs ${missing[*]}: apt-get install -y ${missing[*]}" >&2
  exit 1
fi

work=$(mktemp -d)
chmod 755 "$work" # nginx workers run as another user
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building (release)"
cargo build --release --locked --quiet --bin users-gateway --example bare_axum
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="$target_dir/release/users-gateway"
axum_bin="$target_dir/release/examples/bare_axum"
out_dir="${BENCH_OUT:-$target_dir/bench-run}"
mkdir -p "$out_dir"
results="$out_dir/results.tsv"
summary="$out_dir/summary.md"
: >"$results"
: >"$out_dir/wrk.log"
exec > >(tee "$summary") # progress goes to stderr, the tables to stdout and summary.md

# --- helpers ---------------------------------------------------------------------------------
clk_tck=$(getconf CLK_TCK)
log_to="${GATEWAY_LOG_TO:-/dev/null}"

fail() { echo "bench/run.sh: $*" >&2; exit 1; }
# Waits until URL answers (any status) while PID lives.
wait_for() {
  local url=$1 pid=$2
  for _ in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || fail "process $pid exited before answering $url (port in use?)"
    curl -s -o /dev/null "$url" && return 0
    sleep 0.05
  done
  fail "no answer from $url"
}
port_free() { ! curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/" || fail "port $1 is in use (set PORT_BASE)"; }
# utime+stime in clock ticks of a process (all its threads), summed over the pids given.
cpu_ticks() {
  local total=0 pid fields
  for pid in "$@"; do
    fields=$(sed 's/^.*) //' "/proc/$pid/stat") # after the command name, which may hold spaces
    set -- $fields
    total=$((total + ${12} + ${13}))             # fields 14 and 15 of stat
  done
  echo "$total"
}
# Microseconds from wrk's 1.23us / 4.56ms / 1.2s.
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) f = 1; else if (v ~ /ms$/) f = 1000; else if (v ~ /m$/) f = 60000000; else if (v ~ /s$/) f = 1000000; else f = 1; printf "%.0f", n * f }'; }
# Runs wrk; prints "rps p50_us p99_us max_us requests errors bytes_per_response".
run_wrk() {
  local conns=$1 duration=$2 url=$3; shift 3
  local text
  text=$(wrk -t"$THREADS" -c"$conns" -d"$duration" --latency "$@" "$url")
  echo "$text" >>"$out_dir/wrk.log"
  local rps p50 p99 max requests bytes errors
  rps=$(echo "$text" | awk '/^Requests\/sec/ { printf "%.0f", $2 }')
  p50=$(to_us "$(echo "$text" | awk '$1 == "50%" { print $2 }')")
  p99=$(to_us "$(echo "$text" | awk '$1 == "99%" { print $2 }')")
  max=$(to_us "$(echo "$text" | awk '$1 == "Latency" { print $4; exit }')")
  requests=$(echo "$text" | awk '/requests in/ { print $1 }')
  bytes=$(echo "$text" | awk '/requests in/ { v = $5; sub(/,$/, "", v); n = v + 0;
    if (v ~ /KB$/) n *= 1024; else if (v ~ /MB$/) n *= 1048576; else if (v ~ /GB$/) n *= 1073741824;
    printf "%.0f", n }')
  errors=$(echo "$text" | awk '/Non-2xx/ { n += $NF } /Socket errors/ { for (i = 4; i <= NF; i += 2) { v = $i; sub(/,$/, "", v); n += v } } END { print n + 0 }')
  echo "$rps $p50 $p99 $max $requests $errors $((bytes / (requests > 0 ? requests : 1)))"
}
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
fmt_us() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else if (v >= 10000) printf "%.1f ms", v / 1000; else if (v >= 1000) printf "%.2f ms", v / 1000; else printf "%.0f µs", v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a == "-" || b == "-") print "-"; else printf "%.2f", a / b }'; }
metric_sum() { # sum of a Prometheus counter over its labels (those holding $3, if given), from the gateway on port $1
  curl -fs "http://127.0.0.1:$1/metrics" | awk -v name="$2" -v having="${3:-}" '($1 == name || index($1, name "{") == 1) && index($1, having) { n += $NF } END { printf "%.0f", n }'
}
status_kb() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }
ms_of() { awk -v s="$1" 'BEGIN { printf "%.1f", s * 1000 }'; }

start_sandbox() { # ti_port tis_port [sandbox flags…]; sets sb_pid
  local ti_port=$1 tis_port=$2; shift 2
  port_free "$ti_port"; port_free "$tis_port"
  "$bin" sandbox --ti-addr "127.0.0.1:$ti_port" --tis-addr "127.0.0.1:$tis_port" "$@" >"$work/sandbox-$ti_port.log" 2>&1 &
  sb_pid=$!; pids+=("$sb_pid")
  wait_for "http://127.0.0.1:$ti_port/" "$sb_pid"
  wait_for "http://127.0.0.1:$tis_port/" "$sb_pid"
}
start_gateway() { # port ti_port tis_port [VAR=value…]; sets gw_pid
  local port=$1 ti_port=$2 tis_port=$3; shift 3
  port_free "$port"
  env -u RUST_LOG GATEWAY_LISTEN_ADDR="127.0.0.1:$port" \
    THOUGHTINDUSTRIES_BASE_URL="http://127.0.0.1:$ti_port" THOUGHTINDUSTRIES_API_KEY=sandbox-ti-key \
    TAPINTOSAFETY_BASE_URL="http://127.0.0.1:$tis_port" TAPINTOSAFETY_API_KEY=sandbox-tis-key \
    "$@" "$bin" >>"$log_to" 2>&1 &
  gw_pid=$!; pids+=("$gw_pid")
  wait_for "http://127.0.0.1:$port/healthz" "$gw_pid"
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
time_get() { curl -s -o "$work/last.json" -w '%{http_code} %{time_total}\n' "$@"; }

# Which stale-while-revalidate the gateway knows (another change adds it): its print-config.
# shellcheck disable=SC2120 # settings to try, e.g. config_of GATEWAY_X=1
config_of() {
  env -u RUST_LOG THOUGHTINDUSTRIES_BASE_URL=http://127.0.0.1:1 THOUGHTINDUSTRIES_API_KEY=x "$@" "$bin" print-config 2>/dev/null || true
}
swr_default=$(config_of | awk -F' = ' '$1 == "stale_while_revalidate_secs" { print $2 }')
log_level="info (RUST_LOG unset: the gateway's default, src/telemetry.rs)"

# --- the machine -----------------------------------------------------------------------------
echo
echo "# users-gateway benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- tools: $(wrk --version 2>&1 | head -1 | awk '{ print "wrk", $2 }'), $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(rustc --version 2>/dev/null | awk '{ print $1, $2 }')"
echo "- wrk -t$THREADS --latency on loopback, sharing the CPUs with the server it measures"
echo "- gateway: default middleware, log level $log_level, access log to $log_to"
if [ -n "$swr_default" ]; then
  echo "- stale-while-revalidate: GATEWAY_STALE_WHILE_REVALIDATE_SECS, default $swr_default (print-config)"
else
  echo "- stale-while-revalidate: not known to this gateway (print-config shows no stale_while_revalidate_secs)"
fi

# --- 1. cache hits against the ceilings -----------------------------------------------------
if [[ " $SCENARIOS " == *" hit "* ]]; then
  start_sandbox "$SB_TI_PORT" "$SB_TIS_PORT"
  hit_sb=$sb_pid
  start_gateway "$GW_PORT" "$SB_TI_PORT" "$SB_TIS_PORT"
  gw=$gw_pid
  start_gateway "$GW_AUTH_PORT" "$SB_TI_PORT" "$SB_TIS_PORT" GATEWAY_API_KEYS="$API_KEY"
  gw_auth=$gw_pid
  curl -fs "http://127.0.0.1:$GW_PORT$HIT_PATH" -o /dev/null
  curl -fs "http://127.0.0.1:$GW_PORT$HIT_PATH" -o "$work/users"
  curl -fs -H "Authorization: Bearer $API_KEY" "http://127.0.0.1:$GW_AUTH_PORT$HIT_PATH" -o /dev/null
  chmod 644 "$work/users"
  for port in "$GW_PORT" "$GW_AUTH_PORT"; do
    status=$(curl -fs -D - -o /dev/null -H "Authorization: Bearer $API_KEY" "http://127.0.0.1:$port$HIT_PATH" | tr -d '\r' | awk -F': ' 'tolower($1) == "cache-status" { print $2 }')
    [ "$status" = "users-gateway; hit" ] || fail "the gateway on $port does not answer from its cache (Cache-Status: $status)"
  done
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW_AUTH_PORT$HIT_PATH")" = 401 ] || fail "caller auth is not on"

  cat >"$work/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
# nginx at its best for a static file (../shared/DEPENDENCIES.md): with its defaults
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
  port_free "$NGINX_PORT"
  nginx -c "$work/nginx.conf"
  for _ in $(seq 100); do [ -s "$work/nginx.pid" ] && break; sleep 0.05; done
  nginx_master=$(cat "$work/nginx.pid")
  wait_for "http://127.0.0.1:$NGINX_PORT$HIT_PATH" "$nginx_master"
  read -r -a nginx_workers <<<"$(ps -o pid= --ppid "$nginx_master" | tr '\n' ' ')"
  nginx_pids=("$nginx_master" "${nginx_workers[@]}")

  port_free "$AXUM_PORT"
  "$axum_bin" "$work/users" "127.0.0.1:$AXUM_PORT" >"$work/axum.log" 2>&1 &
  axum=$!; pids+=("$axum")
  wait_for "http://127.0.0.1:$AXUM_PORT$HIT_PATH" "$axum"

  for port in "$NGINX_PORT" "$AXUM_PORT"; do
    curl -fs "http://127.0.0.1:$port$HIT_PATH" | cmp -s - "$work/users" || fail "the server on $port does not send the gateway's bytes"
  done
  body_bytes=$(wc -c <"$work/users")

  servers="nginx axum gateway gateway_auth"
  url_of() { case $1 in nginx) echo "http://127.0.0.1:$NGINX_PORT$HIT_PATH" ;; axum) echo "http://127.0.0.1:$AXUM_PORT$HIT_PATH" ;;
    gateway) echo "http://127.0.0.1:$GW_PORT$HIT_PATH" ;; gateway_auth) echo "http://127.0.0.1:$GW_AUTH_PORT$HIT_PATH" ;; esac; }
  pids_of() { case $1 in nginx) echo "${nginx_pids[*]}" ;; axum) echo "$axum" ;; gateway) echo "$gw" ;; gateway_auth) echo "$gw_auth" ;; esac; }
  wrk_for() { # server conns duration
    if [ "$1" = gateway_auth ]; then run_wrk "$2" "$3" "$(url_of "$1")" -H "Authorization: Bearer $API_KEY"
    else run_wrk "$2" "$3" "$(url_of "$1")"; fi >"$work/wrk.out"
    read -r rps p50 p99 max requests errors per_response <"$work/wrk.out"
    [ -n "$rps" ] || fail "wrk gave no figures for $1 (see $out_dir/wrk.log)"
  }

  echo
  echo "## 1. Cached GET $HIT_PATH ($body_bytes body bytes, the same bytes from every server)"
  echo
  echo "$ROUNDS interleaved rounds of $DURATION per server and connection count, after a $WARMUP warm-up each; medians."
  for server in $servers; do wrk_for "$server" 64 "$WARMUP"; done
  upstream_before=$(metric_sum "$GW_PORT" gateway_upstream_requests_total)
  for round in $(seq "$ROUNDS"); do
    for conns in $CONNS; do
      for server in $servers; do
        # shellcheck disable=SC2046
        before=$(cpu_ticks $(pids_of "$server"))
        wrk_for "$server" "$conns" "$DURATION"
        # shellcheck disable=SC2046
        after=$(cpu_ticks $(pids_of "$server"))
        cpu_us=$(awk -v t=$((after - before)) -v hz="$clk_tck" -v n="$requests" 'BEGIN { printf "%.2f", (n > 0 ? t / hz * 1000000 / n : 0) }')
        printf 'hit\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$conns" "$round" "$rps" "$p50" "$p99" "$cpu_us" "$requests" "$errors" "$per_response" >>"$results"
        echo "   round $round c=$conns $server: $rps req/s, p99 $(fmt_us "$p99"), $cpu_us µs CPU/req$([ "$errors" = 0 ] || echo ", $errors errors")" >&2
      done
    done
  done
  upstream_after=$(metric_sum "$GW_PORT" gateway_upstream_requests_total)
  med() { awk -F'\t' -v s="$1" -v c="$2" -v col="$3" '$1 == "hit" && $2 == s && $3 == c { print $col }' "$results" | median; }
  span() { awk -F'\t' -v s="$1" -v c="$2" '$1 == "hit" && $2 == s && $3 == c { print $5 }' "$results" | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.0fk–%.0fk", lo / 1000, hi / 1000 }'; }
  errs() { awk -F'\t' -v s="$1" -v c="$2" '$1 == "hit" && $2 == s && $3 == c { n += $10 } END { print n + 0 }' "$results"; }
  label() { case $1 in nginx) echo "nginx, static file (tuned)" ;; axum) echo "bare axum, \`Bytes\` handler" ;; gateway) echo "users-gateway" ;; gateway_auth) echo "users-gateway, caller auth on" ;; esac; }
  echo
  echo "| server | c | req/s (median) | rounds' range | p50 | p99 | CPU µs/req | bytes/response | errors |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for conns in $CONNS; do
    for server in $servers; do
      per=$(awk -F'\t' -v s="$server" -v c="$conns" '$1 == "hit" && $2 == s && $3 == c { print $11; exit }' "$results")
      echo "| $(label "$server") | $conns | $(med "$server" "$conns" 5) | $(span "$server" "$conns") | $(fmt_us "$(med "$server" "$conns" 6)") | $(fmt_us "$(med "$server" "$conns" 7)") | $(med "$server" "$conns" 8) | $per | $(errs "$server" "$conns") |"
    done
  done
  echo
  echo "| ratio (medians) | c | req/s | CPU µs/req | p99 |"
  echo "|---|---|---|---|---|"
  for conns in $CONNS; do
    for pair in "gateway nginx" "gateway axum" "gateway_auth nginx" "gateway_auth axum" "axum nginx"; do
      set -- $pair
      echo "| $(label "$1") ÷ $(label "$2" | sed 's/,.*//') | $conns | $(ratio "$(med "$1" "$conns" 5)" "$(med "$2" "$conns" 5)")× | $(ratio "$(med "$1" "$conns" 8)" "$(med "$2" "$conns" 8)")× | $(ratio "$(med "$1" "$conns" 7)" "$(med "$2" "$conns" 7)")× |"
    done
  done
  echo
  echo "Upstream requests by the gateway during the rounds: $((upstream_after - upstream_before)). A hit makes none; the gateway runs at its default TTL (60 s), so pages that expire during the rounds are fetched again (on loopback, no latency; in the background with stale-while-revalidate)."
  stop "$gw"; stop "$gw_auth"; stop "$axum"; stop "$hit_sb"
  kill "$nginx_master" 2>/dev/null || true
  rm -f "$work/nginx.pid"
fi

# --- 2. expiry under load, and cold fan-out ---------------------------------------------------
if [[ " $SCENARIOS " == *" expiry "* ]]; then
  start_sandbox "$SB_TI_PORT" "$SB_TIS_PORT" --latency-ms "$EXPIRY_LATENCY_MS"
  exp_sb=$sb_pid
  lua="$work/pages.lua"
  cat >"$lua" <<LUA
-- Each wrk connection asks pages 1..$EXPIRY_PAGES in turn, without pause.
local paths = {}
for i = 1, $EXPIRY_PAGES do paths[i] = "/users?page=" .. i .. "&per_page=25" end
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1])
end
LUA
  # Pages 1..N of 25 cover TI users 1..25N: TI pages 1..ceil(25N/40). TIS's page 1 is needed
  # only while its total is unknown: the source facts outlive the pages (src/cache/facts.rs).
  pages_needed=$(( (25 * EXPIRY_PAGES + 39) / 40 ))
  expiry_run() { # name, then gateway settings
    local name=$1; shift
    start_gateway "$GW_PORT" "$SB_TI_PORT" "$SB_TIS_PORT" "$@"
    local page
    for page in $(seq "$EXPIRY_PAGES"); do curl -fs -o /dev/null "http://127.0.0.1:$GW_PORT/users?page=$page&per_page=25"; done
    local before after secs ti_before tis_before
    before=$(metric_sum "$GW_PORT" gateway_upstream_requests_total)
    ti_before=$(metric_sum "$GW_PORT" gateway_upstream_requests_total 'source="thoughtindustries"')
    tis_before=$(metric_sum "$GW_PORT" gateway_upstream_requests_total 'source="tapintosafety"')
    run_wrk "$EXPIRY_CONNECTIONS" "$EXPIRY_DURATION" "http://127.0.0.1:$GW_PORT/" -s "$lua" >"$work/wrk.out"
    read -r rps p50 p99 max requests errors _ <"$work/wrk.out"
    [ -n "$rps" ] || fail "wrk gave no figures for the $name run (see $out_dir/wrk.log)"
    after=$(metric_sum "$GW_PORT" gateway_upstream_requests_total)
    secs=$(awk -v d="$EXPIRY_DURATION" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; print n }')
    per_sec() { awk -v n="$1" -v s="$secs" 'BEGIN { printf "%.1f", n / s }'; }
    printf 'expiry\t%s\t%s\t1\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$EXPIRY_CONNECTIONS" "$rps" "$p50" "$p99" "$max" "$requests" "$errors" \
      "$(per_sec $((after - before)))" \
      "$(per_sec $(($(metric_sum "$GW_PORT" gateway_upstream_requests_total 'source="thoughtindustries"') - ti_before)))" \
      "$(per_sec $(($(metric_sum "$GW_PORT" gateway_upstream_requests_total 'source="tapintosafety"') - tis_before)))" >>"$results"
    stop "$gw_pid"
  }
  expiry_run warm GATEWAY_CACHE_TTL_SECS=3600
  if [ -n "$swr_default" ]; then
    expiry_run "ttl1_swr$swr_default" GATEWAY_CACHE_TTL_SECS=1
    expiry_run ttl1_swr0 GATEWAY_CACHE_TTL_SECS=1 GATEWAY_STALE_WHILE_REVALIDATE_SECS=0
  else
    expiry_run ttl1 GATEWAY_CACHE_TTL_SECS=1
  fi
  echo
  echo "## 2. Expiry under load: TTL 1 s, upstream latency $EXPIRY_LATENCY_MS ms"
  echo
  echo "wrk -c$EXPIRY_CONNECTIONS for $EXPIRY_DURATION cycling over pages 1..$EXPIRY_PAGES (per_page=25), one gateway per row. Those pages are TI pages 1..$pages_needed (TIS's total comes from its page 1 and is kept in the source facts), so the ideal refresh rate at TTL 1 s is $pages_needed upstream requests/s."
  echo
  echo "| run | req/s | p50 | p99 | max | p99 ÷ warm p99 | upstream req/s (TI + TIS) | errors |"
  echo "|---|---|---|---|---|---|---|---|"
  warm_p99=$(awk -F'\t' '$1 == "expiry" && $2 == "warm" { print $7 }' "$results")
  awk -F'\t' '$1 == "expiry"' "$results" | while IFS=$'\t' read -r _ name _ _ rps p50 p99 max _ errors ups ti_ups tis_ups; do
    case $name in
      warm) what="warm hits (TTL 3600 s)" ;;
      ttl1) what="TTL 1 s" ;;
      ttl1_swr0) what="TTL 1 s, GATEWAY_STALE_WHILE_REVALIDATE_SECS=0" ;;
      *) what="TTL 1 s, stale-while-revalidate ${name#ttl1_swr} s (default)" ;;
    esac
    echo "| $what | $rps | $(fmt_us "$p50") | $(fmt_us "$p99") | $(fmt_us "$max") | $(ratio "$p99" "$warm_p99")× | $ups ($ti_ups + $tis_ups) | $errors |"
  done

  # Cold fan-out, against the same slow upstreams.
  start_gateway "$GW_PORT" "$SB_TI_PORT" "$SB_TIS_PORT"
  read -r _ cold_first < <(time_get "http://127.0.0.1:$GW_PORT/users?per_page=25")
  read -r _ cold_middle < <(time_get "http://127.0.0.1:$GW_PORT/users?page=30&per_page=25")
  read -r _ refetch_middle < <(time_get -H 'Cache-Control: no-cache' "http://127.0.0.1:$GW_PORT/users?page=31&per_page=25")
  read -r _ warm_middle < <(time_get "http://127.0.0.1:$GW_PORT/users?page=30&per_page=25")
  stop "$gw_pid"; stop "$exp_sb"
  echo
  echo "Cold fan-out, each upstream answer delayed $EXPIRY_LATENCY_MS ms (one curl each, fresh gateway):"
  echo
  echo "| request | time | round trips of $EXPIRY_LATENCY_MS ms |"
  echo "|---|---|---|"
  for row in "cold page 1 (both sources' page 1 in parallel):$cold_first" "cold page 30 (page 1s known, the window's TI page):$cold_middle" \
    "page 31 with Cache-Control: no-cache:$refetch_middle" "page 30 again (cache hit):$warm_middle"; do
    echo "| ${row%:*} | $(ms_of "${row##*:}") ms | $(awk -v t="${row##*:}" -v l="$EXPIRY_LATENCY_MS" 'BEGIN { printf "%.1f", t * 1000 / l }') |"
  done
fi

# --- 3. a tenant larger than the cache ----------------------------------------------------------
if [[ " $SCENARIOS " == *" large "* ]]; then
  start_sandbox "$SB_TI_PORT" "$SB_TIS_PORT" --ti-users "$LARGE_TI_USERS" --tis-users "$LARGE_TIS_USERS" \
    --ti-page-size "$LARGE_TI_PAGE_SIZE" --ti-record-bytes "$LARGE_TI_RECORD_BYTES"
  large_sb=$sb_pid
  ti_page_bytes=$(curl -fs -H 'Authorization: Bearer sandbox-ti-key' "http://127.0.0.1:$SB_TI_PORT/incoming/v2/users?page=2" | wc -c)
  start_gateway "$GW_PORT" "$SB_TI_PORT" "$SB_TIS_PORT"
  large_gw=$gw_pid
  cache_bound=$(config_of | awk -F' = ' '$1 == "cache_max_bytes" { print $2 }')
  base="http://127.0.0.1:$GW_PORT/users"
  # One request: prints "ms upstream_calls cpu_ms", checks it is a complete 200.
  measure() {
    local before cpu_before code secs
    before=$(metric_sum "$GW_PORT" gateway_upstream_requests_total)
    cpu_before=$(cpu_ticks "$large_gw")
    time_get "$1" >"$work/time.out"; read -r code secs <"$work/time.out"
    [ "$code" = 200 ] || fail "$1 answered $code: $(head -c 300 "$work/last.json")"
    grep -q '"partial":false' "$work/last.json" || fail "$1 answered a partial page"
    echo "$(ms_of "$secs") $(( $(metric_sum "$GW_PORT" gateway_upstream_requests_total) - before )) $(( ($(cpu_ticks "$large_gw") - cpu_before) * 1000 / clk_tck ))"
  }
  # measure prints into a file, not a pipe: a failure must stop the script.
  m="$work/measure.out"
  measure "$base?page=1&per_page=25" >"$m"; read -r plain_cold_ms plain_cold_calls _ <"$m"
  # Timed as measure times every other request (curl writing the body to a file), so the
  # ratio of a sorted page to a plain one compares like with like.
  plain_ms=$(for _ in $(seq 15); do time_get "$base?page=1&per_page=25" | cut -d' ' -f2; done | median)
  measure "$base?page=1&per_page=25&sort=last_name" >"$m"; read -r sort_ms sort_calls sort_cpu <"$m"
  measure "$base?page=1&per_page=25&email=$LARGE_EMAIL" >"$m"; read -r email_ms email_calls email_cpu <"$m"
  email_total=$(grep -o '"total":[0-9]*' "$work/last.json" | head -1 | cut -d: -f2)
  email_pages=$(( (email_total + 24) / 25 )); [ "$email_pages" -le $((LARGE_WALK_PAGES + 1)) ] || email_pages=$((LARGE_WALK_PAGES + 1))
  email_walk="$work/email-walk.txt"; : >"$email_walk"
  for page in $(seq 2 "$email_pages"); do measure "$base?page=$page&per_page=25&email=$LARGE_EMAIL" >>"$email_walk"; done
  walk="$work/walk.txt"; : >"$walk"
  walk_started=$(date +%s.%N)
  for page in $(seq 2 $((LARGE_WALK_PAGES + 1))); do measure "$base?page=$page&per_page=25&sort=last_name" >>"$walk"; done
  walk_secs=$(awk -v a="$walk_started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  measure "$base?page=1&per_page=25&sort=last_name" >"$m"; read -r sort_again_ms sort_again_calls _ <"$m"
  hwm_kb=$(status_kb "$large_gw" VmHWM); rss_kb=$(status_kb "$large_gw" VmRSS)
  curl -fs "http://127.0.0.1:$GW_PORT/metrics" | grep '^gateway_cache_bytes' >"$work/stores.txt" || true
  cache_gauge=$(awk '{ n += $2 } END { printf "%.0f", n }' "$work/stores.txt")
  stores=$(awk '{ match($1, /store="[a-z]+"/); printf "%s%s %.1f MiB", sep, substr($1, RSTART + 7, RLENGTH - 8), $2 / 1048576; sep = ", " }' "$work/stores.txt")
  stop "$large_gw"; stop "$large_sb"
  walk_ms_med=$(awk '{ print $1 }' "$walk" | median); walk_ms_max=$(awk '{ print $1 }' "$walk" | sort -n | tail -1)
  walk_calls=$(awk '{ n += $2 } END { print n + 0 }' "$walk"); walk_cpu=$(awk '{ print $3 }' "$walk" | median)
  email_walk_ms=$(awk '{ print $1 }' "$email_walk" | median); email_walk_calls=$(awk '{ n += $2 } END { print n + 0 }' "$email_walk")
  mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
  echo
  echo "## 3. A tenant larger than the cache"
  echo
  echo "$LARGE_TI_USERS TI users ($LARGE_TI_PAGE_SIZE a page, a TI page is $(mib "$ti_page_bytes") of JSON: $((ti_page_bytes / LARGE_TI_PAGE_SIZE)) bytes a user), $LARGE_TIS_USERS TIS users (50 a page); default settings (cache bound $(mib "$cache_bound"), TTL 60 s); no upstream latency. One curl per request, in this order."
  echo
  echo "| request | time | upstream calls | gateway CPU |"
  echo "|---|---|---|---|"
  echo "| plain page 1, cold | $plain_cold_ms ms | $plain_cold_calls | |"
  echo "| plain page 1, cached (median of 15) | $(ms_of "$plain_ms") ms | 0 | |"
  echo "| sort=last_name, page 1 | $sort_ms ms | $sort_calls | $sort_cpu ms |"
  echo "| email=$LARGE_EMAIL, page 1 | $email_ms ms | $email_calls | $email_cpu ms |"
  echo "| sort=last_name, pages 2..$((LARGE_WALK_PAGES + 1)) | median $walk_ms_med ms, max $walk_ms_max ms a page ($walk_secs s in all) | $walk_calls ($(awk -v n="$walk_calls" -v p="$LARGE_WALK_PAGES" 'BEGIN { printf "%.1f", n / p }') a page) | median $walk_cpu ms a page |"
  [ "$email_pages" -lt 2 ] || echo "| email=$LARGE_EMAIL, pages 2..$email_pages ($email_total users match) | median $email_walk_ms ms a page | $email_walk_calls | |"
  echo "| sort=last_name, page 1 again | $sort_again_ms ms | $sort_again_calls | |"
  echo
  echo "Gateway memory at the end: peak RSS (VmHWM) $(mib $((hwm_kb * 1024))), RSS $(mib $((rss_kb * 1024))), gateway_cache_bytes $(mib "${cache_gauge:-0}") in all ($stores); the issue's target is at most 1.3 × the bound + 32 MiB = $(mib $((cache_bound * 13 / 10 + 33554432))). The sandbox runs in its own process and is not counted."
  printf 'large\tsummary\t-\t-\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sort_ms" "$sort_calls" "$email_ms" "$email_calls" "$walk_ms_med" "$walk_calls" "$hwm_kb" >>"$results"
fi

echo
echo "Load average after: $(cut -d' ' -f1-3 /proc/loadavg). Raw figures: $results; wrk's output: $out_dir/wrk.log."
