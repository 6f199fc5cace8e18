"""htmap tried as an adversary would (issue 12): kill -9, damaged files, hostile local users, odd settings."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import htmap
from htmap import ComponentStatus
from tests import funcs
from tests.helpers import run_cli, supervisor_pids, wait_until

T = 60
REPO = Path(__file__).parent.parent


def run_python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=T, **kwargs)


def runs_per_component(markers: Path) -> dict:
    counts: dict = {}
    for name in os.listdir(markers):
        if name.startswith("run-"):
            c = int(name.split("-")[1])
            counts[c] = counts.get(c, 0) + 1
    return counts


# -- 12.1 ------------------------------------------------------------------------------------

def test_after_a_supervisor_kill_each_running_component_runs_at_most_once_more(isolated_htmap, tmp_path):
    htmap.settings["LOCAL.MAX_WORKERS"] = 2
    markers, release = tmp_path / "markers", tmp_path / "go"
    markers.mkdir()
    n = 300  # enough pending components that the restarted supervisor sends them in chunks
    m = htmap.starmap(funcs.run_count_then_wait, args=[(str(markers), str(release), i) for i in range(n)],
                      tag="double")
    wait_until(lambda: len(runs_per_component(markers)) == 2, T, message="two components to start")
    running = set(runs_per_component(markers))
    (pid,) = supervisor_pids(isolated_htmap)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not supervisor_pids(isolated_htmap), T, message="the supervisor to die")
    release.touch()
    m.wait(timeout=T)
    counts = runs_per_component(markers)
    assert {c: k for c, k in counts.items() if c in running and k > 2} == {}, counts
    assert {c: k for c, k in counts.items() if c not in running and k != 1} == {}
    assert len(counts) == n
    assert list(m) == [10 * i for i in range(n)]
