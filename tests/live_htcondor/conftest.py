"""Tests against the live HTCondor pool (scripts/htcondor-pool.sh start; run with its ``test``).

They run as the pool's unprivileged user (HTCondor never runs root's jobs), with
``HTMAP_LIVE_POOL=1`` and the pool's ``CONDOR_CONFIG``; anywhere else they are skipped with a
message saying how to run them.
"""
from __future__ import annotations

import os
import subprocess
from typing import Dict, List, Sequence

import pytest

import htmap


WHY_SKIPPED = ("the live HTCondor tests run as the pool's user: start the pool with "
               "'sudo bash scripts/htcondor-pool.sh start', then 'sudo bash scripts/htcondor-pool.sh test'")


def live_pool_ready() -> bool:
    return os.environ.get("HTMAP_LIVE_POOL") == "1" and os.getuid() != 0 and bool(os.environ.get("CONDOR_CONFIG"))


def pytest_collection_modifyitems(config, items):
    if live_pool_ready():
        return  # (tests/conftest.py ships the tests' functions to the pool by value)
    for item in items:
        if "live_htcondor" in str(item.fspath):
            item.add_marker(pytest.mark.skip(reason=WHY_SKIPPED))


@pytest.fixture(autouse=True)
def on_the_pool(isolated_htmap):
    """Every map of these tests goes to HTCondor; nothing a test submitted outlives it."""
    htmap.settings["ENGINE"] = "htcondor"
    yield isolated_htmap
    for tag in htmap.get_tags():
        try:
            htmap.load(tag).remove(force=True)
        except Exception:
            pass


def condor(*args: str, check: bool = True) -> str:
    """Run an HTCondor command line tool; its stdout."""
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def job_ads(m: htmap.Map, attrs: Sequence[str]) -> List[Dict[str, object]]:
    """The queued jobs of a map, as dicts of ``attrs`` (ordered by component)."""
    import htcondor2

    ads = htcondor2.Schedd().query(f'HTMapJobId == "{m.uid}"',
                                   ["component", *attrs])
    return sorted(({k: ad.get(k) for k in ["component", *attrs]} for ad in ads),
                  key=lambda a: int(a["component"]))


def wait_for(m: htmap.Map, condition, timeout: float = 120, message: str = "condition"):
    """``wait_until`` that fails at once, with the report, if a component of ``m`` errs or is held."""
    from tests.helpers import wait_until

    def check():
        statuses = set(m.component_statuses)
        if statuses & {htmap.ComponentStatus.ERRORED, htmap.ComponentStatus.HELD}:
            m.wait(timeout=0)  # raises MapComponentError / MapComponentHeld with the reason
        return condition()

    return wait_until(check, timeout=timeout, interval=0.1, message=message)
