#!/usr/bin/env bash
# Swagger UI in a real browser (tests/browser/swagger-ui.mjs, playwright-core driving
# Debian's chromium): Try it out on GET /users (filter, sort, fields) and GET /users/{id}
# against `users-gateway --demo`, then 401 and the Authorize dialog against a second
# gateway with GATEWAY_API_KEYS. Screenshots: $SCREENSHOT_DIR (default target/browser):
# <step>.png of a failing step, success.png of the final state.
#
# Environment:
#   BINARY          users-gateway binary to test (default: build the debug binary)
#   CHROMIUM        the browser (default: `which chromium`; ci/install-callers-deps.sh installs it)
#   SCREENSHOT_DIR  where the screenshots go
# Fast by design: at most one `npm ci` (none when ci/install-callers-deps.sh already ran it
# for this lockfile), no browser download.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

export CHROMIUM="${CHROMIUM:-$(command -v chromium || true)}"
[[ -n "$CHROMIUM" ]] || { echo "browser: chromium is not installed (run ci/install-callers-deps.sh)" >&2; exit 1; }
export SCREENSHOT_DIR="${SCREENSHOT_DIR:-$PWD/target/browser}"
mkdir -p "$SCREENSHOT_DIR"
rm -f "$SCREENSHOT_DIR"/*.png

source ci/lib/npm.sh
source ci/lib/servers.sh
resolve_binary browser
trap stop_servers EXIT

# The dependencies (skipped when ci/install-callers-deps.sh installed this lockfile already).
npm_ci tests/browser

start_gateway demo
open_url="$gateway_url"
auth_key="browser-test-key-$RANDOM$RANDOM"
start_gateway demo-auth "GATEWAY_API_KEYS=$auth_key"
auth_url="$gateway_url"

status=0
GATEWAY_URL="$open_url" AUTH_GATEWAY_URL="$auth_url" AUTH_KEY="$auth_key" \
    node tests/browser/swagger-ui.mjs || status=$?
if [[ $status -ne 0 ]]; then
    server_logs
    echo "browser: FAILED (exit $status) after $((SECONDS - started))s; screenshots in $SCREENSHOT_DIR" >&2
    exit "$status"
fi
echo "browser: passed in $((SECONDS - started))s; screenshots in $SCREENSHOT_DIR"
