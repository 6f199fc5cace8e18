"""The Map: a persistent, named set of components, whatever engine runs them."""
from __future__ import annotations

import datetime
import errno
import functools
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from . import exceptions, jobfiles, layout, mapstore, store, tags
from .engines import Action, JobSet, make_engine
from .errors import ComponentError, ComponentHold
from .state import FINISHED, ComponentStatus, MapState

READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)  # the folded state is a cache: skip saving it
SAVE_INTERVAL = 2.0  # seconds between saves of the folded state while a map runs
SETTLE_SECONDS = 30.0  # at most this long an act waits for the map's state to show it
# what each act leaves a component as, once the scheduler has carried it out
SETTLED: Dict[Action, frozenset] = {
    Action.HOLD: FINISHED | {ComponentStatus.HELD, ComponentStatus.UNMATERIALIZED},
    Action.RELEASE: frozenset(set(ComponentStatus) - {ComponentStatus.HELD}),
    Action.REMOVE: FINISHED,
}

Timeout = Optional[Union[int, float, datetime.timedelta]]

STATUS_LINE_0_6 = (ComponentStatus.HELD, ComponentStatus.ERRORED, ComponentStatus.IDLE, ComponentStatus.RUNNING,
                   ComponentStatus.COMPLETED)


def timeout_seconds(timeout: Timeout) -> Optional[float]:
    """A timeout as seconds: ``None`` (wait forever), a number, or a ``datetime.timedelta``.

    Parameters
    ----------
    timeout
        ``None``, seconds as an ``int`` or ``float``, or a ``datetime.timedelta``.

    Returns
    -------
    seconds
        ``None`` or a number of seconds.
    """
    if timeout is None:
        return None
    if isinstance(timeout, datetime.timedelta):
        return timeout.total_seconds()
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        return float(timeout)
    raise TypeError(f"timeout must be None, a number of seconds or a datetime.timedelta, "
                    f"not {type(timeout).__name__} {timeout!r}")


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

    def __init__(self, timeout: Timeout, ceiling: float = 0.25):
        self.timeout = timeout_seconds(timeout)
        self.deadline = None if self.timeout is None else time.monotonic() + self.timeout
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


def _show_progress(bar: Any, done: int, counts: Dict[ComponentStatus, int]) -> None:
    """Move the progress bar to ``done`` and show how many errored or are held beside it."""
    postfix = {name: counts[status] for name, status in (("errored", ComponentStatus.ERRORED),
                                                         ("held", ComponentStatus.HELD)) if counts[status]}
    if postfix != getattr(bar, "_htmap_postfix", None):
        bar._htmap_postfix = postfix
        bar.set_postfix(postfix, refresh=False)
    if done != bar.n:
        bar.update(done - bar.n)


