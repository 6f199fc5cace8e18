"""Component statuses and the compact, persisted fold of engine events.

State is arrays indexed by component (not an object per component), folded
incrementally from the engine's events and saved so a new process need not replay.
"""
from __future__ import annotations

import dataclasses
import enum
import pickle
import zlib
from array import array
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from . import store
from .engines.base import ComponentEvent, EventKind


class ComponentStatus(str, enum.Enum):
    """The status of a map component.

    A ``str`` enum: ``ComponentStatus.RUNNING == "RUNNING"``.

    Attributes
    ----------
    UNKNOWN
        Nothing is known yet (for example, just after submission).
    UNMATERIALIZED
        Submitted, but the batch system has not made a job of it yet.
    IDLE
        Waiting to run.
    RUNNING
        Running.
    REMOVED
        Removed (``Map.remove(components=...)``); ``Map.rerun`` brings it back.
    COMPLETED
        Finished, with an output.
    HELD
        Stopped until released, by the user or because of a problem (the hold reason says which).
    SUSPENDED
        Paused while running.
    ERRORED
        Finished by raising an exception or failing; it has an error report.
    """
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
        """The statuses shown in status tables, in their display order.

        Returns
        -------
        tuple of ComponentStatus
            IDLE, RUNNING, HELD, SUSPENDED, COMPLETED, ERRORED, REMOVED.
        """
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
STATE_VERSION = 2
STATE_MAGIC = b"HTMAPSTATE1z\n"  # a zlib-compressed pickle follows
BULK_KINDS = frozenset((EventKind.HELD, EventKind.RELEASED, EventKind.EVICTED, EventKind.REMOVED,
                        EventKind.SUSPENDED, EventKind.UNSUSPENDED))
HistoryEntry = Tuple[float, str, str]  # (time, event kind, reason)


class Holds:
    """Each component's current hold (reason, code), as one small number per component.

    A dict would hold a million tuples after ``m.hold()`` of a million-component map; here
    distinct holds are stored once and components point at them."""

    def __init__(self, n: int):
        self.index = array("i", bytes(4 * n))  # 0: not held
        self.values: List[Tuple[str, Optional[int]]] = [("", None)]
        self.ids: Dict[Tuple[str, Optional[int]], int] = {}

    def _id(self, value: Tuple[str, Optional[int]]) -> int:
        i = self.ids.get(value)
        if i is None:
            i = self.ids[value] = len(self.values)
            self.values.append(value)
        return i

    def set(self, first: int, count: int, value: Tuple[str, Optional[int]]) -> None:
        self.index[first:first + count] = array("i", [self._id(value)]) * count

    def clear(self, first: int, count: int = 1) -> None:
        self.index[first:first + count] = array("i", bytes(4 * count))

    def get(self, c: int, default: Any = None) -> Any:
        i = self.index[c]
        return self.values[i] if i else default

    def __setitem__(self, c: int, value: Tuple[str, Optional[int]]) -> None:
        self.set(c, 1, value)

    def pop(self, c: int, default: Any = None) -> Any:
        value = self.get(c, default)
        self.index[c] = 0
        return value

    def items(self) -> Iterator[Tuple[int, Tuple[str, Optional[int]]]]:
        index, values = self.index, self.values
        return ((c, values[i]) for c, i in enumerate(index) if i)

    def __len__(self) -> int:
        return len(self.index) - self.index.count(0)


class History:
    """Each component's notable events (holds, evictions, errors...), oldest first.

    An event of many components at once (a hold of a whole map) is kept once, as a range."""

    def __init__(self) -> None:
        self.single: Dict[int, List[Tuple[int, HistoryEntry]]] = {}
        self.ranges: List[Tuple[int, int, int, HistoryEntry]] = []  # (first, count, seq, entry)
        self.seq = 0  # keeps the order of events that share a time

    def add(self, first: int, count: int, entry: HistoryEntry) -> None:
        self.seq += 1
        if count == 1:
            self.single.setdefault(first, []).append((self.seq, entry))
        else:
            self.ranges.append((first, count, self.seq, entry))

    def get(self, c: int, default: Any = None) -> Any:
        found = list(self.single.get(c, ()))
        found.extend((seq, entry) for first, count, seq, entry in self.ranges if first <= c < first + count)
        if not found:
            return default
        found.sort(key=lambda item: item[0])
        return [entry for _, entry in found]

    def __getitem__(self, c: int) -> List[HistoryEntry]:
        entries = self.get(c)
        if entries is None:
            raise KeyError(c)
        return entries

    def __contains__(self, c: object) -> bool:
        return self.get(c) is not None  # type: ignore[arg-type]


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
        self.holds = Holds(n)
        self.history = History()
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
            if kind is EventKind.SUBMITTED:
                self.holds.clear(first, count)
            return
        if count > 1 and kind in BULK_KINDS and event.memory_mb is None:
            self._apply_range(first, count, kind, code, event)
            return
        for c in range(first, first + count):
            self._apply_one(c, kind, code, event)

    def apply_all(self, events: List[ComponentEvent]) -> None:
        """Fold events in order; runs of one event for consecutive components (an engine that
        reports a cluster-wide hold job by job) are folded as one range."""
        run: Optional[ComponentEvent] = None
        for event in events:
            if (run is not None and event.kind in BULK_KINDS and event.kind is run.kind
                    and event.component == run.component + run.count and event.count == 1
                    and (event.time, event.reason, event.code, event.memory_mb, event.runtime)
                    == (run.time, run.reason, run.code, run.memory_mb, run.runtime)):
                run = dataclasses.replace(run, count=run.count + 1)
                continue
            if run is not None:
                self.apply(run)
            run = event
        if run is not None:
            self.apply(run)

    def _apply_range(self, first: int, count: int, kind: EventKind, code: int, event: ComponentEvent) -> None:
        """One event of many components (hold, release, remove... of a whole map) in O(1) Python steps."""
        if kind is EventKind.HELD:
            self.holds.set(first, count, (event.reason or "", event.code))
        elif kind is EventKind.RELEASED:
            self.holds.clear(first, count)
        if kind in HISTORY_KINDS:
            self.history.add(first, count, (event.time, kind.value, event.reason or ""))
        self.status[first:first + count] = bytes([code]) * count

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
            self.history.add(c, 1, (t, kind.value, event.reason or ""))
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

    def all_in(self, statuses: Iterable[ComponentStatus], components: Optional[Sequence[int]] = None) -> bool:
        """Whether every component (or each of ``components``) has one of ``statuses``."""
        codes = bytes(CODE[s] for s in statuses)
        if components is None:
            return self.status.translate(None, codes) == b""
        return all(self.status[c] in codes for c in components)

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
        """Compressed: arrays of a million components are mostly zeros or alike (53 MB -> 0 to 11 MB),
        and the file may be rewritten every few seconds on AFS or NFS."""
        data = pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)
        store.write_bytes_atomic(path, STATE_MAGIC + zlib.compress(data, 1))

    @classmethod
    def load(cls, path: Path, num_components: int) -> "MapState":
        try:
            with open(path, "rb") as f:
                data = f.read()
            if data.startswith(STATE_MAGIC):
                data = zlib.decompress(data[len(STATE_MAGIC):])
            state = pickle.loads(data)
        except Exception:  # missing, or written by another htmap version: a cache, so fold again
            return cls(num_components)
        if getattr(state, "version", None) != STATE_VERSION or state.num_components != num_components:
            return cls(num_components)
        return state
