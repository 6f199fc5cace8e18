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


def proc_state(pid: int) -> str:
    """The state letter of a process in /proc (R, S, Z...), or "gone"."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def alive(pid: int) -> bool:
    return proc_state(pid) not in ("gone", "Z", "X")


def run_cli(*args, input=None, env=None):
    """Run the htmap command in this process (click's test runner); stderr kept apart."""
    from click.testing import CliRunner

    from htmap.cli import cli

    try:
        runner = CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        runner = CliRunner()
    return runner.invoke(cli, [str(a) for a in args], input=input, env=env)
