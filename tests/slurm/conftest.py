"""The Slurm tests run against the project's single-node Slurm (scripts/slurm-cluster.sh start).

When Slurm is not there (no sbatch, cluster not started, not root so it could not be
started) every test here is skipped with a message that says why, and the rest of the
suite still runs.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

import htmap
from htmap.engines.slurm import commands

_STATUS = {}


def slurm_status():
    """(ok, why), probed once per session."""
    if "value" not in _STATUS:
        if shutil.which("sbatch") is None:
            why = ("Slurm is not installed here (no sbatch on PATH); start the test cluster with "
                   "'sudo scripts/slurm-cluster.sh start' (Debian, root) to run the Slurm tests")
            _STATUS["value"] = (False, why)
        else:
            ok, why = commands.sbatch_available(timeout=10)
            if not ok:
                why = (f"the Slurm test cluster is not running ({why}); start it with "
                       "'sudo scripts/slurm-cluster.sh start'")
            _STATUS["value"] = (ok, why)
    return _STATUS["value"]


def pytest_collection_modifyitems(config, items):
    ok, why = None, None
    for item in items:
        if "slurm" in item.keywords and str(item.fspath).find("tests/slurm") >= 0:
            if ok is None:
                ok, why = slurm_status()
            if not ok:
                item.add_marker(pytest.mark.skip(reason=why))


def cluster_config():
    proc = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=10)
    conf = {}
    for line in proc.stdout.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            conf[k.strip()] = v.strip()
    return conf


@pytest.fixture
def slurm(isolated_htmap):
    """Run this test's maps on the slurm engine; cancel whatever they left in the queue."""
    htmap.settings["ENGINE"] = "slurm"
    htmap.settings["SLURM.POLL_INTERVAL"] = 0.3
    yield isolated_htmap
    # nothing a test submitted may outlive it
    for tag in htmap.get_tags() if hasattr(htmap, "get_tags") else []:
        try:
            htmap.load(tag).remove(force=True)
        except Exception:
            pass


@pytest.fixture(scope="session")
def timelimit_map(tmp_path_factory):
    """A map whose component 0 runs into its 1-minute time limit, started once, early.

    Slurm's smallest time limit is a minute (checked every 30 s), so this map is submitted
    by the first Slurm test and checked by the last: its minute overlaps the other tests.
    """
    ok, why = slurm_status()
    if not ok:
        pytest.skip(why)
    from htmap.settings import reset_for_tests
    from . import funcs

    htmap_dir = tmp_path_factory.mktemp("timelimit") / "htmap"
    reset_for_tests()
    htmap.settings["HTMAP_DIR"] = str(htmap_dir)
    htmap.settings["ENGINE"] = "slurm"
    m = htmap.map(funcs.sleep_for, [600, 0], tag="slow",
                  map_options=htmap.MapOptions(max_runtime=["1m", "1m"]))
    yield m, htmap_dir
    htmap.settings["HTMAP_DIR"] = str(htmap_dir)
    try:
        m.remove(force=True)
    except Exception:
        pass
