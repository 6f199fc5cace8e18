"""Helpers shared by the tests: waiting on conditions with deadlines, finding processes."""
from __future__ import annotations

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
    """PIDs of local-engine supervisors serving ``htmap_dir`` (from /proc, full command lines)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"htmap.engines.local.supervisor" in args and str(htmap_dir).encode() in args:
            pids.append(int(entry.name))
    return pids
