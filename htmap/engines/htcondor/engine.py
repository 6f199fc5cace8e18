"""The HTCondor engine: one cluster per submission, state from the map's job event log.

Files of a map this engine adds (all under the map's ``engine/``)::

    htmap_exec.sh      the job wrapper (see ``delivery``), the cluster's executable
    inputs/<i>.in      component i's pickled (args, kwargs), shipped to its job only
    events             the job event log of every cluster of the map (reruns included)
    clusters.json      [{"cluster": id, "runs": [[first, count], ...], "late": bool, "time": t}]

A component's job runs the runner with OUTPUT_DIR ``.``; ``<i>.out`` comes back to the
map's ``outputs/<i>.out`` (``transfer_output_remaps``), files from
``htmap.transfer_output_files()`` to ``output_files/<i>/``, stdout/stderr to
``logs/<i>.stdout|stderr``.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ... import delivery as delivery_registry
from ... import exceptions, jobfiles, runner, store
from ..base import Action, ComponentEvent, Engine, EventKind, JobSet
from . import bindings, deferred, delivery, events, sites
from .description import EVENT_LOG, HOLD_DEFERRED_EDIT, INPUTS_DIR, Description, is_late

CLUSTERS_FILE = "clusters.json"
INPUT_CHUNK_THRESHOLD = 10_000  # components in one submission above which inputs travel in chunks
CHUNK_BYTES = 1 << 20  # a chunk holds about this much input at most...
MAX_CHUNK = 1000  # ...and at most this many components
MIN_CHUNK = 16  # inputs so big that fewer fit: one file per component
ACTIONS = {
    Action.HOLD: "Hold",
    Action.RELEASE: "Release",
    Action.PAUSE: "Suspend",
    Action.RESUME: "Continue",
    Action.VACATE: "Vacate",
    Action.REMOVE: "Remove",
}
EDITABLE = {"request_memory": "RequestMemory", "request_disk": "RequestDisk"}
EOS_PREFIXES = ("/eos/",)


def _setting(settings: Dict[str, Any], dotted: str, default: Any = "") -> Any:
    return delivery._setting(settings, dotted, default)


def map_constraint(job: JobSet, components: Optional[Sequence[int]] = None,
                   clusters: Optional[Sequence[int]] = None) -> str:
    """The ClassAd constraint selecting a map's jobs (its clusters; only the given components)."""
    base = f'(HTMapJobId == "{job.job_id}")'
    if clusters:
        base = f"({' || '.join(f'ClusterId == {int(c)}' for c in sorted(set(clusters)))}) && {base}"
    if components is None:
        return base
    parts = []
    for first, count in events.ranges(list(components)):
        if count == 1:
            parts.append(f"component == {first}")
        else:
            parts.append(f"(component >= {first} && component <= {first + count - 1})")
    if not parts:
        return "false"
    return f"{base} && ({' || '.join(parts)})"


