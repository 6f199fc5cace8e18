"""The one interface every engine implements.

An engine runs the components of a *job set* (a directory laid out by the core, see
``JobSet``) and reports what happened as ``ComponentEvent``s. It knows nothing of
``Map``; the core knows nothing of any one engine.
"""
from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple


class EventKind(str, enum.Enum):
    """What can happen to a component, in every engine's terms."""

    SUBMITTED = "submitted"  # queued, waiting to run (IDLE)
    UNMATERIALIZED = "unmaterialized"  # accepted, but not yet a job (late materialization)
    RUNNING = "running"
    COMPLETED = "completed"  # finished and its output holds a return value
    ERRORED = "errored"  # finished and its output holds an error report
    HELD = "held"  # stopped by the user or the scheduler; ``reason`` says why
    RELEASED = "released"  # back to waiting after a hold
    EVICTED = "evicted"  # stopped while running; will run again
    SUSPENDED = "suspended"
    UNSUSPENDED = "unsuspended"
    REMOVED = "removed"
    RESOURCES = "resources"  # a measurement: ``memory_mb`` (peak so far)


@dataclass(frozen=True)
class ComponentEvent:
    """Something that happened to components ``component .. component + count - 1``."""

    component: int
    kind: EventKind
    time: float
    reason: Optional[str] = None
    code: Optional[int] = None  # e.g. HTCondor HoldReasonCode
    memory_mb: Optional[int] = None
    runtime: Optional[float] = None
    count: int = 1  # > 1 only for bulk events such as SUBMITTED of a whole map


class Action(str, enum.Enum):
    HOLD = "hold"
    RELEASE = "release"
    PAUSE = "pause"
    RESUME = "resume"
    VACATE = "vacate"
    REMOVE = "remove"


@dataclass
class JobSet:
    """Everything an engine needs to run a map's components.

    Layout of ``directory`` (written by the core before ``submit``)::

        func            cloudpickled function
        inputs/data     concatenated cloudpickled (args, kwargs)
        inputs/index    little-endian uint64 offsets, num_components + 1 of them
        outputs/        the runner writes <component>.out here
        logs/           <component>.stdout / <component>.stderr
        engine/         private to the engine (its own state files)

    Map options arrive resolved: ``fixed`` apply to all components, ``per_component``
    are lists of length ``num_components``. The core normalizes the resource keys:
    ``request_memory`` int MB, ``request_disk`` int KB, ``request_cpus`` int,
    ``max_runtime`` int seconds; other keys pass through as the user gave them.
    ``custom`` are the user's scheduler-specific extras (HTCondor ``MY.`` attributes,
    extra ``#SBATCH`` lines), keys without ``+``/``MY.`` prefixes. ``settings`` is a
    snapshot of ``htmap.settings`` taken at submit.
    """

    job_id: str
    name: str
    directory: Path
    num_components: int
    fixed: Dict[str, Any] = field(default_factory=dict)
    per_component: Dict[str, List[Any]] = field(default_factory=dict)
    custom: Dict[str, Any] = field(default_factory=dict)
    settings: Dict[str, Any] = field(default_factory=dict)
    # files: paths or URLs; staged into each component's working directory
    fixed_input_files: List[str] = field(default_factory=list)
    input_files: Optional[List[List[str]]] = None  # one list per component
    output_remaps: Optional[List[Dict[str, str]]] = None  # one {name: destination} per component

    @property
    def func_path(self) -> Path:
        return self.directory / "func"

    @property
    def inputs_dir(self) -> Path:
        return self.directory / "inputs"

    @property
    def outputs_dir(self) -> Path:
        return self.directory / "outputs"

    @property
    def logs_dir(self) -> Path:
        return self.directory / "logs"

    @property
    def engine_dir(self) -> Path:
        return self.directory / "engine"

    def option(self, name: str, component: int, default: Any = None) -> Any:
        """The value of an option for one component."""
        if name in self.per_component:
            return self.per_component[name][component]
        return self.fixed.get(name, default)


Cursor = Any  # an engine's opaque, picklable position in its event stream


class Engine(abc.ABC):
    """Runs job sets. Subclasses are thin; the shared core does the rest."""

    name: str = ""
    # True when an act's events reach ``read_events`` some time after ``act`` returns: the core
    # then waits until its state shows the act before returning to the user
    acts_settle_later: bool = False

    def __init__(self, settings: Optional[Dict[str, Any]] = None):
        self.settings: Dict[str, Any] = dict(settings or {})

    @classmethod
    def available(cls) -> Tuple[bool, str]:
        """Whether this engine can run here, and a sentence saying why (for ``htmap info``)."""
        return True, ""

    @classmethod
    def installed(cls) -> str:
        """What shows that this engine's scheduler is installed here ("" when nothing does).

        ``ENGINE = "auto"`` never falls back to the local engine past an installed scheduler
        that cannot be used: that would run a cluster's workload on a login node."""
        return ""

    def check(self, job: JobSet) -> None:
        """Reject what this engine cannot run, before anything is submitted."""

    @abc.abstractmethod
    def submit(self, job: JobSet, components: Optional[Sequence[int]] = None) -> None:
        """Start running the given components (all when None)."""

    @abc.abstractmethod
    def read_events(self, job: JobSet, cursor: Cursor) -> Tuple[List[ComponentEvent], Cursor]:
        """The events since ``cursor`` (None = from the start) and the new cursor."""

    @abc.abstractmethod
    def act(self, job: JobSet, action: Action, components: Optional[Sequence[int]] = None,
            reason: Optional[str] = None) -> None:
        """Hold, release, pause, resume, vacate or remove components (all when None)."""

    def edit(self, job: JobSet, resource: str, value: Any, components: Optional[Sequence[int]] = None) -> None:
        """Change a resource request (``request_memory`` in MB, ``request_disk`` in KB)."""
        raise NotImplementedError(f"the {self.name} engine cannot edit {resource}")

    def live_log(self, job: JobSet, component: int, stream: str) -> Optional[Path]:
        """The file a running component's ``stream`` (stdout or stderr) grows in, or None.

        Engines whose jobs write straight into the map's logs (Slurm) need not override this."""
        return job.logs_dir / f"{component}.{stream}"

    def forget(self, job: JobSet) -> None:
        """Drop any engine-side record of the job set (called when its map is removed)."""
