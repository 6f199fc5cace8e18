"""The Map: a persistent, named set of components, whatever engine runs them."""
from __future__ import annotations

import datetime
import errno
import functools
import os
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from . import exceptions, jobfiles, mapstore, store
from .engines import Action, JobSet, make_engine
from .errors import ComponentError, ComponentHold
from .state import FINISHED, ComponentStatus, MapState

READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)  # the folded state is a cache: skip saving it
SAVE_INTERVAL = 2.0  # seconds between saves of the folded state while a map runs


def _alive(func):
    """Public methods of a removed map raise MapWasRemoved."""

    @functools.wraps(func)
    def wrapper(self, *args, **kwargs):
        if self._removed:
            raise exceptions.MapWasRemoved(f"map {self._tag!r} was removed; it can no longer be used")
        return func(self, *args, **kwargs)

    return wrapper


def _alive_property(func):
    return property(_alive(func))


class Poller:
    """Backs off from a few ms to ``ceiling`` while nothing changes."""

    def __init__(self, timeout: Optional[float], ceiling: float = 0.25):
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.delay = 0.002
        self.ceiling = ceiling

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def sleep(self, progressed: bool = False) -> None:
        self.delay = 0.002 if progressed else min(self.delay * 1.5, self.ceiling)
        if self.deadline is not None:
            time.sleep(max(0.0, min(self.delay, self.deadline - time.monotonic())))
        else:
            time.sleep(self.delay)


class ComponentLogs:
    """``m.stdout[i]`` (non-blocking) and ``m.stdout.get(i, timeout)``."""

    def __init__(self, map: "Map", stream: str):
        self._map = map
        self._stream = stream

    def _path(self, component: int) -> Path:
        return self._map._dir / "logs" / f"{component}.{self._stream}"

    def _read(self, component: int) -> Optional[str]:
        try:
            return self._path(component).read_text(errors="replace")
        except FileNotFoundError:
            return None

    def __getitem__(self, component: int) -> str:
        self._map._check_component(component)
        self._map._refresh()
        text = self._read(component)
        if text is not None:
            return text
        if self._map._state.is_finished(component):
            return ""
        raise exceptions.OutputNotFound(
            f"the {self._stream} of component {component} of map {self._map.tag!r} is not available yet "
            f"(it is {self._map._state.status_of(component).value})"
        )

    def get(self, component: int, timeout: Optional[float] = None) -> str:
        self._map._wait_finished(component, timeout)
        return self[component]

    def __len__(self) -> int:
        return len(self._map)


class OutputFiles:
    """``m.output_files[i]``: the directory holding component i's output files."""

    def __init__(self, map: "Map"):
        self._map = map

    def __getitem__(self, component: int) -> Path:
        self._map._check_component(component)
        return self._map._dir / "output_files" / str(component)

    def get(self, component: int, timeout: Optional[float] = None) -> Path:
        self._map._wait_finished(component, timeout)
        return self[component]

    def __len__(self) -> int:
        return len(self._map)


