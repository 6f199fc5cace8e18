"""Files and sockets shared by the local engine's client side and its supervisor.

Everything is a file published by rename: ``queue/`` holds run requests,
``active/`` the jobs the supervisor is responsible for, ``control/`` actions. A
socket only wakes the supervisor up; losing a wake-up loses nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ... import store
from ..base import ComponentEvent, EventKind

EVENTS_FILE = "events"


class LocalPaths:
    def __init__(self, htmap_dir: Path):
        self.root = Path(htmap_dir) / "local"
        self.queue = self.root / "queue"
        self.active = self.root / "active"
        self.control = self.root / "control"
        self.log = self.root / "supervisor.log"
        # removed when a supervisor exits normally, so only kill -9 (or a crash of the machine) leaves it
        self.pid = self.root / f"supervisor-{socket.gethostname()}.pid"

    def make(self) -> "LocalPaths":
        for d in (self.queue, self.active, self.control):
            store.make_dir(d)
        return self


def hostname() -> str:
    return socket.gethostname()


def socket_address(htmap_dir: Path):
    """One supervisor per HTMAP_DIR and host: an abstract socket on Linux, a file elsewhere."""
    key = hashlib.sha256(f"{os.path.realpath(htmap_dir)}\0{hostname()}\0{os.getuid()}".encode()).hexdigest()[:32]
    if sys.platform.startswith("linux"):
        return f"\0htmap-local-{key}"
    return os.path.join(tempfile.gettempdir(), f"htmap-local-{key}.sock")


def peer_ids(s: socket.socket) -> Optional[Tuple[int, int]]:
    """(pid, uid) of the process at the other end of a connected Unix socket (Linux), else None."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    pid, uid, _gid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return pid, uid


def check_peer(s: socket.socket, address: str) -> None:
    """The name is predictable: fail loudly if another user's process took it first."""
    from ... import exceptions

    ids = peer_ids(s)
    if ids is not None and ids[1] != os.getuid():
        raise exceptions.SupervisorSocketTaken(
            f"the local engine's socket {address.lstrip(chr(0))!r} is held by another user's process (uid {ids[1]}, "
            f"pid {ids[0]}), so htmap's supervisor cannot listen on it and your maps would never run; ask the "
            "machine's administrator to stop that process, or set HTMAP_DIR to another directory (the socket "
            "name follows from it)"
        )


def wake(htmap_dir: Path) -> bool:
    """Poke the supervisor; False if none is listening; SupervisorSocketTaken if another user listens."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    address = socket_address(htmap_dir)
    try:
        try:
            s.connect(address)
        except OSError:
            return False
        check_peer(s, address)
        try:
            s.sendall(b"w")
        except OSError:
            return False
        return True
    finally:
        s.close()


def write_request(directory: Path, prefix: str, payload: Dict[str, Any]) -> Path:
    name = f"{prefix}.{time.time_ns():020d}.{secrets.token_hex(3)}.json"
    path = directory / name
    store.write_text_atomic(path, json.dumps(payload))
    return path


def read_json(path: Path) -> Optional[Dict[str, Any]]:
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def list_requests(directory: Path) -> List[Path]:
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".json") and not n.startswith("."))
    except FileNotFoundError:
        return []
    return [directory / n for n in names]


# -- the per-job event log ------------------------------------------------------
# One line per event: "<time> <first>[+<count>] <kind> <json extra or ->".


def format_event(t: float, component: int, kind: str, extra: Optional[Dict[str, Any]] = None, count: int = 1) -> str:
    comp = f"{component}+{count}" if count > 1 else str(component)
    return f"{t:.3f} {comp} {kind} {json.dumps(extra, separators=(',', ':')) if extra else '-'}\n"


KINDS = frozenset(k.value for k in EventKind)


def parse_events(data: bytes, skipped: Optional[List[str]] = None) -> Iterator[Tuple[float, int, int, str, Dict[str, Any]]]:
    """(time, first, count, kind, extra) for each complete line; a line that is not an event (garbled,
    or never written by this version) is skipped, and added to ``skipped`` if given."""
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            t, comp, kind, extra = line.split(" ", 3)
            first, _, count = comp.partition("+")
            parsed = float(t), int(first), int(count or 1), kind, (json.loads(extra) if extra != "-" else {})
            if kind not in KINDS or parsed[1] < 0 or parsed[2] < 1 or not isinstance(parsed[4], dict):
                raise ValueError(kind)
        except ValueError:
            if skipped is not None and line.strip():
                skipped.append(line)
            continue
        yield parsed


def to_component_event(t: float, first: int, count: int, kind: str, extra: Dict[str, Any]) -> ComponentEvent:
    return ComponentEvent(component=first, kind=EventKind(kind), time=t, count=count,
                          reason=extra.get("reason"), code=extra.get("code"),
                          memory_mb=extra.get("memory_mb"), runtime=extra.get("runtime"))


def read_new(path: Path, offset: int) -> Tuple[bytes, int]:
    """Complete lines appended since ``offset``; re-opened each time (NFS/AFS safe)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return b"", offset
    end = data.rfind(b"\n") + 1
    return data[:end], offset + end
