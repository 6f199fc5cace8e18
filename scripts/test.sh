#!/usr/bin/env bash
# The README's test command: install what the tests need, start the Slurm test cluster and the
# live HTCondor pool where this machine allows it, and run the whole suite. Extra arguments go
# to pytest (every run of it).
#
#   1. the suite as the calling user (root in CI): local engine, recorded HTCondor fixtures,
#      Slurm (tests/slurm), docs;
#   2. where the HTCondor pool started (root, ../shared/htcondor/pool.sh present): as the pool's
#      unprivileged user (HTCondor never runs root's jobs) tests/live_htcondor, then the core
#      tests again with HTMAP_TEST_ENGINE=htcondor (CORE_ON_HTCONDOR below).
# Where a cluster cannot start, its tests are skipped with a message and the rest still runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# the core tests that hold on HTCondor today (test_control still assumes the local engine in
# places; its HTCondor behaviours are in tests/live_htcondor)
CORE_ON_HTCONDOR=(tests/test_mapping.py tests/test_map_api.py tests/test_files.py tests/test_errors.py)

# an older install under the name htmap (HTMap 0.6 from PyPI, or this project before it was
# renamed) would shadow this checkout
python3 -m pip uninstall --quiet --yes htmap >/dev/null 2>&1 || true
# docs: tests/test_docs.py builds the documentation as scripts/build-docs.sh does (warnings fail)
python3 -m pip install --quiet --disable-pip-version-check -e '.[test,htcondor,plot,docs]'

# The Slurm tests need the project's single-node cluster; without root or apt they are
# skipped (tests/slurm/conftest.py says why) and everything else still runs.
slurm_status=0
bash scripts/slurm-cluster.sh start || slurm_status=$?
if [ "$slurm_status" -eq 0 ]; then
    eval "$(bash scripts/slurm-cluster.sh env)"
else
    echo "[test.sh] Slurm test cluster not started (exit $slurm_status); Slurm tests will be skipped" >&2
fi

pool_status=0
bash scripts/htcondor-pool.sh start || pool_status=$?
if [ "$pool_status" -ne 0 ]; then
    echo "[test.sh] HTCondor test pool not started (exit $pool_status); live HTCondor tests will be skipped" >&2
fi

status=0
python3 -m pytest "$@" || status=$?
if [ "$pool_status" -eq 0 ]; then
    echo "[test.sh] live HTCondor pool: tests/live_htcondor as the pool's user" >&2
    bash scripts/htcondor-pool.sh test "$@" || status=$?
    echo "[test.sh] live HTCondor pool: core tests with HTMAP_TEST_ENGINE=htcondor" >&2
    bash scripts/htcondor-pool.sh test-core "$@" "${CORE_ON_HTCONDOR[@]}" || status=$?
fi
exit "$status"