class HTCondorEngine(Engine):
    name = "htcondor"
    acts_settle_later = True  # the job event log shows holds/releases a moment after the schedd did them

    def __init__(self, settings: Optional[Dict[str, Any]] = None, scheduler: Optional[bindings.Scheduler] = None,
                 transplant_prefix: Optional[Path] = None):
        super().__init__(settings)
        self._scheduler = scheduler
        self.transplant_prefix = transplant_prefix
        self._htcondor2 = None

    # -- plumbing ------------------------------------------------------------------------
    @property
    def scheduler(self) -> bindings.Scheduler:
        if self._scheduler is None:
            self._scheduler = bindings.HTCondorScheduler(
                str(_setting(self.settings, "HTCONDOR.SCHEDULER", "") or ""),
                str(_setting(self.settings, "HTCONDOR.COLLECTOR", "") or ""),
            )
        return self._scheduler

    @property
    def htcondor2(self):
        if self._htcondor2 is None:
            self._htcondor2 = bindings.import_htcondor2()
        return self._htcondor2

    @classmethod
    def available(cls) -> Tuple[bool, str]:
        from ...settings import settings

        return bindings.probe(str(settings.get("HTCONDOR.SCHEDULER", "") or ""),
                              str(settings.get("HTCONDOR.COLLECTOR", "") or ""))

    @classmethod
    def installed(cls) -> str:
        # (importing the bindings sets CONDOR_CONFIG=/dev/null where no configuration is found)
        if os.environ.get("CONDOR_CONFIG", "/dev/null") not in ("/dev/null", "ONLY_ENV"):
            return "CONDOR_CONFIG is set"
        if os.path.exists("/etc/condor"):
            return "/etc/condor exists"
        return "condor_submit is on PATH" if shutil.which("condor_submit") else ""

    def _htmap_dir(self, job: JobSet) -> Path:
        raw = job.settings.get("HTMAP_DIR") or self.settings.get("HTMAP_DIR") or job.directory.parent.parent
        return Path(os.path.expanduser(str(raw)))

    # -- check -------------------------------------------------------------------------------
    def check(self, job: JobSet) -> None:
        settings = job.settings or self.settings
        preset = sites.site_preset(settings.get("SITE", ""))
        where = str(self._htmap_dir(job).absolute())
        prefixes = list(preset.get("forbidden_dir_prefixes", ())) + [
            (p, sites.SITES["cern"]["forbidden_dir_prefixes"][0][1]) for p in EOS_PREFIXES]
        for prefix, message in prefixes:
            if (where.rstrip("/") + "/").startswith(prefix):
                raise exceptions.InvalidOption(message.format(dir=where))
        method = str(settings.get("DELIVERY_METHOD", "assume") or "assume")
        delivery_registry.check_delivery_method(method)
        for key in ("max_retries",):
            value = job.fixed.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise exceptions.InvalidOption(f"{key}={value!r} must be a whole number >= 0")
        factor = job.fixed.get("retry_memory_factor")
        if factor is not None and (not isinstance(factor, (int, float)) or factor < 1):
            raise exceptions.InvalidOption(f"retry_memory_factor={factor!r} must be a number >= 1")
        # builds the description (validates options, flavours, remaps) without side effects
        self._description(job, dry=True).build(list(range(min(job.num_components, 1))) or [0])
        if self._scheduler is None:
            self.htcondor2  # a clear error now rather than half-way through submit

    # -- submit ------------------------------------------------------------------------------
    def _delivery(self, job: JobSet, dry: bool = False):
        settings = job.settings or self.settings
        method = delivery_registry.get_delivery_method(str(settings.get("DELIVERY_METHOD", "assume") or "assume"))
        preset = sites.site_preset(settings.get("SITE", ""))
        name = method.name
        if name == "assume" and preset.get("delivery"):
            name = preset["delivery"]
        if method.builtin or name != method.name:
            if dry and name == "transplant":
                return delivery.wrapper_script("python3", [], name), {}, [], "", {}
            script, descriptors, inputs, requirements = delivery.builtin_delivery(
                name, settings, self._htmap_dir(job), self.transplant_prefix)
            return script, descriptors, inputs, requirements, {}
        # a registered (HTMap 0.6 style) method: its descriptors go over htmap's own
        if method.setup_func is not None and not dry:
            method.setup_func(job.name, job.directory)
        custom = dict(method.options_func(job.name, job.directory)) if method.options_func else {}
        script, descriptors, inputs, requirements = delivery.builtin_delivery("assume", settings, self._htmap_dir(job))
        return script, descriptors, inputs, requirements, custom

    def _description(self, job: JobSet, dry: bool = False, delivered=None) -> Description:
        script, descriptors, inputs, requirements, custom = delivered or self._delivery(job, dry)
        return Description(job, runner=jobfiles.runner_path(), delivery_descriptors=descriptors,
                           delivery_inputs=inputs, delivery_requirements=requirements, custom_descriptors=custom)

    def build(self, job: JobSet, components: Sequence[int], chunks: Optional[Dict[int, Tuple[str, int]]] = None
              ) -> Tuple[Dict[str, str], List[Dict[str, str]], str]:
        """(submit description, item data, wrapper script) for ``components`` (no side effects on the pool)."""
        delivered = self._delivery(job)
        desc, items = self._description(job, delivered=delivered).build(components, chunks)
        return desc, items, delivered[0]

    def chunk_size(self, job: JobSet, components: Sequence[int]) -> int:
        """Components per input chunk for this submission; 0: one input file per component."""
        if len(components) <= INPUT_CHUNK_THRESHOLD:
            return 0
        average = max(1, (job.inputs_dir / "data").stat().st_size // max(1, job.num_components))
        size = min(MAX_CHUNK, CHUNK_BYTES // average)
        return size if size >= MIN_CHUNK else 0

    def write_inputs(self, job: JobSet, components: Sequence[int]) -> Optional[Dict[int, Tuple[str, int]]]:
        """Ship each job its own input.

        Up to ``INPUT_CHUNK_THRESHOLD`` components: one file per component,
        ``engine/inputs/<i>.in``. Larger submissions of small inputs: chunks of up to
        ``MAX_CHUNK`` consecutive components (at most ~``CHUNK_BYTES``),
        ``engine/inputs/_htmap_chunk_<first>.data|.index`` (a slice of the map's input store
        with its own offsets), so a million-component map writes a thousand files, not a
        million; the wrapper takes the component's input out of its chunk. Returns
        component -> (chunk name, first component), or None for per-component files.
        """
        paths = job.paths  # each file in its component's shard (htmap/layout.py)
        store.make_dir(job.engine_dir / INPUTS_DIR)
        entry = runner.INDEX_ENTRY
        size = self.chunk_size(job, components)
        chunks: Dict[int, Tuple[str, int]] = {}
        with open(job.inputs_dir / "index", "rb") as idx, open(job.inputs_dir / "data", "rb") as data:
            def offsets(first: int, count: int) -> List[int]:
                idx.seek(first * entry.size)
                raw = idx.read((count + 1) * entry.size)
                return [entry.unpack_from(raw, k * entry.size)[0] for k in range(count + 1)]

            for c in sorted(components):
                if size:
                    first = c - c % size
                    name = f"_htmap_chunk_{first}"
                    chunks[c] = (name, first)
                    index_path = paths.engine_input(first, f"{name}.index")
                    if index_path.exists():
                        continue
                    store.make_dir(index_path.parent)
                    bounds = offsets(first, min(size, job.num_components - first))
                    data.seek(bounds[0])
                    store.write_bytes_atomic(index_path.with_suffix(".data"), data.read(bounds[-1] - bounds[0]))
                    store.write_bytes_atomic(index_path, b"".join(entry.pack(b - bounds[0]) for b in bounds))
                    continue
                path = paths.engine_input(c, f"{c}.in")
                if path.exists():
                    continue
                store.make_dir(path.parent)
                start, end = offsets(c, 1)
                data.seek(start)
                store.write_bytes_atomic(path, data.read(end - start))
        return chunks or None

    def submit(self, job: JobSet, components: Optional[Sequence[int]] = None) -> None:
        components = list(range(job.num_components)) if components is None else sorted(set(components))
        if not components:
            return
        job.paths.make_dirs(components)  # the shadow writes logs and outputs there
        store.make_dir(job.engine_dir)
        chunks = self.write_inputs(job, components)
        desc, items, script = self.build(job, components, chunks)
        write_executable(job.engine_dir / delivery.WRAPPER_NAME, script)
        if is_late(desc):  # its jobs read what was meant for them before they existed
            deferred.drop(job.engine_dir, {"hold", "remove"}, components)
            deferred.add(job.engine_dir, [])
        if desc.get("MY.SendCredential") == "true":
            try:
                self.scheduler.add_kerberos_credential()
            except exceptions.HTMapException:
                raise
            except Exception as e:
                raise bindings.kerberos_error(e) from e
        try:
            cluster = self.scheduler.submit(desc, items)
        except exceptions.HTMapException:
            raise
        except Exception as e:
            raise exceptions.EngineUnavailable(
                f"the HTCondor schedd refused map {job.name!r} ({type(e).__name__}: {e})") from e
        self._record_cluster(job, cluster, components, is_late(desc))

    def _record_cluster(self, job: JobSet, cluster: int, components: List[int], late: bool) -> None:
        records = read_clusters(job)
        records.append({"cluster": int(cluster), "runs": [list(r) for r in events.ranges(components)],
                        "late": bool(late), "time": time.time()})
        store.write_text_atomic(job.engine_dir / CLUSTERS_FILE, json.dumps(records))

    # -- events ------------------------------------------------------------------------------
    def read_events(self, job: JobSet, cursor: Any) -> Tuple[List[ComponentEvent], Any]:
        cursor = dict(cursor) if cursor else events.new_cursor()
        cursor["learned"] = {k: dict(v) for k, v in cursor.get("learned", {}).items()}
        records = read_clusters(job)
        out: List[ComponentEvent] = []
        # newly recorded clusters: all their components are queued (or waiting to materialize)
        for record in records[cursor["records"]:]:
            kind = EventKind.UNMATERIALIZED if record.get("late") else EventKind.SUBMITTED
            for first, count in record["runs"]:
                out.append(ComponentEvent(first, kind, float(record.get("time", 0.0)), count=count))
        cursor["records"] = len(records)
        clusters = {int(r["cluster"]): events.expand(r["runs"]) for r in records}
        data, offset = events.read_complete(str(job.engine_dir / EVENT_LOG), cursor["offset"])
        if data:
            parsed = events.parse_events(data, self.htcondor2)
            folder = events.Folder(
                self.htcondor2, clusters, cursor,
                output_kind=lambda c: _output_kind(job, c),
                stderr_tail=lambda c: jobfiles.tail(job.paths.log(c, "stderr"), 2000),
                record_failure=lambda c, why, tail: jobfiles.write_failure(job.paths.output(c), c, why, tail),
                max_retries=int(job.fixed.get("max_retries", 0) or 0),
            )
            waiting: Dict[str, List[int]] = {deferred.EDIT_REASON: [], deferred.REMOVE_REASON: []}
            for event in folder.fold(parsed):
                why = (event.reason or "").split("\n", 1)[0]
                if event.kind is EventKind.HELD and why in waiting:
                    waiting[why].append(event.component)  # held only until htmap acts: no hold to show
                else:
                    out.append(event)
            if waiting[deferred.EDIT_REASON]:
                self.apply_deferred_edits(job, waiting[deferred.EDIT_REASON])
            if waiting[deferred.REMOVE_REASON]:
                self.scheduler.act("Remove", map_constraint(job, waiting[deferred.REMOVE_REASON]),
                                   reason=(deferred.REMOVE_REASON, 0))
            cursor["offset"] = offset
        return out, cursor

    # -- control -----------------------------------------------------------------------------
    def act(self, job: JobSet, action: Action, components: Optional[Sequence[int]] = None,
            reason: Optional[str] = None) -> None:
        action = Action(action)
        records = read_clusters(job)
        constraint = map_constraint(job, components, [r["cluster"] for r in records])
        text = reason or f"{action.value} by htmap"
        # the 25.x bindings drop a plain-string reason: always pass (text, code)
        self.scheduler.act(ACTIONS[action], constraint, reason=(text, 0))
        late = [int(r["cluster"]) for r in records if r.get("late")]
        if late and action in (Action.HOLD, Action.RELEASE, Action.REMOVE):
            self._act_on_unmaterialized(job, action, components, late, text)

    def _act_on_unmaterialized(self, job: JobSet, action: Action, components: Optional[Sequence[int]],
                               clusters: List[int], reason: str) -> None:
        """Late clusters: a whole-map act goes to the factory too (a hold of the cluster id pauses
        it, a release resumes it, a remove ends it); an act on some components waits in
        ``engine/deferred`` for their jobs."""
        if action is Action.RELEASE:
            deferred.drop(job.engine_dir, {"hold"}, components)
        if components is None:
            for cluster in clusters:
                self.scheduler.act(ACTIONS[action], str(cluster), reason=(reason, 0))
        elif action is not Action.RELEASE:
            deferred.add(job.engine_dir, [f"{action.value} {c}" for c in components])

    def edit(self, job: JobSet, resource: str, value: Any, components: Optional[Sequence[int]] = None) -> None:
        try:
            attr = EDITABLE[resource]
        except KeyError:
            raise exceptions.InvalidOption(
                f"the htcondor engine can edit {', '.join(EDITABLE)}, not {resource!r}") from None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise exceptions.InvalidOption(f"{resource}={value!r} must be a positive whole number")
        records = read_clusters(job)
        constraint = (map_constraint(job, components, [r["cluster"] for r in records])
                      + " && (JobStatus =!= 4) && (JobStatus =!= 3)")
        if resource == "request_memory" and job.fixed.get("retry_memory_factor"):
            attr = "HTMapRequestMemory"  # escalation reads HTMapRequestMemory: edit the base it grows from
        late = any(r.get("late") for r in records)
        try:
            self.scheduler.edit(constraint, attr, str(value))
        except Exception:
            if not late:
                raise  # (late: perhaps none of them is a job yet; the deferred edit reaches them)
        if late:  # and the jobs not made yet, when they start
            who = ["*"] if components is None else [str(c) for c in components]
            lines = [line for line in deferred.read(job.engine_dir)
                     if not (line.startswith("set ") and line.split()[1] in who and line.split()[2] == attr)]
            deferred.write(job.engine_dir, lines + [f"set {c} {attr} {value}" for c in who])

    def apply_deferred_edits(self, job: JobSet, held: Sequence[int]) -> None:
        """Jobs held because an edit meant for them came before they existed: edit, then release."""
        for c in held:
            constraint = map_constraint(job, [c]) + f" && (HoldReasonSubCode =?= {HOLD_DEFERRED_EDIT})"
            for attr, value in deferred.edits_for(job.engine_dir, c):
                self.scheduler.edit(constraint, attr, value)
            self.scheduler.act("Release", constraint, reason=("edited by htmap", 0))

    def forget(self, job: JobSet) -> None:
        """Nothing outside the map directory: the event log and records go with it."""


def _output_kind(job: JobSet, component: int) -> Optional[str]:
    try:
        return jobfiles.output_kind(job.paths.output(component))
    except exceptions.InvalidOutputStatus:
        return None


def read_clusters(job: JobSet) -> List[Dict[str, Any]]:
    try:
        with open(job.engine_dir / CLUSTERS_FILE) as f:
            return json.load(f)
    except FileNotFoundError:
        return []


def write_executable(path: Path, text: str) -> None:
    try:
        if path.read_text() == text:
            return
    except FileNotFoundError:
        pass
    tmp = store.temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