class MapStdX(Sequence):
    """A map's captured stdout or stderr, one string per component (``m.stdout``, ``m.stderr``).

    ``m.stdout[i]`` does not wait: an unfinished component raises ``OutputNotFound`` (also a
    ``FileNotFoundError``, as in HTMap 0.6); ``m.stdout.get(i, timeout)`` waits for it.
    ``i in m.stdout`` tells whether the map has component ``i``.

    Parameters
    ----------
    map : Map
        The map whose logs these are.
    """

    _stream = ""

    def __init__(self, map: "Map"):
        self._map = map

    @property
    def map(self) -> "Map":
        """The map these logs belong to."""
        return self._map

    def _path(self, component: int) -> Path:
        return self._map._job.paths.log(component, self._stream)

    def _read(self, component: int) -> Optional[str]:
        try:
            return self._path(component).read_text(errors="replace")
        except FileNotFoundError:
            return None

    def __getitem__(self, component: int) -> str:  # type: ignore[override]
        self._map._check_component(component)
        self._map._refresh()
        text = self._read(component)
        if text is not None:
            return text
        if self._map._state.is_finished(component):
            return ""
        raise exceptions.OutputNotFound(
            f"the {self._stream} of component {component} of map {self._map.tag!r} is not available yet "
            f"(it is {self._map._state.status_of(component).value}); "
            f"m.{self._stream}.get({component}, timeout=...) waits for it"
        )

    def get(self, component: int, timeout: Timeout = None) -> str:
        """The text of one component's stream, once the component has finished.

        Parameters
        ----------
        component : int
            The component's index.
        timeout : float or datetime.timedelta, optional
            How long to wait at most. ``None`` (the default) waits as long as it takes.

        Returns
        -------
        str
            Everything the component wrote to the stream (an empty string if it wrote nothing).

        Raises
        ------
        htmap.exceptions.TimeoutError
            If the component has not finished within ``timeout``.
        htmap.exceptions.MapComponentHeld
            If the component is held while waiting.
        IndexError
            If the map has no such component.
        """
        self._map._wait_finished(component, timeout)
        return self[component]

    def follow(self, component: int, timeout: Timeout = None) -> Iterator[str]:
        """What the component writes, piece by piece as it runs, until it finishes (like ``tail -f``).

        Engines that keep a running component's output elsewhere (HTCondor) give it all at the end.

        Parameters
        ----------
        component
            The component's index.
        timeout
            Seconds (or a ``datetime.timedelta``) to follow at most; ``None`` follows to the end.

        Yields
        ------
        text
            The next piece of what the component wrote.
        """
        import codecs

        m = self._map
        m._check_component(component)
        poller = Poller(timeout)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        sent = 0
        while True:
            progressed = m._refresh()
            status = m._state.status_of(component)
            if status in FINISHED:
                rest = _read_from(self._path(component), sent)
                yield decoder.decode(rest, final=True)
                return
            chunk = self._live_chunk(component, sent)
            if chunk:
                sent += len(chunk)
                progressed = True
                yield decoder.decode(chunk)
            if status is ComponentStatus.HELD:
                raise m._held(component)
            if poller.expired():
                raise exceptions.TimeoutError(f"timed out after {poller.timeout:g} s following the {self._stream} "
                                              f"of component {component} of map {m.tag} (it is {status.value})")
            poller.sleep(progressed)

    def _live_chunk(self, component: int, offset: int) -> bytes:
        """New bytes of the running component's output, if its engine shows them."""
        m = self._map
        path = m._engine.live_log(m._job, component, self._stream)
        if path is None:
            return b""
        chunk = _read_from(path, offset)
        if chunk and m._engine.live_log(m._job, component, self._stream) != path:
            return b""  # the worker moved on to another component meanwhile
        return chunk

    def __contains__(self, component: object) -> bool:
        return component in self._map

    def __len__(self) -> int:
        return len(self._map)


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""


class MapStdOut(MapStdX):
    """A map's captured stdout, one string per component (``m.stdout``); see ``MapStdX``.

    Parameters
    ----------
    map : Map
        The map whose stdout this is.
    """

    _stream = "stdout"


class MapStdErr(MapStdX):
    """A map's captured stderr, one string per component (``m.stderr``); see ``MapStdX``.

    Parameters
    ----------
    map : Map
        The map whose stderr this is.
    """

    _stream = "stderr"


class MapOutputFiles(Sequence):
    """The output files of a map's components, as ``Map.output_files``.

    ``m.output_files[i]`` is the directory holding the files component ``i`` sent back (with
    ``transfer_output_files``); ``m.output_files.get(i, timeout)`` waits for the component first.
    ``i in m.output_files`` tells whether the map has component ``i``.

    Parameters
    ----------
    map : Map
        The map whose output files these are.
    """

    def __init__(self, map: "Map"):
        self._map = map

    @property
    def map(self) -> "Map":
        """The map these output files belong to."""
        return self._map

    def __getitem__(self, component: int) -> Path:  # type: ignore[override]
        self._map._check_component(component)
        return self._map._job.paths.output_files(component)

    def get(self, component: int, timeout: Timeout = None) -> Path:
        """The directory of one component's output files, once the component has finished.

        Parameters
        ----------
        component : int
            The component's index.
        timeout : float or datetime.timedelta, optional
            How long to wait at most. ``None`` (the default) waits as long as it takes.

        Returns
        -------
        pathlib.Path
            The directory; it may be empty or missing if the component sent no files back.

        Raises
        ------
        htmap.exceptions.TimeoutError
            If the component has not finished within ``timeout``.
        htmap.exceptions.MapComponentHeld
            If the component is held while waiting.
        """
        self._map._wait_finished(component, timeout)
        return self[component]

    def __contains__(self, component: object) -> bool:
        return component in self._map

    def __len__(self) -> int:
        return len(self._map)


