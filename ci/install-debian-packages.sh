#!/usr/bin/env bash
# Debian packages the CI suites need, installed when missing, in one apt-get run (two would
# fight over the dpkg lock). Meant to run in the background while cargo builds; .ci/run
# waits for it before `cargo test`, whose replica tests start redis-server.
#   chromium       ci/browser.sh (Playwright's own browser download does not work here)
#   redis-server   tests/api/replicas.rs (GATEWAY_TEST_REQUIRE_REDIS=1 makes a skip fail)
# Prints how long it took; exits non-zero when an install failed.
set -euo pipefail
started=$SECONDS
# command → package
wanted=(chromium:chromium redis-server:redis-server)
missing=()
for entry in "${wanted[@]}"; do
    command=${entry%%:*}
    package=${entry#*:}
    if command -v "$command" >/dev/null 2>&1 || [ -x "/usr/bin/$command" ] || [ -x "/usr/sbin/$command" ]; then
        echo "$package: already installed"
    else
        missing+=("$package")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "installed ${missing[*]} in $((SECONDS - started))s"
fi
# The package starts a system redis-server on 6379; the tests start their own.
if [[ " ${missing[*]} " == *" redis-server "* ]]; then
    (systemctl stop redis-server 2>/dev/null || service redis-server stop 2>/dev/null || true) >/dev/null
fi
redis-server --version
echo "install-debian-packages: done in $((SECONDS - started))s"
