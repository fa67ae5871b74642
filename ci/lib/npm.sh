# Sourced by the callers' CI scripts: `npm_ci DIR` runs `npm ci` in DIR unless DIR's
# node_modules was installed by npm_ci from exactly the lockfile there now (a stamp holding
# the lockfile's sha256), so ci/install-callers-deps.sh can install ahead and the test
# scripts then skip it.
npm_ci() {
    local dir=$1 want have
    want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
    have="$(cat "$dir/node_modules/.ci-lock-sha256" 2>/dev/null || true)"
    if [[ "$want" == "$have" ]]; then
        echo "npm ci in $dir: already installed from this lockfile"
        return 0
    fi
    local t=$SECONDS
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$dir/node_modules/.ci-lock-sha256"
    echo "npm ci in $dir: $((SECONDS - t))s"
}
