#!/usr/bin/env bash
# The typed TypeScript client (clients/typescript): the committed types are what
# openapi/openapi.json generates (stale types fail), `tsc --noEmit` under strict, the build,
# the export reader's unit tests, and the examples run against real gateways:
#   - page-all, export, fields against `users-gateway --demo` (1,980 users);
#   - partial against a gateway over `users-gateway sandbox --tis-fault 500`.
# Any failed assertion exits non-zero.
#
# Environment:
#   BINARY   users-gateway binary to test (default: build the debug binary)
# Fast by design: at most one `npm ci` (none when ci/install-callers-deps.sh already ran it
# for this lockfile).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS


# `section NAME`: prints how long the previous section took, then NAME.
section_start=$SECONDS
section_name=""
section() {
    [[ -n "$section_name" ]] && echo "   ($section_name: $((SECONDS - section_start))s)"
    section_name=$1
    section_start=$SECONDS
    [[ -n "$1" ]] && echo "== $1"
    return 0
}

source ci/lib/npm.sh
source ci/lib/servers.sh
resolve_binary typescript
trap stop_servers EXIT

client=clients/typescript
section "npm ci"
npm_ci "$client"
cd "$client"

section "npm run check-types (src/schema.d.ts == what openapi/openapi.json generates)"
npm run --silent check-types
section "tsc --noEmit (strict)"
npx --no-install tsc --noEmit
section "npm run build (incremental after the check)"
npm run --silent build
section "node --test (the export stream reader)"
node --test --test-reporter=dot dist/test/
cd - >/dev/null

section "start gateways"
start_gateway demo
demo_url="$gateway_url"
start_sandbox tis-500 --tis-fault 500
start_gateway partial "${sandbox_env[@]}" -- 
partial_url="$gateway_url"

failed=0
run_example() {
    local name=$1
    shift
    section "example $name"
    if ! (cd "$client" && env "$@" node "dist/examples/$name.js"); then
        failed=$((failed + 1))
    fi
}
run_example page-all GATEWAY_URL="$demo_url" EXPECT_TOTAL=1980
run_example export GATEWAY_URL="$demo_url" EXPECT_TOTAL=1980
run_example fields GATEWAY_URL="$demo_url"
run_example partial GATEWAY_URL="$partial_url" EXPECT_FAILED_SOURCE=tapintosafety EXPECT_ERROR_CODE=unavailable

section ""
if ((failed > 0)); then
    server_logs
    echo "typescript: $failed example(s) FAILED after $((SECONDS - started))s" >&2
    exit 1
fi
echo "typescript: passed in $((SECONDS - started))s"
