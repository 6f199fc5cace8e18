#!/usr/bin/env bash
# The README's test command: install what the tests need, start the Slurm test cluster
# where this machine allows it, and run the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

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

exec python3 -m pytest "$@"
