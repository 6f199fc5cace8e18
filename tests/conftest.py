"""Every test gets its own HOME and HTMAP_DIR, and fresh settings, so tests never share maps."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import htmap
from htmap import settings as settings_module


def wait_until(condition, timeout: float = 30.0, interval: float = 0.02, message: str = "condition"):
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def supervisor_pids(htmap_dir: Path):
    """PIDs of local-engine supervisors serving ``htmap_dir`` (from the process table)."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    pids = []
    for line in out.splitlines()[1:]:
        pid, _, args = line.strip().partition(" ")
        if "htmap.engines.local.supervisor" in args and str(htmap_dir) in args.split():
            pids.append(int(pid))
    return pids


@pytest.fixture(autouse=True)
def isolated_htmap(tmp_path, monkeypatch):
    """A private HOME and HTMAP_DIR; stops this test's local supervisor afterwards."""
    home = tmp_path / "home"
    home.mkdir()
    htmap_dir = tmp_path / "htmap"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HTMAP_DIR", str(htmap_dir))
    monkeypatch.delenv("HTMAPRC", raising=False)
    for name in list(os.environ):
        if name.startswith("HTMAP_") and name != "HTMAP_DIR":
            monkeypatch.delenv(name)
    settings_module.reset_for_tests()
    htmap.settings["HTMAP_DIR"] = str(htmap_dir)
    htmap.settings["ENGINE"] = os.environ.get("HTMAP_TEST_ENGINE", "local")
    htmap.settings["LOCAL.IDLE_EXIT_SECONDS"] = 2
    yield htmap_dir
    for pid in supervisor_pids(htmap_dir):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