class Map(Sequence):
    """A map: one function applied to many inputs, each call (a *component*) run as a batch job.

    A map is persistent and named by its *tag*: it lives under ``HTMAP_DIR`` until removed, and
    any process on the submit machine can get it back with ``htmap.load(tag)``. It behaves as a
    read-only sequence of the components' outputs, in input order: ``m[i]`` without waiting,
    ``m.get(i)`` waiting, ``list(m)`` waiting for all.

    Maps are made by ``htmap.map``, ``htmap.starmap``, ``htmap.build_map`` or a mapped function,
    and loaded by ``htmap.load`` / ``Map.load``; do not call the constructor yourself.

    Parameters
    ----------
    uid : str
        The map's unique id, which never changes (the tag may).
    directory : pathlib.Path
        The map's directory in the map store.
    meta : dict
        The map's metadata as stored in that directory (tag, size, engine, ...).

    Attributes
    ----------
    stdout : MapStdOut
        Each component's standard output: ``m.stdout[i]`` or ``m.stdout.get(i, timeout)``.
    stderr : MapStdErr
        Each component's standard error, in the same way.
    """

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
        self._stdout = MapStdOut(self)
        self._stderr = MapStdErr(self)

    # -- loading ----------------------------------------------------------------
    @classmethod
    def load(cls, tag: str) -> "Map":
        """Load the map with this tag.

        In one process, loading a tag again gives back the same ``Map`` object.

        Parameters
        ----------
        tag : str
            The map's tag.

        Returns
        -------
        Map
            The map.

        Raises
        ------
        htmap.exceptions.TagNotFound
            If no map has this tag (or it is still being created).
        htmap.exceptions.MapIsDamaged
            If a file of the map (or its tag file) cannot be read; ``htmap.remove(tag, force=True)``
            deletes it.
        """
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
        """The map's tag: its name, unique among the maps in ``HTMAP_DIR``."""
        return self._tag

    @property
    def uid(self) -> str:
        """The map's unique id; unlike the tag, it never changes."""
        return self._uid

    @property
    def exists(self) -> bool:
        """``True`` until the map is removed (by this or any other process)."""
        return not self._removed and (self._dir / "map.json").exists()

    @_alive_property
    def is_transient(self) -> bool:
        """``True`` if the map was created without a tag and has not been retagged since.

        ``htmap.clean()`` removes transient maps.
        """
        return bool(self._meta.get("transient"))

    @_alive_property
    def engine(self) -> str:
        """The name of the engine that runs this map: ``"local"``, ``"htcondor"`` or ``"slurm"``."""
        return self._meta["engine"]

    @_alive_property
    def components(self) -> Tuple[int, ...]:
        """The component indices, ``(0, 1, ..., len(map) - 1)``."""
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

    # maps sort by tag, as in HTMap 0.6 (sorted(htmap.load_maps()))
    def __lt__(self, other: "Map") -> bool:
        return self._tag < other._tag if isinstance(other, Map) else NotImplemented

    def __le__(self, other: "Map") -> bool:
        return self._tag <= other._tag if isinstance(other, Map) else NotImplemented

    def __gt__(self, other: "Map") -> bool:
        return self._tag > other._tag if isinstance(other, Map) else NotImplemented

    def __ge__(self, other: "Map") -> bool:
        return self._tag >= other._tag if isinstance(other, Map) else NotImplemented

    def _repr_html_(self) -> str:
        """A Jupyter view: tag, size, a bar of status counts, hints to errors and holds."""
        from .html import map_html

        return map_html(self)

    @_alive
    def plot(self, path=None, **kwargs: Any):
        """Draw when each component waited and ran, and a histogram of run times.

        Needs matplotlib (the ``plot`` extra).

        Parameters
        ----------
        path : str or pathlib.Path, optional
            Save the figure to this file (its suffix picks the format). Without it the figure is made
            through pyplot, so Jupyter shows it inline.
        **kwargs
            Passed on to the plotting function: ``figsize`` (inches), ``max_components`` (at most
            this many rows are drawn; bigger maps are sampled evenly; default 1000), ``title`` and
            ``dpi``.

        Returns
        -------
        matplotlib.figure.Figure
            The figure.

        Raises
        ------
        htmap.plotting.PlottingUnavailable
            If matplotlib is not installed.
        """
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
        """The status of each component, as a list of ``ComponentStatus`` in component order."""
        self._refresh()
        return [self._state.status_of(c) for c in range(len(self))]

    @_alive
    def components_by_status(self) -> Dict[ComponentStatus, Tuple[int, ...]]:
        """The components grouped by status.

        Returns
        -------
        dict of ComponentStatus to tuple of int
            For each status that at least one component has, the components that have it.
        """
        self._refresh()
        out = {}
        for status in ComponentStatus:
            found = self._state.with_status(status)
            if found:
                out[status] = tuple(found)
        return out

    @_alive
    def status_counts(self) -> Dict[ComponentStatus, int]:
        """How many components have each status.

        Returns
        -------
        dict of ComponentStatus to int
            A count for every status, zero included.
        """
        self._refresh()
        return self._state.counts()

    @_alive
    def status(self) -> str:
        """A one-line summary of the map's status, as HTMap 0.6 wrote it.

        Returns
        -------
        str
            For example ``"Map squares (10 components): HELD = 0 | ERRORED = 0 | IDLE = 0 | RUNNING = 3 |
            COMPLETED = 7"``; other statuses follow when some component has them.
        """
        counts = self.status_counts()
        shown = [s for s in STATUS_LINE_0_6] + [s for s in ComponentStatus
                                                  if s not in STATUS_LINE_0_6 and counts.get(s)]
        parts = [f"{s.value} = {counts.get(s, 0)}" for s in shown]
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
        return self._job.paths.output(component)

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

    def _wait_finished(self, component: int, timeout: Timeout, trust_state: bool = True) -> None:
        poller = Poller(timeout)
        self._check_component(component)
        if trust_state and self._state.status_of(component) in FINISHED:
            return  # known finished: iterating a big map needs no re-read per component
        while True:
            progressed = self._refresh()
            status = self._state.status_of(component)
            if status in FINISHED:
                return
            if status is ComponentStatus.HELD:
                raise self._held(component)
            if poller.expired():
                raise exceptions.TimeoutError(
                    f"timed out after {poller.timeout:g} s waiting for component {component} of map {self.tag} "
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
            if self._state.status_of(component) is ComponentStatus.HELD:
                raise self._held(component)
            raise exceptions.OutputNotFound(
                f"output of component {component} of map {self.tag} is not available "
                f"(it is {self._state.status_of(component).value})"
            )
        return value

    @_alive
    def get(self, component: int, timeout: Timeout = None) -> Any:
        """The output of a component, waiting for it to finish.

        Parameters
        ----------
        component : int
            The component's index.
        timeout : float or datetime.timedelta, optional
            How many seconds to wait at most. ``None`` (the default) waits as long as it takes.

        Returns
        -------
        object
            What the function returned for this component's input.

        Raises
        ------
        htmap.exceptions.MapComponentError
            If the component raised an exception or failed; the error report is attached.
        htmap.exceptions.MapComponentHeld
            If the component is held.
        htmap.exceptions.TimeoutError
            If the component has not finished within ``timeout`` seconds.
        htmap.exceptions.OutputNotFound
            If the component ended without output (for example, it was removed).
        IndexError
            If the map has no such component.
        """
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
    def get_err(self, component: int, timeout: Timeout = None) -> ComponentError:
        """The error report of a component that failed, waiting for it to finish.

        Parameters
        ----------
        component : int
            The component's index.
        timeout : float or datetime.timedelta, optional
            How many seconds to wait at most. ``None`` (the default) waits as long as it takes.

        Returns
        -------
        ComponentError
            The component's error report.

        Raises
        ------
        htmap.exceptions.ExpectedError
            If the component completed without error (``ComponentSucceeded``, also an
            ``InvalidOutputStatus``).
        htmap.exceptions.OutputNotFound
            If the component ended without output.
        htmap.exceptions.MapComponentHeld
            If the component is held.
        htmap.exceptions.TimeoutError
            If the component has not finished within ``timeout`` seconds.
        """
        self._wait_finished(component, timeout)
        try:
            kind, payload = jobfiles.read_output(self._output_path(component))
        except FileNotFoundError:
            raise exceptions.OutputNotFound(f"component {component} of map {self.tag} has no output") from None
        if kind != "ERR":
            raise exceptions.ComponentSucceeded(f"component {component} of map {self.tag} completed without error; "
                                                f"m.get({component}) gives its output")
        return self._error(component, payload)

    @_alive
    def iter(self, timeout: Timeout = None) -> Iterator[Any]:
        """The outputs in component order, waiting for each in turn.

        Parameters
        ----------
        timeout : float or datetime.timedelta, optional
            How many seconds to wait at most for each component. ``None`` waits as long as it takes.

        Yields
        ------
        object
            Each component's output.

        Raises
        ------
        htmap.exceptions.MapComponentError
            When the next component raised an exception or failed.
        htmap.exceptions.MapComponentHeld
            When the next component is held.
        htmap.exceptions.TimeoutError
            When a component does not finish within ``timeout`` seconds.
        """
        for component in range(len(self)):
            yield self.get(component, timeout=timeout)

    def __iter__(self) -> Iterator[Any]:
        return self.iter()

    @_alive
    def iter_with_inputs(self, timeout: Timeout = None) -> Iterator[Tuple[Tuple[Tuple, Dict], Any]]:
        """The inputs and outputs in component order, waiting for each in turn.

        Parameters
        ----------
        timeout : float or datetime.timedelta, optional
            How many seconds to wait at most for each component. ``None`` waits as long as it takes.

        Yields
        ------
        tuple
            ``((args, kwargs), output)`` for each component.

        Raises
        ------
        htmap.exceptions.MapComponentError
            When the next component raised an exception or failed.
        htmap.exceptions.MapComponentHeld
            When the next component is held.
        htmap.exceptions.TimeoutError
            When a component does not finish within ``timeout`` seconds.
        """
        for inputs, component in zip(self.iter_inputs(), range(len(self))):
            yield inputs, self.get(component, timeout=timeout)

    @_alive
    def iter_as_available(self, timeout: Timeout = None) -> Iterator[Any]:
        """The outputs in the order the components finish.

        Components that end without output (removed ones) are skipped.

        Parameters
        ----------
        timeout : float or datetime.timedelta, optional
            How many seconds to wait at most for the whole map. ``None`` waits as long as it takes.

        Yields
        ------
        object
            Each component's output, as soon as it is there.

        Raises
        ------
        htmap.exceptions.MapComponentError
            When a finished component raised an exception or failed.
        htmap.exceptions.MapComponentHeld
            When a component is held.
        htmap.exceptions.TimeoutError
            When the map has not finished within ``timeout`` seconds.
        """
        for _component, value in self._iter_finished(timeout):
            yield value

    @_alive
    def iter_as_available_with_inputs(self, timeout: Timeout = None):
        """The inputs and outputs in the order the components finish.

        Parameters
        ----------
        timeout : float or datetime.timedelta, optional
            How many seconds to wait at most for the whole map. ``None`` waits as long as it takes.

        Yields
        ------
        tuple
            ``((args, kwargs), output)`` for each component, as soon as it is there.

        Raises
        ------
        htmap.exceptions.MapComponentError
            When a finished component raised an exception or failed.
        htmap.exceptions.MapComponentHeld
            When a component is held.
        htmap.exceptions.TimeoutError
            When the map has not finished within ``timeout`` seconds.
        """
        for component, value in self._iter_finished(timeout):
            yield jobfiles.read_input(self._dir / "inputs", component), value

    def _iter_finished(self, timeout: Timeout):
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
                    raise exceptions.TimeoutError(f"timed out after {poller.timeout:g} s waiting for map {self.tag}")
                poller.sleep(progressed)

    @_alive
    def iter_inputs(self) -> Iterator[Tuple[Tuple, Dict[str, Any]]]:
        """The inputs of the components, in component order.

        Returns
        -------
        iterator of tuple
            ``(args, kwargs)`` for each component: how the function is called for it.
        """
        return jobfiles.iter_inputs(self._dir / "inputs")

    @_alive
    def wait(self, timeout: Timeout = None, show_progress_bar: bool = False,
             holds_ok: bool = False, errors_ok: bool = False) -> None:
        """Block until every component has finished.

        Parameters
        ----------
        timeout : float or datetime.timedelta, optional
            How long to wait at most. ``None`` (the default) waits as long as it takes.
        show_progress_bar : bool, optional
            Show a progress bar (a widget in Jupyter, text elsewhere). Default ``False``.
        holds_ok : bool, optional
            Count held components as finished instead of raising. Default ``False``.
        errors_ok : bool, optional
            Count errored components as finished instead of raising. Default ``False``.

        Raises
        ------
        htmap.exceptions.MapComponentError
            As soon as a component has errored, unless ``errors_ok``.
        htmap.exceptions.MapComponentHeld
            As soon as a component is held, unless ``holds_ok``.
        htmap.exceptions.TimeoutError
            If the map has not finished within ``timeout`` seconds.
        """
        from .progress import progress_bar

        poller = Poller(timeout)
        bar = progress_bar(self.tag, len(self)) if show_progress_bar else None
        try:
            while True:
                progressed = self._refresh()
                counts = self._state.counts()
                done = counts[ComponentStatus.COMPLETED] + counts[ComponentStatus.ERRORED] + counts[ComponentStatus.REMOVED]
                if holds_ok:
                    done += counts[ComponentStatus.HELD]
                if bar is not None:
                    _show_progress(bar, done, counts)
                if counts[ComponentStatus.ERRORED] and not errors_ok:
                    component = self._state.with_status(ComponentStatus.ERRORED)[0]
                    found, _ = self._try_output(component)  # raises MapComponentError
                    if not found:
                        raise exceptions.MapComponentError(f"component {component} of map {self.tag} errored")
                if counts[ComponentStatus.HELD] and not holds_ok:
                    raise self._held(self._state.with_status(ComponentStatus.HELD)[0])
                if done >= len(self):
                    return
                if poller.expired():
                    raise exceptions.TimeoutError(
                        f"timed out after {poller.timeout:g} s waiting for map {self.tag}: {self.status()}")
                poller.sleep(progressed)
        finally:
            if bar is not None:
                bar.close()

    # -- reports ----------------------------------------------------------------
    @_alive_property
    def errors(self) -> Dict[int, ComponentError]:
        """The error reports of the errored components, ``{component: ComponentError}``, as in HTMap 0.6.

        Waits until every component has finished or is held; ``errors_so_far`` does not wait.

        Returns
        -------
        dict
            ``{component: ComponentError}`` for each errored component.
        """
        self.wait(holds_ok=True, errors_ok=True)
        return self.errors_so_far

    @_alive_property
    def errors_so_far(self) -> Dict[int, ComponentError]:
        """The error reports of the components that have errored so far; never waits.

        Returns
        -------
        dict
            ``{component: ComponentError}`` for each component errored so far.
        """
        self._refresh()
        out = {}
        for component in self._state.with_status(ComponentStatus.ERRORED):
            try:
                kind, payload = jobfiles.read_output(self._output_path(component))
            except FileNotFoundError:
                continue
            if kind == "ERR":
                out[component] = self._error(component, payload)
        return out

    @_alive
    def error_reports(self) -> List[str]:
        """The readable error reports of the components that have errored so far; never waits.

        Returns
        -------
        list of str
            One report per errored component, as ``ComponentError.report()`` gives it.
        """
        return [e.report() for e in self.errors_so_far.values()]

    @_alive_property
    def holds(self) -> Dict[int, ComponentHold]:
        """The held components and why they are held: ``{component: ComponentHold}``."""
        self._refresh()
        return {c: ComponentHold(code, reason) for c, (reason, code) in sorted(self._state.holds.items())
                if self._state.status_of(c) is ComponentStatus.HELD}

    @_alive
    def hold_report(self) -> str:
        """A table of the held components, their hold codes and reasons.

        Returns
        -------
        str
            The table, or a sentence saying that no component is held.
        """
        holds = self.holds
        if not holds:
            return f"map {self.tag} has no held components"
        rows = [("Component", "Code", "Hold Reason")] + [(str(c), str(h.code if h.code is not None else ""), h.reason)
                                                          for c, h in holds.items()]
        widths = [max(len(r[i]) for r in rows) for i in range(2)]
        return "\n".join(f"{r[0]:>{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]}" for r in rows)

    @_alive_property
    def memory_usage(self) -> List[int]:
        """The peak resident memory of each component, in MB (0 for those that have not run)."""
        self._refresh()
        return list(self._state.memory_mb)

    @_alive_property
    def runtime(self) -> List[datetime.timedelta]:
        """How long each component ran, as a list of ``datetime.timedelta`` in component order."""
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
    def output_files(self) -> MapOutputFiles:
        """The output files of each component: ``m.output_files[i]`` is a directory (see ``MapOutputFiles``)."""
        return MapOutputFiles(self)

    @_alive_property
    def stdout(self) -> MapStdOut:
        """What each component wrote to stdout: ``m.stdout[i]``, ``m.stdout.get(i, timeout)`` (see ``MapStdX``)."""
        return self._stdout

    @_alive_property
    def stderr(self) -> MapStdErr:
        """What each component wrote to stderr: ``m.stderr[i]``, ``m.stderr.get(i, timeout)`` (see ``MapStdX``)."""
        return self._stderr

    # -- control ----------------------------------------------------------------
    def _targets(self, components: Optional[Sequence[int]]) -> Optional[List[int]]:
        if components is None:
            return None
        out = [int(c) for c in components]
        for c in out:
            self._check_component(c)
        return out

    def _act(self, action: Action, components: Optional[Sequence[int]], reason: Optional[str] = None) -> None:
        targets = self._targets(components)
        self._engine.act(self._job, action, targets, reason)
        wait = getattr(self._engine, "wait_for_control", None)
        if wait is not None:
            wait(self._job)
        if self._engine.acts_settle_later:
            self._settle(action, targets)

    def _settle(self, action: Action, components: Optional[List[int]]) -> None:
        """Wait (a while) until the folded state shows the act, so that no stale status (a hold
        just released) is read right after it. Engines whose acts reach their event stream later
        than the act returns (HTCondor's job event log) need this."""
        settled = SETTLED.get(action)
        if settled is None:
            return
        poller = Poller(SETTLE_SECONDS)
        while True:
            progressed = self._refresh()
            if self._state.all_in(settled, components) or poller.expired():
                return
            poller.sleep(progressed)

    @_alive
    def hold(self, components: Optional[Sequence[int]] = None, reason: Optional[str] = None) -> None:
        """Hold components: they stop (if running) and will not run until released.

        Parameters
        ----------
        components : sequence of int, optional
            The component indices to act on. ``None`` (the default) means every component.
        reason : str, optional
            The hold reason shown by ``Map.holds`` and ``htmap reasons``.

        Raises
        ------
        htmap.exceptions.CannotControlMap
            If the map's engine cannot be reached from here.
        """
        self._act(Action.HOLD, components, reason)

    @_alive
    def release(self, components: Optional[Sequence[int]] = None) -> None:
        """Release held components, so that they run again.

        Parameters
        ----------
        components : sequence of int, optional
            The component indices to act on. ``None`` (the default) means every component.

        Raises
        ------
        htmap.exceptions.CannotControlMap
            If the map's engine cannot be reached from here.
        """
        self._act(Action.RELEASE, components)

    @_alive
    def pause(self, components: Optional[Sequence[int]] = None) -> None:
        """Suspend running components in place (SUSPENDED) until they are resumed.

        Components that are not running are not affected. On Slurm, suspending needs operator
        rights.

        Parameters
        ----------
        components : sequence of int, optional
            The component indices to act on. ``None`` (the default) means every component.

        Raises
        ------
        htmap.exceptions.CannotControlMap
            If the map's engine cannot be reached from here.
        """
        self._act(Action.PAUSE, components)

    @_alive
    def resume(self, components: Optional[Sequence[int]] = None) -> None:
        """Resume suspended components: they continue where they were paused.

        Parameters
        ----------
        components : sequence of int, optional
            The component indices to act on. ``None`` (the default) means every component.

        Raises
        ------
        htmap.exceptions.CannotControlMap
            If the map's engine cannot be reached from here.
        """
        self._act(Action.RESUME, components)

    @_alive
    def vacate(self, components: Optional[Sequence[int]] = None) -> None:
        """Stop running components and put them back in the queue, to run again from the start (or
        from their last checkpoint).

        Parameters
        ----------
        components : sequence of int, optional
            The component indices to act on. ``None`` (the default) means every component.

        Raises
        ------
        htmap.exceptions.CannotControlMap
            If the map's engine cannot be reached from here.
        """
        self._act(Action.VACATE, components)

    @_alive
    def set_memory(self, memory: Any, components: Optional[Sequence[int]] = None) -> None:
        """Change the memory request of components that have not finished.

        Parameters
        ----------
        memory : int or str
            The new request: a number of MB, or a size such as ``"4GB"``.
        components : sequence of int, optional
            The component indices to act on. ``None`` (the default) means every component.

        Raises
        ------
        htmap.exceptions.InvalidOption
            If ``memory`` is not a size.
        """
        from .options import parse_size

        self._engine.edit(self._job, "request_memory", parse_size(memory, "MB", "memory"), self._targets(components))

    @_alive
    def set_disk(self, disk: Any, components: Optional[Sequence[int]] = None) -> None:
        """Change the disk request of components that have not finished.

        Parameters
        ----------
        disk : int or str
            The new request: a number of KB, or a size such as ``"10GB"``.
        components : sequence of int, optional
            The component indices to act on. ``None`` (the default) means every component.

        Raises
        ------
        htmap.exceptions.InvalidOption
            If ``disk`` is not a size.
        """
        from .options import parse_size

        self._engine.edit(self._job, "request_disk", parse_size(disk, "KB", "disk"), self._targets(components))

    @_alive
    def set_runtime(self, runtime: Any, components: Optional[Sequence[int]] = None) -> None:
        """Change the runtime limit of components, for their next run.

        Parameters
        ----------
        runtime : int or str
            The new limit: seconds, or a duration such as ``"90s"``, ``"2h"`` or ``"01:30:00"``.
        components : sequence of int, optional
            The component indices to act on. ``None`` (the default) means every component.

        Raises
        ------
        htmap.exceptions.InvalidOption
            If ``runtime`` is not a duration.
        """
        from .options import parse_duration

        self._engine.edit(self._job, "max_runtime", parse_duration(runtime), self._targets(components))

    @_alive
    def remove(self, force: bool = False, components: Optional[Sequence[int]] = None) -> None:
        """Stop every component and delete the map and all its files.

        With ``components``, only those components are stopped (they become REMOVED, and
        ``rerun`` brings them back); the map is kept. After removing the whole map, this object can
        no longer be used.

        Parameters
        ----------
        force : bool, optional
            Delete the map's files even if its engine could not be told to stop the components.
            Default ``False``.
        components : sequence of int, optional
            Stop only these components and keep the map.

        Raises
        ------
        htmap.exceptions.CannotControlMap
            If the map's engine cannot be reached from here (and ``force`` is not given).
        """
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
        """Run finished components again; their old outputs and logs are deleted.

        Parameters
        ----------
        components : sequence of int, optional
            The components to run again. ``None`` (the default) means every component.

        Raises
        ------
        htmap.exceptions.CannotRerunComponents
            If any of the components has not finished.
        """
        self._refresh()
        targets = list(range(len(self))) if components is None else self._rerun_targets(components)
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

    def _rerun_targets(self, components: Sequence[int]) -> List[int]:
        targets = [int(c) for c in components]
        outside = sorted({c for c in targets if not 0 <= c < len(self)})
        if outside:
            raise exceptions.CannotRerunComponents(
                f"cannot rerun components {', '.join(map(str, outside[:10]))} of map {self.tag}: they are not "
                f"in the map (its components are 0 to {len(self) - 1})"
            )
        return targets

    def _remove_results(self, components: Sequence[int]) -> None:
        """Delete the outputs and logs of components about to run again. Many: one pass over the
        directories (a rerun of 100,000 components); few: by name."""
        paths = self._job.paths
        if len(components) > 1000:
            wanted = set(components)
            for sub in (layout.OUTPUTS, layout.LOGS):
                for d in paths.iter_component_dirs(sub):
                    with os.scandir(d) as entries:
                        for entry in entries:
                            stem = entry.name.partition(".")[0]
                            if stem.isdigit() and int(stem) in wanted:
                                os.unlink(entry.path)
            self._remove_output_files(wanted)
            return
        for c in components:
            for path in (paths.output(c), paths.log(c, "stdout"), paths.log(c, "stderr")):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        self._remove_output_files(components)

    def _remove_output_files(self, components) -> None:
        """Delete earlier output files, so a stale file never looks like a fresh result."""
        paths = self._job.paths
        for c in components:
            shutil.rmtree(paths.output_files(c), ignore_errors=True)

    @_alive
    def retag(self, new_tag: str) -> None:
        """Give the map a new tag. A retagged map is no longer transient.

        Parameters
        ----------
        new_tag : str
            The new tag.

        Raises
        ------
        htmap.exceptions.InvalidTag
            If ``new_tag`` is not a valid tag.
        htmap.exceptions.TagAlreadyExists
            If another map already has ``new_tag``.
        """
        if new_tag == self._tag:
            return
        try:
            tags.validate(new_tag)
        except exceptions.InvalidTag as e:
            raise exceptions.RetagInvalidTag(f"{e} (map {self._tag!r} keeps its tag)") from None
        try:
            mapstore.rename_tag(self._tag, new_tag, self._uid)
        except exceptions.TagAlreadyExists as e:
            raise exceptions.RetagTagAlreadyExists(f"{e} (map {self._tag!r} keeps its tag)") from None
        self._meta["tag"] = new_tag
        self._meta["transient"] = False
        mapstore.write_meta(self._dir, self._meta)
        self._tag = new_tag
