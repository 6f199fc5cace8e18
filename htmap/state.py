"""Component statuses and the compact, persisted fold of engine events.

State is arrays indexed by component (not an object per component), folded
incrementally from the engine's events and saved so a new process need not replay.
"""
from __future__ import annotations

import enum
import pickle
from array import array
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from . import store
from .engines.base import ComponentEvent, EventKind


class ComponentStatus(str, enum.Enum):
    UNKNOWN = "UNKNOWN"
    UNMATERIALIZED = "UNMATERIALIZED"
    IDLE = "IDLE"
    RUNNING = "RUNNING"
    REMOVED = "REMOVED"
    COMPLETED = "COMPLETED"
    HELD = "HELD"
    SUSPENDED = "SUSPENDED"
    ERRORED = "ERRORED"

    @classmethod
    def display_statuses(cls) -> Tuple["ComponentStatus", ...]:
        return (cls.IDLE, cls.RUNNING, cls.HELD, cls.SUSPENDED, cls.COMPLETED, cls.ERRORED, cls.REMOVED)

    def __str__(self) -> str:
        return self.value


STATUSES = list(ComponentStatus)
CODE = {s: i for i, s in enumerate(STATUSES)}
FINISHED = frozenset((ComponentStatus.COMPLETED, ComponentStatus.ERRORED, ComponentStatus.REMOVED))
_FINISHED_CODES = bytes(sorted(CODE[s] for s in FINISHED))

_STATUS_FOR_EVENT = {
    EventKind.SUBMITTED: ComponentStatus.IDLE,
    EventKind.UNMATERIALIZED: ComponentStatus.UNMATERIALIZED,
    EventKind.RUNNING: ComponentStatus.RUNNING,
    EventKind.COMPLETED: ComponentStatus.COMPLETED,
    EventKind.ERRORED: ComponentStatus.ERRORED,
    EventKind.HELD: ComponentStatus.HELD,
    EventKind.RELEASED: ComponentStatus.IDLE,
    EventKind.EVICTED: ComponentStatus.IDLE,
    EventKind.SUSPENDED: ComponentStatus.SUSPENDED,
    EventKind.UNSUSPENDED: ComponentStatus.RUNNING,
    EventKind.REMOVED: ComponentStatus.REMOVED,
}
HISTORY_KINDS = frozenset((EventKind.HELD, EventKind.RELEASED, EventKind.EVICTED, EventKind.ERRORED,
                           EventKind.REMOVED, EventKind.SUSPENDED))
STATE_VERSION = 1


class MapState:
    """The folded state of one map."""

    def __init__(self, num_components: int):
        n = num_components
        self.num_components = n
        self.status = bytearray([CODE[ComponentStatus.UNKNOWN]]) * n
        self.memory_mb = array("l", bytes(8 * n))  # peak resident memory, MB
        self.runtime = array("d", bytes(8 * n))  # seconds of the last run
        self.queued_at = array("d", bytes(8 * n))
        self.started_at = array("d", bytes(8 * n))
        self.ended_at = array("d", bytes(8 * n))
        self.attempts = array("l", bytes(8 * n))
        self.holds: Dict[int, Tuple[str, Optional[int]]] = {}
        self.history: Dict[int, List[Tuple[float, str, str]]] = {}
        self.cursor: Any = None
        self.version = STATE_VERSION

    # -- folding ---------------------------------------------------------------
    def apply(self, event: ComponentEvent) -> None:
        first, count = event.component, event.count
        kind = event.kind
        if kind is EventKind.RESOURCES:
            if event.memory_mb is not None:
                for c in range(first, first + count):
                    if event.memory_mb > self.memory_mb[c]:
                        self.memory_mb[c] = event.memory_mb
            return
        code = CODE[_STATUS_FOR_EVENT[kind]]
        t = event.time
        if count > 1 and kind in (EventKind.SUBMITTED, EventKind.UNMATERIALIZED):
            self.status[first:first + count] = bytes([code]) * count
            self.queued_at[first:first + count] = array("d", [t]) * count
            return
        for c in range(first, first + count):
            self._apply_one(c, kind, code, event)

    def _apply_one(self, c: int, kind: EventKind, code: int, event: ComponentEvent) -> None:
        t = event.time
        if kind is EventKind.SUBMITTED:
            self.queued_at[c] = t
            self.holds.pop(c, None)
        elif kind is EventKind.RUNNING:
            self.started_at[c] = t
            self.attempts[c] += 1
        elif kind in (EventKind.COMPLETED, EventKind.ERRORED):
            self.ended_at[c] = t
            self.runtime[c] = event.runtime if event.runtime is not None else max(0.0, t - self.started_at[c])
            self.holds.pop(c, None)
        elif kind is EventKind.HELD:
            self.holds[c] = (event.reason or "", event.code)
        elif kind is EventKind.RELEASED:
            self.holds.pop(c, None)
        if event.memory_mb is not None and event.memory_mb > self.memory_mb[c]:
            self.memory_mb[c] = event.memory_mb
        if kind in HISTORY_KINDS:
            self.history.setdefault(c, []).append((t, kind.value, event.reason or ""))
        self.status[c] = code

    def reset(self, components) -> None:
        """Forget the last run of components that are about to run again."""
        for c in components:
            self.memory_mb[c] = 0
            self.runtime[c] = 0.0
            self.ended_at[c] = 0.0
            self.started_at[c] = 0.0
            self.status[c] = CODE[ComponentStatus.IDLE]  # resubmitted: no longer finished

    # -- queries ----------------------------------------------------------------
    def status_of(self, component: int) -> ComponentStatus:
        return STATUSES[self.status[component]]

    def counts(self) -> Dict[ComponentStatus, int]:
        return {s: self.status.count(CODE[s]) for s in STATUSES}

    def is_finished(self, component: int) -> bool:
        return self.status[component] in _FINISHED_CODES

    def all_finished(self) -> bool:
        return self.status.translate(None, _FINISHED_CODES) == b""

    def unfinished(self) -> List[int]:
        return [i for i, code in enumerate(self.status) if code not in _FINISHED_CODES]

    def with_status(self, status: ComponentStatus) -> List[int]:
        code = CODE[status]
        out, i = [], self.status.find(code)
        while i != -1:
            out.append(i)
            i = self.status.find(code, i + 1)
        return out

    # -- persistence ------------------------------------------------------------
    def save(self, path: Path) -> None:
        store.write_bytes_atomic(path, pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))

    @classmethod
    def load(cls, path: Path, num_components: int) -> "MapState":
        try:
            with open(path, "rb") as f:
                state = pickle.load(f)
        except (FileNotFoundError, EOFError, pickle.UnpicklingError):
            return cls(num_components)
        if getattr(state, "version", None) != STATE_VERSION or state.num_components != num_components:
            return cls(num_components)
        return state
