#!/usr/bin/env bash
# The live HTCondor pool htmap's tests run against: ../shared/htcondor/pool.sh (HTCondor 25 on
# loopback), with a second schedd and a stand-in Kerberos credential monitor, plus what its
# unprivileged user needs to run htmap (HTCondor never runs root's jobs).
#
#   scripts/htcondor-pool.sh start            start the pool (root); build the pool user's Python
#   scripts/htcondor-pool.sh test [ARGS]      copy this checkout for the pool user and run
#                                             tests/live_htcondor there as that user (ARGS: pytest's)
#   scripts/htcondor-pool.sh test-core [ARGS] the core tests with HTMAP_TEST_ENGINE=htcondor
#   scripts/htcondor-pool.sh bench [ARGS]     benchmarks/htcondor_bench.py as the pool user
#   scripts/htcondor-pool.sh run CMD...       any command as the pool user, in the copy
#   scripts/htcondor-pool.sh env | stop
#
# Environment: HTMAP_HTCONDOR_POOL (path of pool.sh), HTMAP_LIVE_DIR (default /var/tmp/htmap-live:
# the copy of the checkout, the pool user's venv, HOME and temporary files), and pool.sh's own.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
POOL_SH=${HTMAP_HTCONDOR_POOL:-$REPO/../shared/htcondor/pool.sh}
export HTCONDOR_POOL_SCHEDDS=${HTCONDOR_POOL_SCHEDDS:-2}
export HTCONDOR_POOL_KERBEROS=${HTCONDOR_POOL_KERBEROS:-fake}
POOL_USER=${HTCONDOR_POOL_USER:-htcondor-test}
LIVE=${HTMAP_LIVE_DIR:-/var/tmp/htmap-live}
SYSTEM_PYTHON=/usr/bin/python3  # readable by the pool user; also the node's python3 ("assume")

log() { echo "[htcondor-pool] $*" >&2; }
die() { echo "[htcondor-pool] $*" >&2; exit "${2:-1}"; }

requirements() {  # htmap's runtime, test and htcondor requirements, one per line, from pyproject.toml
    "$SYSTEM_PYTHON" - "$REPO/pyproject.toml" <<'EOF'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras = project.get("optional-dependencies", {})
print("\n".join(project["dependencies"] + extras.get("test", []) + extras.get("htcondor", [])))
EOF
}

build_python() {
    # A venv of the system Python for the pool user (the developer's Python may live under /root,
    # which that user cannot read); rebuilt when pyproject.toml changes.
    local stamp; stamp=$(sha256sum "$REPO/pyproject.toml" | cut -c1-16)
    if [ "$(cat "$LIVE/venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
        log "building the pool user's Python in $LIVE/venv"
        rm -rf "$LIVE/venv"
        "$SYSTEM_PYTHON" -m venv "$LIVE/venv"
        mapfile -t reqs < <(requirements)
        "$LIVE/venv/bin/pip" install --quiet --disable-pip-version-check "${reqs[@]}"
        echo "$stamp" > "$LIVE/venv/.stamp"
    fi
    # "assume" runs the node's python3 (/usr/bin/python3): it needs cloudpickle, as at a site
    local want; want=$("$LIVE/venv/bin/python" -c 'import cloudpickle; print(cloudpickle.__version__)')
    if [ "$("$SYSTEM_PYTHON" -c 'import cloudpickle; print(cloudpickle.__version__)' 2>/dev/null)" != "$want" ]; then
        log "installing cloudpickle $want for the execute node's python3"
        "$SYSTEM_PYTHON" -m pip install --quiet --disable-pip-version-check --break-system-packages \
            "cloudpickle==$want"
    fi
}

copy_checkout() {
    mkdir -p "$LIVE"
    rm -rf "$LIVE/src.new"
    mkdir "$LIVE/src.new"
    tar -C "$REPO" --exclude=.git --exclude='*.pyc' --exclude=__pycache__ --exclude=.pytest_cache \
        --exclude=site -cf - . | tar -C "$LIVE/src.new" -xf -
    chmod -R a+rX "$LIVE/src.new"
    rm -rf "$LIVE/src"
    mv "$LIVE/src.new" "$LIVE/src"
    for d in home tmp; do
        mkdir -p "$LIVE/$d"
        chown "$POOL_USER" "$LIVE/$d"
        chmod 0700 "$LIVE/$d"
    done
}

pool_env() { bash "$POOL_SH" env | sed 's/^export //'; }

as_pool_user() {  # run a command as the pool user, in the copy, with the pool's environment
    [ "$(id -u)" -eq 0 ] || die "run as root (it switches to $POOL_USER)"
    build_python  # (again only when pyproject.toml changed)
    copy_checkout
    local condor_config path
    condor_config=$(pool_env | sed -n 's/^CONDOR_CONFIG=//p')
    path=$(bash -c "$(bash "$POOL_SH" env); echo \$PATH" | sed "s|^|$LIVE/venv/bin:|")
    cd "$LIVE/src"
    runuser -u "$POOL_USER" -- env -i HOME="$LIVE/home" USER="$POOL_USER" LANG=C.UTF-8 \
        PATH="$path" CONDOR_CONFIG="$condor_config" PYTHONPATH="$LIVE/src" TMPDIR="$LIVE/tmp" \
        HTMAP_LIVE_POOL=1 HTMAP_TEST_ENGINE="${HTMAP_TEST_ENGINE:-}" "$@"
}

pytest_as_pool_user() {
    local rc=0
    as_pool_user python -m pytest -p no:cacheprovider --basetemp="$LIVE/tmp/pytest" "$@" || rc=$?
    # 5: nothing collected (every live test deselected by the caller's arguments)
    [ "$rc" -eq 5 ] && rc=0
    return "$rc"
}

case "${1:-}" in
    start)
        [ "$(id -u)" -eq 0 ] || die "start needs root (pool.sh adds its user; HTCondor never runs root's jobs)" 2
        [ -f "$POOL_SH" ] || die "no HTCondor pool script at $POOL_SH" 3
        bash "$POOL_SH" start >/dev/null
        mkdir -p "$LIVE"
        chmod 0755 "$LIVE"
        build_python
        log "pool ready; run the live tests with: bash scripts/htcondor-pool.sh test"
        ;;
    test)
        shift
        paths=(tests/live_htcondor)
        for arg in "$@"; do [[ "$arg" == tests/* ]] && paths=(); done
        pytest_as_pool_user "${paths[@]}" "$@"
        ;;
    test-core)
        shift
        HTMAP_TEST_ENGINE=htcondor pytest_as_pool_user "$@"
        ;;
    bench)
        shift
        as_pool_user python benchmarks/htcondor_bench.py "$@"
        ;;
    run)
        shift
        as_pool_user "$@"
        ;;
    env)
        bash "$POOL_SH" env
        ;;
    stop)
        bash "$POOL_SH" stop
        ;;
    *)
        die "usage: $0 start|test|test-core|bench|run|env|stop" 2
        ;;
esac
