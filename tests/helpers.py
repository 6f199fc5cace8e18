"""Helpers shared by the tests: waiting on conditions with deadlines, finding processes."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path


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
