"""Running Slurm's command-line tools, and parsing what they print.

Everything here is stateless apart from a small cache of ``scontrol show config``.
All commands run with a timeout: a hung slurmctld must never hang htmap.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ... import exceptions

DEFAULT_TIMEOUT = 30.0


class SlurmError(exceptions.HTMapException):
    """A Slurm command failed; the message carries what it printed."""


class SlurmSubmitError(SlurmError):
    """``sbatch`` rejected a map's jobs; the message carries sbatch's own error."""


class SlurmPermissionError(SlurmError):
    """Slurm refused an operation for lack of privileges (e.g. suspend needs an operator)."""


def run(cmd: Sequence[str], timeout: float = DEFAULT_TIMEOUT, input: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run a Slurm command; ``SlurmError`` when it cannot be run or does not answer in time."""
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except FileNotFoundError:
        raise SlurmError(f"{cmd[0]} is not on PATH: is Slurm's client (slurm-client) installed here?") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{' '.join(cmd[:3])} ... did not answer within {timeout:.0f} s: "
                         "is slurmctld up? (scontrol ping)") from None


# ----------------------------------------------------------------------------- config

_CONFIG_CACHE: Dict[str, Tuple[float, Dict[str, str]]] = {}
CONFIG_TTL = 600.0


def show_config(timeout: float = 10.0) -> Dict[str, str]:
    """``scontrol show config`` as a dict, cached for ``CONFIG_TTL`` seconds per SLURM_CONF."""
    key = os.environ.get("SLURM_CONF", "")
    hit = _CONFIG_CACHE.get(key)
    if hit and time.time() - hit[0] < CONFIG_TTL:
        return hit[1]
    proc = run(["scontrol", "show", "config"], timeout=timeout)
    if proc.returncode != 0:
        raise SlurmError(f"scontrol show config failed: {proc.stderr.strip() or proc.stdout.strip()}")
    conf: Dict[str, str] = {}
    for line in proc.stdout.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() and " " not in name.strip():
            conf[name.strip()] = value.strip()
    _CONFIG_CACHE[key] = (time.time(), conf)
    return conf


def max_array_size() -> int:
    """The cluster's MaxArraySize: array indices must be below it."""
    value = show_config().get("MaxArraySize", "1001")
    try:
        return int(value)
    except ValueError:
        return 1001


# ----------------------------------------------------------------------------- array specs

def compress(indices: Iterable[int]) -> str:
    """Sorted unique indices as a Slurm range list: ``0-3,7,9-10``."""
    out: List[str] = []
    start = prev = None
    for i in sorted(set(indices)):
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            out.append(f"{start}-{prev}" if prev != start else str(start))
            start = prev = i
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else str(start))
    return ",".join(out)


def expand(spec: str) -> List[range]:
    """A range list (``0-3,7``) as Python ranges."""
    out: List[range] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            out.append(range(int(a), int(b) + 1))
        else:
            out.append(range(int(part), int(part) + 1))
    return out


def plan_arrays(components: Sequence[int], max_size: int, max_ranges: int = 500) -> List[Tuple[int, str, int]]:
    """Split components into arrays Slurm accepts: (offset, index spec, count).

    Each array's indices are ``component - offset`` and stay below ``max_size``
    (Slurm's MaxArraySize caps the index, not just the count); the number of
    ranges per array is capped so the ``--array`` argument stays short.
    """
    comps = sorted(set(int(c) for c in components))
    plans: List[Tuple[int, str, int]] = []
    chunk: List[int] = []
    ranges = 0
    for c in comps:
        if chunk and (c - chunk[0] >= max_size or (c != chunk[-1] + 1 and ranges >= max_ranges)):
            plans.append(_plan(chunk))
            chunk, ranges = [], 0
        if not chunk or c != chunk[-1] + 1:
            ranges += 1
        chunk.append(c)
    if chunk:
        plans.append(_plan(chunk))
    return plans


def plan_chunks(components: Sequence[int], max_size: int, max_ranges: int = 500) -> List[Tuple[int, str, List[int]]]:
    """Like ``plan_arrays`` but with each array's components: (offset, index spec, components)."""
    comps = sorted(set(int(c) for c in components))
    out: List[Tuple[int, str, List[int]]] = []
    pos = 0
    for offset, spec, count in plan_arrays(comps, max_size, max_ranges):
        chunk = comps[pos:pos + count]
        pos += count
        out.append((offset, spec, chunk))
    return out


def _plan(chunk: List[int]) -> Tuple[int, str, int]:
    offset = chunk[0]
    return offset, compress(c - offset for c in chunk), len(chunk)


# ----------------------------------------------------------------------------- squeue

SQUEUE_FIELDS = ("JobID", "ArrayJobID", "ArrayTaskID", "State", "Reason", "exit_code", "RestartCnt",
                 "TimeLimit", "MinMemory", "StartTime")