class Map(Sequence):
    """A map of a function over inputs; outputs come back in component order."""

    _instances: Dict[str, "Map"] = {}

    def __init__(self, uid: str, directory: Path, meta: Dict[str, Any]):
        self._uid = uid
        self._dir = directory
        self._meta = meta
        self._tag: str = meta["tag"]
        self._removed = False
        job_fields = mapstore.read_job(directory)
        self._job = JobSet(directory=directory, **job_fields)
        engine_settings = dict(self._job.settings)
        engine_settings["HTMAP_DIR"] = str(mapstore.root())
        self._engine = make_engine(meta["engine"], engine_settings)
        self._state_path = directory / "state"
        self._state = MapState.load(self._state_path, meta["num_components"])
        self._last_save = time.monotonic()
        self._dirty = False
        self._warned_no_room = False
        self._save_seconds = 0.0  # how long the last save of the state took
        self.stdout = ComponentLogs(self, "stdout")
        self.stderr = ComponentLogs(self, "stderr")

    # -- loading ----------------------------------------------------------------
    @classmethod
    def load(cls, tag: str) -> "Map":
        """The map with this tag; the same object each time in one process."""
        info = mapstore.examine(tag)
        if info.state == "damaged":
            raise exceptions.MapIsDamaged(mapstore.damaged_hint(tag, info.problem or ""))
        if info.state != "published" or info.uid is None or info.meta is None:
            raise mapstore.tag_not_found(tag)
        existing = cls._instances.get(info.uid)
        if existing is not None and not existing._removed and existing._dir.exists():
            existing._tag = tag
            return existing
        meta = dict(info.meta, tag=tag)
        try:
            m = cls(info.uid, mapstore.map_directory(info.uid), meta)
        except exceptions.MapIsDamaged as e:
            raise exceptions.MapIsDamaged(mapstore.damaged_hint(tag, str(e))) from None
        cls._instances[info.uid] = m
        return m

    # -- identity ---------------------------------------------------------------
    @property
    def tag(self) -> str:
        return self._tag

    @property
    def uid(self) -> str:
        return self._uid

    @property
    def exists(self) -> bool:
        return not self._removed and (self._dir / "map.json").exists()

    @_alive_property
    def is_transient(self) -> bool:
        return bool(self._meta.get("transient"))

    @_alive_property
    def engine(self) -> str:
        return self._meta["engine"]

    @_alive_property
    def components(self) -> Tuple[int, ...]:
        return tuple(range(len(self)))

    def __len__(self) -> int:
        if self._removed:
            raise exceptions.MapWasRemoved(f"map {self._tag!r} was removed; it can no longer be used")
        return self._meta["num_components"]

    @_alive
    def __contains__(self, component: object) -> bool:
        return isinstance(component, int) and 0 <= component < len(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tag={self._tag!r})"

    def _repr_html_(self) -> str:
        """A Jupyter view: tag, size, a bar of status counts, hints to errors and holds."""
        from .html import map_html

        return map_html(self)

    @_alive
    def plot(self, path=None, **kwargs: Any):
        """Draw each component's time idle and running, and a histogram of run times."""
        from .plotting import plot_map

        return plot_map(self, path, **kwargs)

    def __getstate__(self):
        raise TypeError("a Map cannot be pickled; pass its tag and htmap.load() it instead")

    def _forget_removed(self) -> None:
        self._removed = True
        Map._instances.pop(self._uid, None)
        raise exceptions.MapWasRemoved(f"map {self._tag!r} was removed (by another command or process) "
                                       "while this one used it; it can no longer be used")

    def _check_component(self, component: int) -> None:
        if self._removed:
            raise exceptions.MapWasRemoved(f"map {self._tag!r} was removed; it can no longer be used")
        if not isinstance(component, int) or not 0 <= component < len(self):
            raise IndexError(f"component {component!r} is not in map {self._tag!r} (it has {len(self)} components)")

    # -- state ------------------------------------------------------------------
    def _refresh(self) -> bool:
        """Fold the engine's new events; True if anything changed."""
        events, cursor = self._engine.read_events(self._job, self._state.cursor)
        if not events and not (self._dir / "map.json").exists():
            self._forget_removed()  # removed by another process (or htmap remove) while we watched
        self._state.cursor = cursor
        self._state.apply_all(events)
        if events:
            self._state.events_seen = getattr(self._state, "events_seen", 0) + len(events)
            self._dirty = True
        now = time.monotonic()
        # a big map's state takes a while to write: save it at most 5% of the time
        interval = max(SAVE_INTERVAL, 20 * self._save_seconds)
        if self._dirty and (now - self._last_save > interval or self._state.all_finished()):
            self._save_state()
        return bool(events)

    def _save_state(self) -> None:
        """Persist the fold (a cache: events are the truth), so a later process reads only what is new."""
        started = time.monotonic()
        try:
            self._state.save(self._state_path)
            self._save_seconds = time.monotonic() - started
        except FileNotFoundError:
            return  # removed under us
        except OSError as e:
            if e.errno in READ_ONLY_ERRNOS:  # a colleague's maps, or a read-only mount: reading needs no cache
                self._dirty = False
                self._last_save = time.monotonic()
                return
            if e.errno not in store.NO_ROOM_ERRNOS:
                raise
            if not self._warned_no_room:
                self._warned_no_room = True
                warnings.warn(f"no room in the map store ({e.strerror}: {self._dir}): results of map "
                              f"{self.tag!r} cannot be written, and its components wait; free space in "
                              f"HTMAP_DIR", RuntimeWarning, stacklevel=3)
            self._last_save = time.monotonic()
            return
        self._dirty = False
        self._last_save = time.monotonic()

    @_alive_property
    def component_statuses(self) -> List[ComponentStatus]:
        self._refresh()
        return [self._state.status_of(c) for c in range(len(self))]

    @_alive
    def components_by_status(self) -> Dict[ComponentStatus, Tuple[int, ...]]:
        self._refresh()
        out = {}
        for status in ComponentStatus:
            found = self._state.with_status(status)
            if found:
                out[status] = tuple(found)
        return out

    @_alive
    def status_counts(self) -> Dict[ComponentStatus, int]:
        self._refresh()
        return self._state.counts()

    @_alive
    def status(self) -> str:
        counts = self.status_counts()
        parts = [f"{s.value} = {counts[s]}" for s in ComponentStatus if counts.get(s)]
        return f"Map {self.tag} ({len(self)} components): {' | '.join(parts)}"

    @_alive_property
    def is_done(self) -> bool:
        """True when every component has finished and its output (value or error) is there."""
        self._refresh()
        counts = self._state.counts()
        return counts[ComponentStatus.COMPLETED] + counts[ComponentStatus.ERRORED] == len(self)

    @_alive_property
    def is_active(self) -> bool:
        """True while any component waits, runs, is held or suspended."""
        self._refresh()
        return not self._state.all_finished()

    # -- outputs ----------------------------------------------------------------
    def _output_path(self, component: int) -> Path:
        return jobfiles.output_path(self._dir / "outputs", component)

    def _error(self, component: int, report: Dict[str, Any]) -> ComponentError:
        return ComponentError(self.tag, component, report, self._state.history.get(component))

    def _raise_error(self, component: int, report: Dict[str, Any]):
        err = self._error(component, report)
        raise exceptions.MapComponentError(
            f"component {component} of map {self.tag} {'raised' if err.kind == 'exception' else 'failed'}: "
            f"{err.exception_type + ': ' if err.kind == 'exception' else ''}{err.exception_msg}\n\n{err.report()}",
            err,
        )

    def _held(self, component: int) -> exceptions.MapComponentHeld:
        reason, code = self._state.holds.get(component, ("", None))
        return exceptions.MapComponentHeld(
            f"component {component} of map {self.tag} is held: {reason or 'no reason given'}"
            f"{f' (code {code})' if code is not None else ''}; fix the cause and call .release()"
        )

    def _try_output(self, component: int) -> Tuple[bool, Any]:
        """(True, value) if the output is there; raises for errors; (False, None) otherwise."""
        try:
            kind, payload = jobfiles.read_output(self._output_path(component))
        except FileNotFoundError:
            return False, None
        if kind == "ERR":
            self._raise_error(component, payload)
        return True, payload

    def _wait_finished(self, component: int, timeout: Optional[float], trust_state: bool = True) -> None:
        self._check_component(component)
        if trust_state and self._state.status_of(component) in FINISHED:
            return  # known finished: iterating a big map needs no re-read per component
        poller = Poller(timeout)
        while True:
            progressed = self._refresh()
            status = self._state.status_of(component)
            if status in FINISHED:
                return
            if status is ComponentStatus.HELD:
                raise self._held(component)
            if poller.expired():
                raise exceptions.TimeoutError(
                    f"timed out after {timeout} s waiting for component {component} of map {self.tag} "
                    f"(it is {status.value})"
                )
            poller.sleep(progressed)

    @_alive
    def __getitem__(self, component: int) -> Any:
        """The output of a component, without waiting (OutputNotFound if not there)."""
        self._check_component(component)
        found, value = self._try_output(component)
        if not found:
            self._refresh()
            raise exceptions.OutputNotFound(
                f"output of component {component} of map {self.tag} is not available "
                f"(it is {self._state.status_of(component).value})"
            )
        return value

    @_alive
    def get(self, component: int, timeout: Optional[float] = None) -> Any:
        """The output of a component, waiting for it (up to ``timeout`` seconds)."""
        self._wait_finished(component, timeout)
        found, value = self._try_output(component)
        if not found:  # perhaps rerun meanwhile by another process: look again
            self._wait_finished(component, timeout, trust_state=False)
            found, value = self._try_output(component)
        if not found:
            raise exceptions.OutputNotFound(
                f"component {component} of map {self.tag} ended as "
                f"{self._state.status_of(component).value} without output"
            )
        return value

    @_alive
    def get_err(self, component: int, timeout: Optional[float] = None) -> ComponentError:
        """The error report of a component that failed (waiting for it to finish)."""
        self._wait_finished(component, timeout)
        try:
            kind, payload = jobfiles.read_output(self._output_path(component))
        except FileNotFoundError:
            raise exceptions.OutputNotFound(f"component {component} of map {self.tag} has no output") from None
        if kind != "ERR":
            raise exceptions.InvalidOutputStatus(f"component {component} of map {self.tag} completed without error")
        return self._error(component, payload)

    @_alive
    def iter(self, timeout: Optional[float] = None) -> Iterator[Any]:
        """Outputs in component order, waiting for each."""
        for component in range(len(self)):
            yield self.get(component, timeout=timeout)

    def __iter__(self) -> Iterator[Any]:
        return self.iter()

    @_alive
    def iter_with_inputs(self, timeout: Optional[float] = None) -> Iterator[Tuple[Tuple[Tuple, Dict], Any]]:
        for inputs, component in zip(self.iter_inputs(), range(len(self))):
            yield inputs, self.get(component, timeout=timeout)

    @_alive
    def iter_as_available(self, timeout: Optional[float] = None) -> Iterator[Any]:
        """Outputs in the order components finish."""
        for _component, value in self._iter_finished(timeout):
            yield value

    @_alive
    def iter_as_available_with_inputs(self, timeout: Optional[float] = None):
        for component, value in self._iter_finished(timeout):
            yield jobfiles.read_input(self._dir / "inputs", component), value

    def _iter_finished(self, timeout: Optional[float]):
        remaining = set(range(len(self)))
        poller = Poller(timeout)
        while remaining:
            progressed = self._refresh()
            for component in sorted(remaining):
                status = self._state.status_of(component)
                if status in FINISHED:
                    remaining.discard(component)
                    found, value = self._try_output(component)
                    if found:
                        yield component, value
                    progressed = True
                elif status is ComponentStatus.HELD:
                    raise self._held(component)
            if remaining:
                if poller.expired():
                    raise exceptions.TimeoutError(f"timed out after {timeout} s waiting for map {self.tag}")
                poller.sleep(progressed)

    @_alive
    def iter_inputs(self) -> Iterator[Tuple[Tuple, Dict[str, Any]]]:
        """Each component's (args, kwargs), in order."""
        return jobfiles.iter_inputs(self._dir / "inputs")

    @_alive
    def wait(self, timeout: Optional[float] = None, show_progress_bar: bool = False,
             holds_ok: bool = False, errors_ok: bool = False) -> None:
        """Block until every component has finished.

        Raises MapComponentError on the first error unless ``errors_ok``, and
        MapComponentHeld on the first hold unless ``holds_ok`` (then held components
        count as finished for waiting).
        """
        from .progress import progress_bar

        poller = Poller(timeout)
        bar = progress_bar(self.tag, len(self)) if show_progress_bar else None
        try:
            while True:
                progressed = self._refresh()
                counts = self._state.counts()
                done = counts[ComponentStatus.COMPLETED] + counts[ComponentStatus.ERRORED] + counts[ComponentStatus.REMOVED]
                if bar is not None:
                    bar.update(done - bar.n)
                if counts[ComponentStatus.ERRORED] and not errors_ok:
                    component = self._state.with_status(ComponentStatus.ERRORED)[0]
                    found, _ = self._try_output(component)  # raises MapComponentError
                    if not found:
                        raise exceptions.MapComponentError(f"component {component} of map {self.tag} errored")
                if counts[ComponentStatus.HELD]:
                    if not holds_ok:
                        raise self._held(self._state.with_status(ComponentStatus.HELD)[0])
                    done += counts[ComponentStatus.HELD]
                if done >= len(self):
                    return
                if poller.expired():
                    raise exceptions.TimeoutError(
                        f"timed out after {timeout} s waiting for map {self.tag}: {self.status()}")
                poller.sleep(progressed)
        finally:
            if bar is not None:
                bar.close()

    # -- reports ----------------------------------------------------------------
    @_alive_property
    def errors(self) -> List[ComponentError]:
        """Error reports of the components that errored so far (never waits)."""
        self._refresh()
        out = []
        for component in self._state.with_status(ComponentStatus.ERRORED):
            try:
                kind, payload = jobfiles.read_output(self._output_path(component))
            except FileNotFoundError:
                continue
            if kind == "ERR":
                out.append(self._error(component, payload))
        return out

    @_alive
    def error_reports(self) -> List[str]:
        return [e.report() for e in self.errors]

    @_alive_property
    def holds(self) -> Dict[int, ComponentHold]:
        self._refresh()
        return {c: ComponentHold(code, reason) for c, (reason, code) in sorted(self._state.holds.items())
                if self._state.status_of(c) is ComponentStatus.HELD}

    @_alive
    def hold_report(self) -> str:
        holds = self.holds
        if not holds:
            return f"map {self.tag} has no held components"
        rows = [("Component", "Code", "Hold Reason")] + [(str(c), str(h.code if h.code is not None else ""), h.reason)
                                                          for c, h in holds.items()]
        widths = [max(len(r[i]) for r in rows) for i in range(2)]
        return "\n".join(f"{r[0]:>{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]}" for r in rows)

    @_alive_property
    def memory_usage(self) -> List[int]:
        """Peak resident memory of each component, in MB."""
        self._refresh()
        return list(self._state.memory_mb)

    @_alive_property
    def runtime(self) -> List[datetime.timedelta]:
        self._refresh()
        return [datetime.timedelta(seconds=s) for s in self._state.runtime]

    @_alive_property
    def local_data(self) -> int:
        """Bytes this map uses under HTMAP_DIR (remembered until new events arrive: a
        million-file walk is slow on AFS)."""
        self._refresh()
        key = getattr(self._state, "events_seen", 0)
        cached = getattr(self._state, "local_data_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        size = store.dir_size(self._dir)
        self._state.local_data_cache = (key, size)
        self._dirty = True
        if self._state.all_finished():
            self._save_state()
        return size

    @_alive_property
    def output_files(self) -> OutputFiles:
        return OutputFiles(self)

    # -- control ----------------------------------------------------------------
    def _targets(self, components: Optional[Sequence[int]]) -> Optional[List[int]]:
        if components is None:
            return None
        out = [int(c) for c in components]
        for c in out:
            self._check_component(c)
        return out

    def _act(self, action: Action, components: Optional[Sequence[int]], reason: Optional[str] = None) -> None:
        self._engine.act(self._job, action, self._targets(components), reason)
        wait = getattr(self._engine, "wait_for_control", None)
        if wait is not None:
            wait(self._job)

    @_alive
    def hold(self, components: Optional[Sequence[int]] = None, reason: Optional[str] = None) -> None:
        self._act(Action.HOLD, components, reason)

    @_alive
    def release(self, components: Optional[Sequence[int]] = None) -> None:
        self._act(Action.RELEASE, components)

    @_alive
    def pause(self, components: Optional[Sequence[int]] = None) -> None:
        self._act(Action.PAUSE, components)

    @_alive
    def resume(self, components: Optional[Sequence[int]] = None) -> None:
        self._act(Action.RESUME, components)

    @_alive
    def vacate(self, components: Optional[Sequence[int]] = None) -> None:
        self._act(Action.VACATE, components)

    @_alive
    def set_memory(self, memory: Any, components: Optional[Sequence[int]] = None) -> None:
        """Change the memory request (MB, or a size like "4GB") of components not yet finished."""
        from .options import parse_size

        self._engine.edit(self._job, "request_memory", parse_size(memory, "MB", "memory"), self._targets(components))

    @_alive
    def set_disk(self, disk: Any, components: Optional[Sequence[int]] = None) -> None:
        """Change the disk request (KB, or a size like "10GB") of components not yet finished."""
        from .options import parse_size

        self._engine.edit(self._job, "request_disk", parse_size(disk, "KB", "disk"), self._targets(components))

    @_alive
    def set_runtime(self, runtime: Any, components: Optional[Sequence[int]] = None) -> None:
        """Change the runtime limit (seconds, or "2h") of components for their next run."""
        from .options import parse_duration

        self._engine.edit(self._job, "max_runtime", parse_duration(runtime), self._targets(components))

    @_alive
    def remove(self, force: bool = False, components: Optional[Sequence[int]] = None) -> None:
        """Stop every component and delete the map and all its files.

        With ``components``, only stop those (they become REMOVED; rerun brings them back)
        and keep the map."""
        if components is not None:
            self._act(Action.REMOVE, components, "removed by the user")
            return
        try:
            self._engine.act(self._job, Action.REMOVE, None, "the map was removed")
            self._engine.forget(self._job)
        except Exception:
            if not force:
                raise
        mapstore.release_tag(self._tag, self._uid)
        store.remove_tree(self._dir)
        self._removed = True
        Map._instances.pop(self._uid, None)

    @_alive
    def rerun(self, components: Optional[Sequence[int]] = None) -> None:
        """Run finished components again (all of them when ``components`` is None)."""
        self._refresh()
        targets = list(range(len(self))) if components is None else self._targets(components)
        unfinished = [c for c in targets if not self._state.is_finished(c)]
        if unfinished:
            shown = ", ".join(map(str, unfinished[:10])) + (" ..." if len(unfinished) > 10 else "")
            raise exceptions.CannotRerunComponents(
                f"cannot rerun components of map {self.tag} that have not finished: {shown}; "
                "wait for them or remove them first"
            )
        self._remove_results(targets)
        self._state.reset(targets)
        self._engine.submit(self._job, targets)

    def _remove_results(self, components: Sequence[int]) -> None:
        """Delete the outputs and logs of components about to run again. Many: one pass over the
        directories (a rerun of 100,000 components); few: by name."""
        dirs = [str(self._dir / "outputs"), str(self._dir / "logs")]
        if len(components) > 1000:
            wanted = set(components)
            for d in dirs:
                with os.scandir(d) as entries:
                    for entry in entries:
                        stem = entry.name.partition(".")[0]
                        if stem.isdigit() and int(stem) in wanted:
                            os.unlink(entry.path)
            return
        for c in components:
            for path in (f"{dirs[0]}/{c}.out", f"{dirs[1]}/{c}.stdout", f"{dirs[1]}/{c}.stderr"):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    @_alive
    def retag(self, new_tag: str) -> None:
        """Give the map a new tag; a retagged map is no longer transient."""
        if new_tag == self._tag:
            return
        mapstore.rename_tag(self._tag, new_tag, self._uid)
        self._meta["tag"] = new_tag
        self._meta["transient"] = False
        mapstore.write_meta(self._dir, self._meta)
        self._tag = new_tag
