#!/usr/bin/env bash
# The slow installs of the callers' CI steps (ci/browser.sh, ci/typescript.sh), meant to run
# in the background while cargo builds, so those two scripts only start servers and test:
#   (Debian's chromium comes from ci/install-debian-packages.sh, with the other packages);
#   - `npm ci` in tests/browser, clients/typescript and ci/openapi-lint (the scripts then skip theirs: see
#     ci/lib/npm.sh).
# Needs no users-gateway binary. Prints how long each part took. Exits non-zero when an
# install failed, so the caller can report it before running the scripts, e.g. in .ci/run:
#
#   bash ci/install-callers-deps.sh >"$deps_log" 2>&1 & deps_pid=$!
#   ... cargo build / clippy / test / fuzz ...
#   wait "$deps_pid" || { cat "$deps_log"; exit 1; }; cat "$deps_log"
#   BINARY=target/debug/users-gateway bash ci/browser.sh
#   BINARY=target/debug/users-gateway bash ci/typescript.sh
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

source ci/lib/npm.sh
npm_log_dir="$(mktemp -d)"
trap 'rm -rf "$npm_log_dir"' EXIT
(npm_ci tests/browser >"$npm_log_dir/browser" 2>&1) & browser_pid=$!
(npm_ci clients/typescript >"$npm_log_dir/typescript" 2>&1) & ts_pid=$!
(npm_ci ci/openapi-lint >"$npm_log_dir/openapi-lint" 2>&1) & lint_pid=$!

status=0
for part in browser:$browser_pid typescript:$ts_pid openapi-lint:$lint_pid; do
    name=${part%%:*}
    pid=${part#*:}
    if ! wait "$pid"; then
        echo "npm ci ($name) failed:" >&2
        status=1
    fi
    cat "$npm_log_dir/$name"
done
echo "install-callers-deps: done in $((SECONDS - started))s (exit $status)"
exit "$status"
