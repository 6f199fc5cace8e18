"""Reading a map's job event log incrementally, and folding it into component events.

The log is read with the real ``htcondor2.JobEventLog``, but never trusting cached file
state (AFS, HTCONDOR-463): each read opens the file afresh, reads the bytes after the
persisted byte offset, keeps only whole events (a writer, or a stale AFS read, may leave
the last one cut off: ``JobEventLog`` mis-parses a log cut mid-event when resumed from an
offset) and parses those. The cursor is a small picklable dict.

Components: ProcId N of a cluster is the Nth item of its item data, and the engine
records each cluster's components in ``clusters.json`` right after submitting. For a
cluster missing there (a crash between submit and record), the SUBMIT event's notes
(``submit_event_notes_attrs = component`` -> StructuredNotes on HTCondor >= 25.11; the
plain ``$(component)`` LogNotes before) say which component it is.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..base import ComponentEvent, EventKind

EVENT_END = b"\n...\n"


MAX_READ = 32 << 20  # bytes of log folded per read_events call (a huge map's log is read in steps)


def read_complete(path: str, offset: int) -> Tuple[bytes, int]:
    """The whole events after ``offset`` (up to ~MAX_READ bytes) and the offset just past them.

    Opens the file afresh each time: no cached size or mtime (AFS).
    """
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(MAX_READ)
            while len(data) >= MAX_READ and data.rfind(EVENT_END) < 0:  # one event bigger than a step
                more = f.read(MAX_READ)
                if not more:
                    break
                data += more
    except FileNotFoundError:
        return b"", offset
    end = data.rfind(EVENT_END)
    if end < 0:
        return b"", offset
    end += len(EVENT_END)
    return data[:end], offset + end


def parse_events(data: bytes, htcondor2) -> List[Any]:
    """Parse complete event text with the real ``htcondor2.JobEventLog``."""
    if not data:
        return []
    fd, tmp = tempfile.mkstemp(prefix="htmap-events-", suffix=".log")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        log = htcondor2.JobEventLog(tmp)
        try:
            return list(log.events(0))
        finally:
            log.close()
    finally:
        os.unlink(tmp)


def new_cursor() -> Dict[str, Any]:
    return {"offset": 0, "records": 0, "learned": {}, "late": []}


class Folder:
    """Turns parsed ``JobEvent``s into ``ComponentEvent``s.

    ``clusters`` maps ClusterId -> list of components (item order); ``output_kind(c)``
    says "OK", "ERR" or None for component c's output; ``failure(c, text)`` records an
    error report for a component that ended without output and returns the stderr tail.
    """

    def __init__(self, htcondor2, clusters: Dict[int, List[int]], cursor: Dict[str, Any],
                 output_kind: Callable[[int], Optional[str]], stderr_tail: Callable[[int], str],
                 record_failure: Callable[[int, str, str], None], max_retries: int = 0):
        self.T = htcondor2.JobEventType
        self.clusters = clusters
        self.cursor = cursor
        self.output_kind = output_kind
        self.stderr_tail = stderr_tail
        self.record_failure = record_failure
        self.max_retries = max_retries

    def component_of(self, event) -> Optional[int]:
        cluster, proc = event.cluster, event.proc
        if proc < 0:
            return None
        components = self.clusters.get(cluster)
        if components is not None and proc < len(components):
            return components[proc]
        learned = self.cursor["learned"].get(cluster, {})
        if proc in learned:
            return learned[proc]
        if event.type == self.T.SUBMIT:
            component = notes_component(event)
            if component is not None:
                self.cursor["learned"].setdefault(cluster, {})[proc] = component
            return component
        return None

    def fold(self, events) -> List[ComponentEvent]:
        out: List[ComponentEvent] = []
        T = self.T
        for event in events:
            etype = event.type
            if etype in (T.FACTORY_PAUSED, T.FACTORY_RESUMED):
                out.extend(self._factory(event, paused=etype == T.FACTORY_PAUSED))
                continue
            if etype in (T.CLUSTER_SUBMIT, T.CLUSTER_REMOVE):
                continue  # cluster-level (late materialization factory) events
            c = self.component_of(event)
            if c is None:
                continue
            t = float(event.timestamp)
            get = event.get
            if etype == T.SUBMIT:
                made = self.cursor.setdefault("made", {})
                made[event.cluster] = max(made.get(event.cluster, 0), event.proc + 1)
                out.append(ComponentEvent(c, EventKind.SUBMITTED, t))
            elif etype == T.EXECUTE:
                starts = self.cursor.setdefault("starts", {})
                starts[c] = starts.get(c, 0) + 1
                out.append(ComponentEvent(c, EventKind.RUNNING, t))
            elif etype == T.IMAGE_SIZE:
                mem = get("MemoryUsage")
                if mem is not None:
                    out.append(ComponentEvent(c, EventKind.RESOURCES, t, memory_mb=int(mem)))
            elif etype == T.JOB_TERMINATED:
                out.append(self._terminated(c, t, event))
            elif etype == T.JOB_HELD:
                code = get("HoldReasonCode")
                reason = str(get("HoldReason", "") or "held")
                if code is not None and int(code) != 1 and self.output_kind(c) is None:
                    # held by policy or by a failed transfer: what the job printed last helps
                    tail = self.stderr_tail(c)
                    if tail:
                        reason = f"{reason}\n--- end of stderr ---\n{tail}"
                code = int(code) if code is not None else None
                attempt = self.cursor.get("starts", {}).get(c, 0)
                if self._retried(code, get("HoldReasonSubCode")) and attempt <= self.max_retries:
                    # the retry policy releases it at once: a run that will be retried, not a hold
                    out.append(ComponentEvent(c, EventKind.EVICTED, t, code=code, reason=(
                        f"{reason}; htmap runs it again (retry {attempt} of {self.max_retries})")))
                else:
                    out.append(ComponentEvent(c, EventKind.HELD, t, reason=reason, code=code))
            elif etype == T.JOB_RELEASED:
                out.append(ComponentEvent(c, EventKind.RELEASED, t, reason=str(get("Reason", "") or "") or None))
            elif etype == T.JOB_EVICTED:
                if get("TerminatedAndRequeued"):
                    reason = (f"ran again by the retry policy (exit status {get('ReturnValue')}"
                              f"{', e.g. a retried exception' if get('ReturnValue') == 86 else ''})")
                else:
                    reason = str(get("Reason", "") or "evicted")
                code = get("ReasonCode")
                out.append(ComponentEvent(c, EventKind.EVICTED, t, reason=reason,
                                          code=int(code) if code is not None else None))
            elif etype == T.JOB_SUSPENDED:
                out.append(ComponentEvent(c, EventKind.SUSPENDED, t))
            elif etype == T.JOB_UNSUSPENDED:
                out.append(ComponentEvent(c, EventKind.UNSUSPENDED, t))
            elif etype == T.JOB_ABORTED:
                out.append(ComponentEvent(c, EventKind.REMOVED, t, reason=str(get("Reason", "") or "removed")))
            elif etype == T.SHADOW_EXCEPTION:
                out.append(ComponentEvent(c, EventKind.EVICTED, t,
                                          reason=f"shadow exception: {get('Message', '') or 'unknown'}"))
            elif etype == T.JOB_RECONNECT_FAILED:
                out.append(ComponentEvent(c, EventKind.EVICTED, t,
                                          reason=f"reconnect to the execute node failed: {get('Reason', '') or 'unknown'}"))
        return out

    @staticmethod
    def _retried(code: Optional[int], subcode: Any) -> bool:
        """Whether the retry policy (``description``: ``periodic_release``) releases this hold."""
        from .description import HOLD_MEMORY, HOLD_RUNNER_SIGNAL, HOLD_RUNTIME, HTCONDOR_OUT_OF_MEMORY

        return code == HTCONDOR_OUT_OF_MEMORY or (
            code == 3 and subcode is not None and int(subcode) in (HOLD_MEMORY, HOLD_RUNTIME, HOLD_RUNNER_SIGNAL))

    def _factory(self, event, paused: bool) -> List[ComponentEvent]:
        """A late cluster's factory paused (a hold of the whole map) or resumed: the components
        not yet made into jobs are held, or back to waiting to be made."""
        components = self.clusters.get(event.cluster) or []
        unmade = components[self.cursor.get("made", {}).get(event.cluster, 0):]
        t = float(event.timestamp)
        out = []
        for first, count in ranges(unmade):
            if paused:
                out.append(ComponentEvent(first, EventKind.HELD, t, count=count,
                                          reason="held by the user (htmap hold) before it was made a job"))
            else:
                out.append(ComponentEvent(first, EventKind.RELEASED, t, count=count))
                out.append(ComponentEvent(first, EventKind.UNMATERIALIZED, t, count=count))
        return out

    def _terminated(self, c: int, t: float, event) -> ComponentEvent:
        get = event.get
        mem = get("MemoryUsage")
        memory = int(mem) if mem is not None else None
        kind = self.output_kind(c)
        if kind == "OK":
            return ComponentEvent(c, EventKind.COMPLETED, t, memory_mb=memory)
        if kind == "ERR":
            return ComponentEvent(c, EventKind.ERRORED, t, memory_mb=memory)
        if get("TerminatedNormally"):
            why = f"the job exited with status {get('ReturnValue')} but no output came back"
        else:
            why = f"the job was killed by signal {get('TerminatedBySignal')} and no output came back"
        tail = self.stderr_tail(c)
        self.record_failure(c, why, tail)
        return ComponentEvent(c, EventKind.ERRORED, t, reason=why + (f"\n--- end of stderr ---\n{tail}" if tail else ""),
                              memory_mb=memory)


def notes_component(event) -> Optional[int]:
    """The component a SUBMIT event names in its notes, if any."""
    notes = event.get("StructuredNotes")
    if notes is not None:
        try:
            value = notes.get("component") if hasattr(notes, "get") else None
            if value is not None:
                return int(value)
        except (TypeError, ValueError):
            pass
    text = event.get("LogNotes")
    if text is not None:
        try:
            return int(str(text).strip())
        except ValueError:
            return None
    return None


def ranges(components: List[int]) -> List[Tuple[int, int]]:
    """Sorted components as (first, count) runs."""
    out: List[Tuple[int, int]] = []
    for c in sorted(components):
        if out and out[-1][0] + out[-1][1] == c:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((c, 1))
    return out


def expand(runs) -> List[int]:
    return [c for first, count in runs for c in range(first, first + count)]