SQUEUE_FORMAT = ",".join(f"{f}:|" for f in SQUEUE_FIELDS)


@dataclass(frozen=True)
class TaskState:
    job_id: str
    array_id: str
    task: int
    state: str
    reason: str
    exit_status: int  # raw wait status: >> 8 is the exit code, & 0x7f the signal
    restarts: int
    time_limit: str
    min_memory: str
    start: str = ""


def squeue(array_ids: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> Optional[List[TaskState]]:
    """One ``squeue -t all -r`` call for these arrays: a row per task Slurm still knows.

    None when squeue failed for a reason other than "every id is unknown" (then the
    caller must not conclude anything); an empty list when Slurm knows none of them.
    """
    if not array_ids:
        return []
    proc = run(["squeue", "-h", "-t", "all", "-r", "-j", ",".join(array_ids), "-O", SQUEUE_FORMAT], timeout=timeout)
    if proc.returncode != 0:
        if "Invalid job id" in proc.stderr:
            return []
        return None
    return parse_squeue(proc.stdout)


def parse_squeue(text: str) -> List[TaskState]:
    rows = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < len(SQUEUE_FIELDS):
            continue
        job_id, array_id, task, state, reason, exit_status, restarts, limit, mem, start = parts[: len(SQUEUE_FIELDS)]
        if not task.isdigit():
            continue  # not an array task (someone else's job, or a meta record)
        rows.append(TaskState(job_id, array_id, int(task), state.split()[0] if state else "", reason,
                              _int(exit_status), _int(restarts), limit, mem, start))
    return rows


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


# ----------------------------------------------------------------------------- sacct

_SACCT_OK: Dict[str, bool] = {}


def sacct_available(timeout: float = 5.0) -> bool:
    """Whether this cluster keeps accounting (``sacct`` answers); probed once per SLURM_CONF."""
    key = os.environ.get("SLURM_CONF", "")
    if key not in _SACCT_OK:
        ok = shutil.which("sacct") is not None
        if ok:
            try:
                ok = run(["sacct", "-n", "-X", "-j", "1", "-o", "JobID"], timeout=timeout).returncode == 0
            except SlurmError:
                ok = False
        _SACCT_OK[key] = ok
    return _SACCT_OK[key]


def sacct(array_ids: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> List[TaskState]:
    """Final states of array tasks that squeue no longer shows (purged after MinJobAge)."""
    if not array_ids:
        return []
    proc = run(["sacct", "-n", "-P", "-X", "-j", ",".join(array_ids), "-o",
                "JobID,JobIDRaw,State,ExitCode,ReqMem,Start"], timeout=timeout)
    if proc.returncode != 0:
        return []
    rows = []
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) < 6:
            continue
        jobid, raw, state, exit_code, mem, start = parts[:6]
        array_id, sep, task = jobid.partition("_")
        if not sep or not task.isdigit():
            continue
        code, _, sig = exit_code.partition(":")
        status = (_int(code) << 8) | (_int(sig) & 0x7F)
        rows.append(TaskState(raw, array_id, int(task), state.split()[0] if state else "", "sacct", status, 0, "",
                              mem.rstrip("n").rstrip("c"), start))
    return rows


# ----------------------------------------------------------------------------- formatting

def format_time(seconds: int) -> str:
    """Seconds as Slurm's ``minutes:seconds`` (Slurm rounds up to whole minutes)."""
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


def parse_time(text: str) -> Optional[int]:
    """Slurm's ``[days-]hours:minutes:seconds`` (or ``minutes:seconds``) in seconds."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        return None
    days, a, b, c = m.groups()
    nums = [int(x) for x in (a, b, c) if x is not None]
    if days is not None:  # days-hours[:minutes[:seconds]]
        h, mi, s = (nums + [0, 0])[:3]
        return int(days) * 86400 + h * 3600 + mi * 60 + s
    if len(nums) == 3:
        return nums[0] * 3600 + nums[1] * 60 + nums[2]
    if len(nums) == 2:
        return nums[0] * 60 + nums[1]
    return nums[0] * 60


def memory_mb(text: str) -> Optional[int]:
    """squeue's MinMemory (``100M``, ``2G``) in MB."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", text.strip())
    if not m:
        return None
    value, unit = float(m.group(1)), m.group(2) or "M"
    return int(value * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[unit])


def sbatch_available(timeout: float = 5.0) -> Tuple[bool, str]:
    if shutil.which("sbatch") is None:
        return False, "sbatch is not on PATH"
    try:
        proc = run(["sinfo", "-h", "-o", "%P %a %D %T"], timeout=timeout)
    except SlurmError as e:
        return False, str(e)
    if proc.returncode != 0:
        return False, f"sinfo failed: {(proc.stderr or proc.stdout).strip()[:300]}"
    parts = ", ".join(line.strip() for line in proc.stdout.splitlines()[:3])
    return True, f"sbatch is on PATH and sinfo answered ({parts or 'no partitions'})"
