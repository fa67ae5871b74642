#!/usr/bin/env bash
# Lints the committed openapi/openapi.json with @redocly/cli (pinned in ci/openapi-lint/
# package-lock.json), every rule of `recommended-strict` on (redocly.yaml): run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/lib/npm.sh
npm_ci ci/openapi-lint
# REDOCLY_SUPPRESS_UPDATE_NOTICE / REDOCLY_TELEMETRY: no network call, no banner.
REDOCLY_SUPPRESS_UPDATE_NOTICE=true REDOCLY_TELEMETRY=off \
    ci/openapi-lint/node_modules/.bin/redocly lint --config redocly.yaml --format stylish openapi/openapi.json
