"""The Slurm engine: one ``sbatch --array`` per group of components, state from ``squeue``.

Files under a map's ``engine/slurm/`` (all published by rename; no locks, so any
number of processes may read a map at once):

    job.py              the batch script: ``#!<python>``, ``#SBATCH`` lines, jobscript.py
    runner.py           a copy of htmap's runner, pinned for the life of the map
    files.json          per-component input files and output remaps (when there are any)
    subs/<seq>.json     one per submission: the arrays sbatch accepted and which components
                        they run (the newest submission holding a component is its current one)
    acts/<seq>.json     user actions that matter later: hold/remove/vacate reasons, edits
    ends/<c>-<seq>.json outcomes decided once and kept after Slurm forgets the job
                        (held for a time or memory limit)
    holds/<c>-<seq>     written by a task that found an input file missing
    claims/<c>-<seq>    who resubmits a component for a retry (created exclusively)
    attempts/           outputs of earlier attempts that were retried
    staging/            where the runner writes an output before the task publishes it
    stats/<c>           runtime and peak memory of the component's last run (JSON)
    scratch/<c>/        each component's working directory, kept across requeue
    ../checkpoints/<c>/ htmap.checkpoint() files (HTMAP_CHECKPOINT_DIR; engine/checkpoints as on
                        every engine), restored by the runner
    logs/<array>.log    Slurm's own stdout/stderr of the array (slurmstepd messages)

Every directory above with per-component entries (``<c>...``) and the map's own
``outputs/``, ``logs/``, ``output_files/`` keep them in shards (``stats/0/012/12345``, see
``htmap.layout``), so none outgrows AFS's per-directory limit; maps made before sharding
keep the flat names.

Component state is derived on every poll from (current submission, squeue row, output
file, end/hold files, actions) and compared with the per-component state kept in the
cursor; only changes become events. Hold/remove/edit also work after Slurm purged
a job from memory (MinJobAge): finished-without-output components are resubmitted on
release, and outcomes are written to ``ends/`` once.
"""
from __future__ import annotations

import bisect
import datetime
import json
import os
import secrets
import shlex
import shutil
import signal
import sys
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from ... import exceptions, jobfiles, layout, store
from ..base import Action, ComponentEvent, Engine, EventKind, JobSet
from . import commands
from .commands import SlurmError, SlurmPermissionError, SlurmSubmitError

# internal component codes kept in the cursor
NONE, IDLE, RUNNING, HELD, SUSPENDED, COMPLETED, ERRORED, REMOVED = range(8)
FINAL = (COMPLETED, ERRORED, REMOVED)

ENDS, HOLDS = "engine/slurm/ends", "engine/slurm/holds"  # per-component directories listed whole
POLL_INTERVAL = 0.5  # seconds between squeue calls for one map (SLURM.POLL_INTERVAL)
OUTPUT_SCAN_INTERVAL = 0.05  # seconds between listings of outputs/
VISIBILITY_GRACE = 60.0  # a job squeue does not show yet is not lost before this
OUTPUT_GRACE = 10.0  # a task that ended with status 0 gets this long for its output to show

HOLD_CODE_USER = 1  # as HTCondor: held by the user
HOLD_CODE_TIME = 47  # a runtime limit (HTCondor's allowed_job_duration), as the local engine
HOLD_CODE_MISSING_FILE = 13  # HTCondor: transfer input failed
HOLD_CODE_MEMORY = 34  # HTCondor: memory limit exceeded
HOLD_CODE_SLURM = 2  # held inside Slurm, not through htmap

SCHEDULER_FAILURES = ("FAILED", "NODE_FAIL", "BOOT_FAIL", "PREEMPTED", "DEADLINE", "OUT_OF_MEMORY", "TIMEOUT",
                      "LOST")
PENDING_STATES = ("PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD")
RUNNING_STATES = ("RUNNING", "CONFIGURING", "COMPLETING", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED")
HELD_REASONS = ("JobHeldUser", "JobHeldAdmin", "job requeued in held state")

# #SBATCH options htmap sets itself (custom_options may not), and what to use instead
RESERVED = {
    "array": "htmap makes the arrays", "a": "htmap makes the arrays",
    "output": "htmap captures stdout in m.stdout", "o": "htmap captures stdout in m.stdout",
    "error": "htmap captures stderr in m.stderr", "e": "htmap captures stderr in m.stderr",
    "input": "components read their inputs themselves", "i": "components read their inputs themselves",
    "job-name": "htmap names the job after the map", "J": "htmap names the job after the map",
    "chdir": "each component runs in its own scratch directory",
    "D": "each component runs in its own scratch directory",
    "open-mode": "htmap sets it", "parsable": "htmap sets it", "wrap": "htmap writes the script",
    "wait": "htmap never blocks on sbatch", "W": "htmap never blocks on sbatch", "hold": "use m.hold()", "H": "use m.hold()",
    "mem": "use request_memory", "mem-per-cpu": "use request_memory", "mem-per-gpu": "use request_memory",
    "tmp": "use request_disk", "cpus-per-task": "use request_cpus", "c": "use request_cpus",
    "time": "use max_runtime", "t": "use max_runtime",
    "partition": "use the partition option or SLURM.PARTITION", "p": "use the partition option",
    "account": "use the account option or SLURM.ACCOUNT", "A": "use the account option",
    "qos": "use the qos option or SLURM.QOS", "q": "use the qos option",
    "ntasks": "a component is one task", "n": "a component is one task",
    "nodes": "a component runs on one node", "N": "a component runs on one node",
    "export": "htmap passes the submitting environment",
}


SLURM_OPTIONS = frozenset({"partition", "account", "qos", "max_running"})  # map options beyond the portable ones

# ----------------------------------------------------------------------------- small helpers

def _seq() -> str:
    """A name that sorts in creation order and never collides."""
    return f"{time.time_ns():020d}-{secrets.token_hex(3)}"


def _seq_time(seq: str) -> float:
    try:
        return int(seq.split("-", 1)[0]) / 1e9
    except ValueError:
        return 0.0


def _ranges(components: Iterable[int]) -> List[List[int]]:
    """Sorted components as [[first, last], ...] (compact in JSON)."""
    out: List[List[int]] = []
    for c in sorted(set(components)):
        if out and c == out[-1][1] + 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def _expand(ranges: Optional[List[List[int]]]) -> Iterable[int]:
    for a, b in ranges or ():
        yield from range(a, b + 1)


def _covers(ranges: Optional[List[List[int]]], c: int) -> bool:
    if ranges is None:
        return True
    i = bisect.bisect_right([r[0] for r in ranges], c) - 1
    return i >= 0 and ranges[i][0] <= c <= ranges[i][1]


def _read_json(path: Path) -> Optional[Any]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _listdir(path: Path) -> List[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _parse_time(text: str) -> Optional[float]:
    if not text or text in ("N/A", "Unknown", "None"):
        return None
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _describe_exit(status: int) -> str:
    """A raw wait status as the local engine words it."""
    code, sig = status >> 8, status & 0x7F
    if sig:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"was killed by signal {sig} ({name})"
    return f"exited with code {code}"


# ----------------------------------------------------------------------------- records

@dataclass
class ArrayRec:
    array_id: str
    offset: int
    ranges: List[List[int]]  # components
    resources: Dict[str, Any]


@dataclass
class SubRec:
    seq: str
    arrays: List[ArrayRec]
    components: List[List[int]]
    attempts: Dict[int, int] = field(default_factory=dict)  # component -> attempt number (retries)
    history: Dict[int, List[str]] = field(default_factory=dict)  # component -> earlier attempts' reasons

    @property
    def time(self) -> float:
        return _seq_time(self.seq)

    def array_of(self, c: int) -> Optional[ArrayRec]:
        for a in self.arrays:
            if _covers(a.ranges, c):
                return a
        return None


Row = commands.TaskState


class Index:
    """What the submissions and actions of one map say, rebuilt when new files appear."""

    def __init__(self, n: int):
        self.n = n
        self.sub_names: List[str] = []
        self.subs: List[SubRec] = []
        self.latest = array("i", [-1]) * n  # index into subs, per component
        self.gen = array("I", bytes(4 * n))
        self.act_names: List[str] = []
        self.acts: List[Dict[str, Any]] = []

    def add_sub(self, rec: SubRec) -> None:
        i = len(self.subs)
        self.subs.append(rec)
        for c in _expand(rec.components):
            self.latest[c] = i
            self.gen[c] += 1

    def current(self, c: int) -> Optional[SubRec]:
        i = self.latest[c]
        return self.subs[i] if i >= 0 else None

    def last_act(self, c: int, actions: Tuple[str, ...], after: float) -> Optional[Dict[str, Any]]:
        for act in reversed(self.acts):
            if act["time"] < after:
                return None
            if act["action"] in actions and _covers(act.get("components"), c):
                return act
        return None

    def edited(self, c: int, resource: str) -> Optional[Any]:
        for act in reversed(self.acts):
            if act["action"] == "edit" and act["resource"] == resource and _covers(act.get("components"), c):
                return act["value"]
        return None


# ----------------------------------------------------------------------------- the engine

class SlurmEngine(Engine):
    name = "slurm"

    def __init__(self, settings: Optional[Dict[str, Any]] = None):
        super().__init__(settings)
        slurm = self.settings.get("SLURM", {}) or {}
        self.slurm_settings = slurm
        self.poll_interval = float(slurm.get("POLL_INTERVAL", POLL_INTERVAL) or POLL_INTERVAL)
        self._index: Dict[str, Index] = {}
        self._rows: Dict[str, Tuple[float, Optional[Dict[Tuple[str, int], Row]]]] = {}
        self._outputs: Dict[str, Tuple[float, set]] = {}
        self._no_output_since: Dict[Tuple[str, int, str], float] = {}
        self._stats_dir: Optional[Path] = None
        self._stats_layout: Optional[layout.Layout] = None
        self._ends: Dict[Tuple[str, str], Dict[str, Any]] = {}
        self._last_full: Dict[str, float] = {}
        self._control_waits: Dict[str, Tuple[Action, Dict[str, Dict[str, List[int]]]]] = {}

    # -- availability -------------------------------------------------------------
    @classmethod
    def available(cls) -> Tuple[bool, str]:
        return commands.sbatch_available()

    @classmethod
    def installed(cls) -> str:
        return "sbatch is on PATH" if shutil.which("sbatch") else ""

    # -- checks ---------------------------------------------------------------------
    def check(self, job: JobSet) -> None:
        from ...options import PORTABLE_OPTIONS, warn_unknown_options

        warn_unknown_options(list(job.fixed) + list(job.per_component), PORTABLE_OPTIONS | SLURM_OPTIONS, self.name)
        for key, value in job.custom.items():
            base = str(key).lstrip("-").split("=", 1)[0]
            word = base if len(base) == 1 else base.lower()  # -c and -C are different options
            if word in RESERVED:
                dashes = "-" if len(base) == 1 else "--"
                raise exceptions.ReservedOptionKeyword(
                    f"custom option {key!r} (#SBATCH {dashes}{base}) is set by htmap itself: {RESERVED[word]}"
                )
            if "\n" in str(key) or "\n" in str(value):
                raise exceptions.InvalidOption(f"custom option {key!r} must be one line")
        specs = list(job.fixed_input_files or [])
        for entry in job.input_files or []:
            specs.extend(entry or [])
        for remap in job.output_remaps or []:
            specs.extend((remap or {}).values())
        for spec in specs:
            if "://" in str(spec) and not str(spec).startswith("file://"):
                raise exceptions.InvalidOption(
                    f"the slurm engine moves files on the shared filesystem only; {spec} is a URL. "
                    "Fetch it inside the function, or use a path that the nodes can read"
                )
        throttle = job.fixed.get("max_running")
        if throttle is not None and (not str(throttle).isdigit() or int(throttle) < 1):
            raise exceptions.InvalidOption(f"max_running={throttle!r} must be a positive whole number")
        if job.fixed.get("max_retries") is not None:
            try:
                if int(job.fixed["max_retries"]) < 0:
                    raise ValueError
            except (TypeError, ValueError):
                raise exceptions.InvalidOption(
                    f"max_retries={job.fixed['max_retries']!r} must be a whole number >= 0") from None
        ok, why = commands.sbatch_available()
        if not ok:
            raise exceptions.EngineUnavailable(f"the slurm engine cannot submit from here: {why}")

    # -- paths ------------------------------------------------------------------------
    @staticmethod
    def _dir(job: JobSet) -> Path:
        return job.engine_dir / "slurm"

    def _cpath(self, job: JobSet, sub: str, c: int, name: str) -> Path:
        """A file of component ``c`` in the per-component directory ``engine/slurm/<sub>``, in
        ``c``'s shard (``htmap.layout``; flat for maps made before sharding)."""
        return job.paths.component_dir(self._dir(job) / sub, c) / name

    def _write_end(self, job: JobSet, c: int, name: str, fields: Dict[str, Any]) -> None:
        """Record an outcome decided once (``ends/``), in ``c``'s shard."""
        path = self._cpath(job, "ends", c, name)
        store.make_dir(path.parent)
        store.write_text_atomic(path, json.dumps(fields))

    @staticmethod
    def _names(job: JobSet, sub: str) -> set:
        """The names of every entry of a per-component directory (``outputs`` or ``engine/slurm/<sub>``),
        all shards together (names hold the component number, so they do not collide)."""
        names: set = set()
        for directory in job.paths.iter_component_dirs(sub):
            names.update(_listdir(directory))
        return names

    def _setting(self, job: JobSet, name: str, component: int = 0) -> Optional[str]:
        """partition/account/qos: map option, else settings SLURM.<NAME>."""
        value = job.option(name, component)
        if value in (None, ""):
            value = (job.settings.get("SLURM", {}) or {}).get(name.upper()) or self.slurm_settings.get(name.upper())
        return str(value) if value not in (None, "") else None

    # -- submit -------------------------------------------------------------------------
    def _prepare(self, job: JobSet) -> Path:
        d = self._dir(job)
        if (d / "job.py").exists():
            return d
        store.make_dir(d)
        for sub in ("subs", "acts", "ends", "holds", "claims", "attempts", "staging", "scratch", "logs", "stats"):
            store.make_dir(d / sub)
        store.make_dir(job.engine_dir / "checkpoints")  # where every engine keeps them
        runner_copy = d / "runner.py"
        store.write_bytes_atomic(runner_copy, jobfiles.runner_path().read_bytes())
        per_component = bool(job.input_files or job.output_remaps)
        if per_component:
            store.write_text_atomic(d / "files.json", json.dumps(
                {"input_files": job.input_files, "output_remaps": job.output_remaps}))
        config = {
            "map_dir": str(job.directory),
            "sharded": job.paths.sharded,  # per-component files in shards (htmap/layout.py)
            "job_id": job.job_id,
            "runner": str(runner_copy),
            "sys_path": [p for p in sys.path if p],
            "fixed_input_files": list(job.fixed_input_files or []),
            "per_component_files": per_component,
            "scratch_dir": str(self.slurm_settings.get("SCRATCH_DIR") or
                               (job.settings.get("SLURM", {}) or {}).get("SCRATCH_DIR") or ""),
        }
        body = (Path(__file__).with_name("jobscript.py")).read_text()
        python = sys.executable or "/usr/bin/env python3"
        if " " in python or len(python) > 120:
            python = "/usr/bin/env python3"
        lines = [f"#!{python}"]
        for key, value in job.custom.items():
            name = str(key).lstrip("-")
            dashes = "-" if len(name) == 1 else "--"
            if value is True or value in ("", None):
                lines.append(f"#SBATCH {dashes}{name}")
            elif len(name) == 1:
                lines.append(f"#SBATCH -{name} {value}")
            else:
                lines.append(f"#SBATCH --{name}={value}")
        lines.append(f"# htmap map {job.name} ({job.job_id}): generated by htmap's slurm engine")
        lines.append(f"CONFIG = {config!r}")
        text = "\n".join(lines) + "\n" + body
        store.write_text_atomic(d / "job.py", text)
        os.chmod(d / "job.py", 0o700)
        return d

    def _resources(self, job: JobSet, c: int, index: Optional[Index] = None,
                   memory: Optional[int] = None) -> Tuple:
        def pick(name):
            if index is not None:
                edited = index.edited(c, name)
                if edited is not None:
                    return edited
            return job.option(name, c)

        mem = memory if memory is not None else pick("request_memory")
        return (
            int(mem) if mem is not None else None,
            pick("request_disk"),
            job.option("request_cpus", c),
            pick("max_runtime"),
            self._setting(job, "partition", c),
            self._setting(job, "account", c),
            self._setting(job, "qos", c),
        )

    def _sbatch_args(self, job: JobSet, res: Tuple, d: Path) -> List[str]:
        mem, disk, cpus, runtime, partition, account, qos = res
        args = ["sbatch", "--parsable", f"--job-name=htmap-{job.name}", "--open-mode=append",
                f"--output={d / 'logs' / '%A.log'}", "--export=ALL"]
        if mem is not None:
            args.append(f"--mem={int(mem)}M")
        if disk is not None:
            args.append(f"--tmp={max(1, -(-int(disk) // 1024))}M")
        if cpus is not None:
            args.append(f"--cpus-per-task={int(cpus)}")
        if runtime is not None:
            args.append(f"--time={commands.format_time(int(runtime))}")
        if partition:
            args.append(f"--partition={partition}")
        if account:
            args.append(f"--account={account}")
        if qos:
            args.append(f"--qos={qos}")
        return args

    def _max_array_size(self, job: JobSet) -> int:
        size = commands.max_array_size()
        cap = self.slurm_settings.get("MAX_ARRAY_SIZE") or (job.settings.get("SLURM", {}) or {}).get("MAX_ARRAY_SIZE")
        if cap:
            size = min(size, int(cap))
        return max(1, size)

    def submit(self, job: JobSet, components: Optional[Sequence[int]] = None) -> None:
        targets = list(range(job.num_components)) if components is None else sorted(set(int(c) for c in components))
        if not targets:
            return
        index = self._load_index(job)
        self._submit(job, targets, index)

    def _submit(self, job: JobSet, targets: List[int], index: Optional[Index],
                memory: Optional[Dict[int, int]] = None, attempts: Optional[Dict[int, int]] = None,
                history: Optional[Dict[int, List[str]]] = None) -> SubRec:
        d = self._prepare(job)
        seq = _seq()
        groups: Dict[Tuple, List[int]] = {}
        uniform = not job.per_component and (index is None or not index.acts) and not memory
        if uniform:
            groups[self._resources(job, 0)] = targets
        else:
            for c in targets:
                res = self._resources(job, c, index, (memory or {}).get(c))
                groups.setdefault(res, []).append(c)
        max_size = self._max_array_size(job)
        throttle = job.fixed.get("max_running")
        arrays: List[ArrayRec] = []
        try:
            for res, comps in groups.items():
                base = self._sbatch_args(job, res, d)
                for offset, spec, chunk in commands.plan_chunks(comps, max_size):
                    array_arg = spec + (f"%{int(throttle)}" if throttle else "")
                    proc = commands.run(base + [f"--array={array_arg}", str(d / "job.py"), str(offset), seq])
                    if proc.returncode != 0:
                        asked = ", ".join(f"{k}={v}" for k, v in _res_dict(res).items()) or "no resource options"
                        raise SlurmSubmitError(
                            f"sbatch rejected map {job.name!r} ({asked}): {(proc.stderr or proc.stdout).strip()} "
                            f"(command: {' '.join(shlex.quote(a) for a in base)} --array={array_arg} ...)"
                        )
                    array_id = proc.stdout.strip().split(";")[0]
                    arrays.append(ArrayRec(array_id, offset, _ranges(chunk), _res_dict(res)))
        except BaseException:
            if arrays:  # do not leave half a map running untracked
                commands.run(["scancel"] + [a.array_id for a in arrays], timeout=30)
            raise
        rec = SubRec(seq, arrays, _ranges(targets), dict(attempts or {}), dict(history or {}))
        store.write_text_atomic(d / "subs" / f"{seq}.json", json.dumps(_sub_to_json(rec)))
        self._invalidate(job)  # poll squeue afresh
        return rec

    def _invalidate(self, job: JobSet) -> None:
        """The next read polls squeue and looks at every unfinished component."""
        self._rows.pop(job.job_id, None)
        self._last_full.pop(job.job_id, None)

    # -- index ------------------------------------------------------------------------------
    def _load_index(self, job: JobSet) -> Index:
        index = self._index.get(job.job_id)
        if index is None or index.n != job.num_components:
            index = self._index[job.job_id] = Index(job.num_components)
        d = self._dir(job)
        names = sorted(n for n in _listdir(d / "subs") if n.endswith(".json"))
        if names != index.sub_names:
            if names[: len(index.sub_names)] != index.sub_names:  # not just appended: rebuild
                index = self._index[job.job_id] = Index(job.num_components)
            for name in names[len(index.sub_names):]:
                data = _read_json(d / "subs" / name)
                if data is not None:
                    index.add_sub(_sub_from_json(data))
                index.sub_names.append(name)
        acts = sorted(n for n in _listdir(d / "acts") if n.endswith(".json"))
        if acts != index.act_names:
            index.acts = [a for a in (_read_json(d / "acts" / n) for n in acts) if a is not None]
            index.act_names = acts
        return index

    def _record_act(self, job: JobSet, **fields: Any) -> None:
        d = self._prepare(job)
        seq = _seq()
        fields["time"] = _seq_time(seq)
        store.write_text_atomic(d / "acts" / f"{seq}.json", json.dumps(fields))

    # -- state ------------------------------------------------------------------------------
    def _poll_rows(self, job: JobSet, index: Index, force: bool = False,
                   components: Optional[Sequence[int]] = None) -> Optional[Dict[Tuple[str, int], Row]]:
        """squeue rows of the arrays that run ``components`` (all current ones when None), rate limited."""
        now = time.monotonic()
        cached = self._rows.get(job.job_id)
        if cached is not None and not force and now - cached[0] < self.poll_interval:
            return cached[1]
        wanted = set()
        seen_subs = set()
        for c in (range(job.num_components) if components is None else components):
            i = index.latest[c]
            if i >= 0 and i not in seen_subs:
                seen_subs.add(i)
        for i in seen_subs:
            wanted.update(a.array_id for a in index.subs[i].arrays)
        array_ids = sorted(wanted, key=lambda x: int(x) if x.isdigit() else 0)
        rows: Optional[Dict[Tuple[str, int], Row]] = {}
        if array_ids:
            try:
                found = commands.squeue(array_ids)
            except SlurmError:
                found = None
            if found is None:
                rows = None
            else:
                for r in found:
                    rows[(r.array_id, r.task)] = r
                # tasks squeue forgot (MinJobAge): their final state from accounting, where there is one
                counts: Dict[str, int] = {}
                for r in found:
                    counts[r.array_id] = counts.get(r.array_id, 0) + 1
                expected = {a.array_id: sum(b - a_ + 1 for a_, b in a.ranges)
                            for i in seen_subs for a in index.subs[i].arrays}
                missing = [a for a in array_ids if counts.get(a, 0) < expected.get(a, 0)]
                if missing and commands.sacct_available():
                    try:
                        for r in commands.sacct(missing):
                            rows.setdefault((r.array_id, r.task), r)
                    except SlurmError:
                        pass
        self._rows[job.job_id] = (now, rows)
        return rows

    def _output_names(self, job: JobSet) -> set:
        now = time.monotonic()
        cached = self._outputs.get(job.job_id)
        if cached is not None and now - cached[0] < OUTPUT_SCAN_INTERVAL:
            return cached[1]
        names = self._names(job, layout.OUTPUTS)
        self._outputs[job.job_id] = (now, names)
        return names

    def read_events(self, job: JobSet, cursor: Any) -> Tuple[List[ComponentEvent], Any]:
        n = job.num_components
        if not isinstance(cursor, dict) or cursor.get("v") != 1 or len(cursor["code"]) != n:
            cursor = {"v": 1, "code": bytearray(n), "gen": array("I", bytes(4 * n)), "restarts": bytearray(n)}
        index = self._load_index(job)
        code, gen, restarts = cursor["code"], cursor["gen"], cursor["restarts"]
        mono = time.monotonic()
        full = gen != index.gen or mono - self._last_full.get(job.job_id, 0.0) >= self.poll_interval
        if full:
            todo = [c for c in range(n) if code[c] not in FINAL]
        else:
            # between squeue polls only new outputs matter: cheap, however often the map is read
            todo = []
            for name in self._output_names(job):
                if name.endswith(".out") and name[:-4].isdigit():
                    c = int(name[:-4])
                    if c < n and code[c] not in FINAL:
                        todo.append(c)
        if not todo and gen == index.gen:
            if full:
                self._last_full[job.job_id] = mono
            return [], cursor
        code, gen, restarts = bytearray(code), array("I", gen), bytearray(restarts)
        if full:
            todo = sorted(set(todo) | {c for c in range(n) if gen[c] != index.gen[c]})
            self._last_full[job.job_id] = mono
        events: List[ComponentEvent] = []
        now = time.time()
        outputs = self._output_names(job)
        pending_outputs = [c for c in todo if f"{c}.out" not in outputs]
        rows = self._poll_rows(job, index, components=pending_outputs) if pending_outputs else {}
        if pending_outputs:
            outputs = self._names(job, layout.OUTPUTS)  # after squeue: an ended task's output is visible
            self._outputs[job.job_id] = (time.monotonic(), outputs)
        d = self._dir(job)
        self._stats_dir = d / "stats"
        self._stats_layout = job.paths
        ends = self._names(job, ENDS)
        holds = self._names(job, HOLDS)
        retry: List[Tuple[int, str, Optional[int]]] = []  # (component, reason, memory for the next attempt)

        # the first look at a freshly submitted map: one bulk event
        if all(code[c] == NONE for c in range(n)) and all(index.gen[c] == 1 for c in range(n)):
            sub = index.current(0)
            if sub is not None and all(index.latest[c] == index.latest[0] for c in range(n)):
                events.append(ComponentEvent(0, EventKind.SUBMITTED, sub.time, count=n))
                code[:] = bytes([IDLE]) * n
                gen[:] = index.gen
        for c in todo:
            sub = index.current(c)
            if sub is None:
                continue
            if gen[c] != index.gen[c]:
                events.append(ComponentEvent(c, EventKind.SUBMITTED, sub.time))
                gen[c] = index.gen[c]
                code[c] = IDLE
                restarts[c] = 0
            new, reason, hold_code, t, runtime, row = self._derive(job, index, c, sub, outputs, rows, ends, holds, now)
            if new is None:
                continue  # nothing known (squeue failed): keep the last state
            if new == "retry":
                retry.append((c, reason, hold_code))
                continue
            prev = code[c]
            if new == RUNNING and row is not None and row.restarts > restarts[c] and row.state == "COMPLETING":
                # the old run of a requeued task is ending; it waits to run again (held, after m.hold())
                act = index.last_act(c, ("hold", "release", "vacate"), sub.time)
                if act is not None and act["action"] == "hold":
                    new, reason, hold_code = HELD, act.get("reason") or "held by the user (htmap hold)", HOLD_CODE_USER
                else:
                    new = IDLE
            if new in (COMPLETED, ERRORED) and restarts[c] == 0 and prev != NONE:
                # finished after a requeue this reader never saw: show the eviction first
                act = index.last_act(c, ("vacate", "hold"), sub.time)
                if act is not None and _covers(act.get("requeued") or [], c):
                    kind = EventKind.EVICTED
                    events.append(ComponentEvent(c, kind, act["time"], reason=act.get("reason")
                                                 if act["action"] == "vacate" else
                                                 "stopped by htmap hold; it ran again after its release"))
                    restarts[c] = 1
            if row is not None and row.restarts > restarts[c]:
                if prev in (RUNNING, SUSPENDED) and new in (RUNNING, SUSPENDED):
                    events.append(ComponentEvent(c, EventKind.EVICTED, now, reason=self._evict_reason(index, c, sub)))
                    prev = IDLE
                restarts[c] = min(255, row.restarts)
            if new == prev:
                continue
            events.extend(self._transition(index, c, sub, prev, new, reason, hold_code, t, runtime, row, now))
            code[c] = new
        if retry:
            done = self._retry(job, index, retry)
            index = self._load_index(job)
            for c, reason in done:
                events.append(ComponentEvent(c, EventKind.EVICTED, now, reason=reason))
                gen[c] = index.gen[c]
                code[c] = IDLE
                restarts[c] = 0
        return events, {"v": 1, "code": code, "gen": gen, "restarts": restarts}

    def _evict_reason(self, index: Index, c: int, sub: SubRec) -> str:
        act = index.last_act(c, ("vacate",), sub.time)
        if act is not None:
            return act.get("reason") or "vacated by the user (htmap vacate); it runs again"
        return "requeued by Slurm (preemption, node failure or an administrator); it runs again"

    def _transition(self, index, c, sub, prev, new, reason, hold_code, t, runtime, row, now) -> List[ComponentEvent]:
        out: List[ComponentEvent] = []
        start = _parse_time(row.start) if row is not None and row.start else None
        if new == IDLE:
            if prev == HELD:
                out.append(ComponentEvent(c, EventKind.RELEASED, now))
            elif prev in (RUNNING, SUSPENDED):
                out.append(ComponentEvent(c, EventKind.EVICTED, now, reason=self._evict_reason(index, c, sub)))
            elif prev == NONE:
                out.append(ComponentEvent(c, EventKind.SUBMITTED, sub.time))
        elif new == RUNNING:
            if prev == SUSPENDED:
                out.append(ComponentEvent(c, EventKind.UNSUSPENDED, now))
            else:
                out.append(ComponentEvent(c, EventKind.RUNNING, min(start or now, now)))
        elif new == SUSPENDED:
            if prev != RUNNING:
                out.append(ComponentEvent(c, EventKind.RUNNING, min(start or now, now)))
            out.append(ComponentEvent(c, EventKind.SUSPENDED, now, reason="suspended (scontrol suspend)"))
        elif new == HELD:
            out.append(ComponentEvent(c, EventKind.HELD, now, reason=reason, code=hold_code))
        elif new in (COMPLETED, ERRORED):
            end = t or now
            stats = (_read_json(self._stats_layout.component_dir(self._stats_dir, c) / str(c))
                     if self._stats_dir is not None else None)
            memory = None
            if stats and t is not None and abs(stats.get("start", 0) + stats.get("runtime", 0) - t) < 600:
                runtime, memory = stats.get("runtime"), stats.get("memory_mb")
                start = stats.get("start") or start
            if prev not in (RUNNING, SUSPENDED):
                out.append(ComponentEvent(c, EventKind.RUNNING, min(start or end, end)))
            if runtime is None and start is not None:
                runtime = max(0.0, end - start)
            out.append(ComponentEvent(c, EventKind.COMPLETED if new == COMPLETED else EventKind.ERRORED, end,
                                      reason=reason, runtime=runtime, memory_mb=memory))
        elif new == REMOVED:
            out.append(ComponentEvent(c, EventKind.REMOVED, now, reason=reason))
        return out

    def _derive(self, job: JobSet, index: Index, c: int, sub: SubRec, outputs: set,
                rows: Optional[Dict[Tuple[str, int], Row]], ends: set, holds: set, now: float):
        """(code, reason, hold code, time, runtime, row) of a component now; code None = unknown."""
        d = self._stats_dir.parent
        arr = sub.array_of(c)
        row = rows.get((arr.array_id, c - arr.offset)) if (rows is not None and arr is not None) else None
        history = sub.history.get(c) or []
        attempt = sub.attempts.get(c, 1)
        if f"{c}.out" in outputs:
            path = job.paths.output(c)
            try:
                kind = jobfiles.output_kind(path)
                mtime = path.stat().st_mtime
            except (FileNotFoundError, exceptions.InvalidOutputStatus):
                return None, None, None, None, None, row
            if kind == "OK":
                return COMPLETED, None, None, mtime, None, row
            if kind == "ERR":
                retry = self._exception_retry(job, c, path, attempt)
                if retry is not None:
                    return "retry", retry, None, None, None, row
                reason = None
                if history:
                    reason = f"attempt {attempt} failed; earlier attempts: " + "; ".join(history)
                return ERRORED, reason, None, mtime, None, row
            return None, None, None, None, None, row
        end_name = f"{c}-{sub.seq}.json"
        if end_name in ends:
            end = self._ends.get((job.job_id, end_name))
            if end is None:  # written once, never changed: read once
                end = self._ends[(job.job_id, end_name)] = _read_json(self._cpath(job, "ends", c, end_name)) or {}
            removed = index.last_act(c, ("remove",), sub.time)
            if removed is not None:
                return REMOVED, removed.get("reason") or "removed by the user", None, None, None, row
            return end.get("code", HELD), end.get("reason"), end.get("hold_code"), None, None, row
        hold_name = f"{c}-{sub.seq}"
        if hold_name in holds:
            removed = index.last_act(c, ("remove",), sub.time)
            if removed is not None:
                return REMOVED, removed.get("reason") or "removed by the user", None, None, None, row
            try:
                reason = self._cpath(job, "holds", c, hold_name).read_text()
            except FileNotFoundError:
                reason = "an input file is missing"
            return HELD, reason, HOLD_CODE_MISSING_FILE, None, None, row
        if arr is None:  # a submission without arrays (cannot happen) - keep what we had
            return None, None, None, None, None, row
        if rows is None:
            return None, None, None, None, None, row
        if row is None:
            removed = index.last_act(c, ("remove",), sub.time)
            if removed is not None:  # cancelled before it ever started: squeue never shows it
                return REMOVED, removed.get("reason") or "removed by the user", None, None, None, row
            if now - sub.time < VISIBILITY_GRACE:
                return IDLE, None, None, None, None, row
            message = (f"component {c}: Slurm no longer knows its job {arr.array_id}_{c - arr.offset} "
                       "(purged after MinJobAge, or cancelled before it started) and it left no output")
            return self._fail(job, index, c, sub, arr, None, message, now)
        state = row.state
        if state in PENDING_STATES:
            if row.reason in HELD_REASONS or state == "REQUEUE_HOLD":
                act = index.last_act(c, ("hold", "release"), sub.time)
                act = act if act is not None and act["action"] == "hold" else None
                reason = (act.get("reason") if act else None) or (
                    "held by the user (htmap hold)" if act else f"held in Slurm ({row.reason}); release it with m.release()")
                return HELD, reason, HOLD_CODE_USER if act else HOLD_CODE_SLURM, None, None, row
            return IDLE, None, None, None, None, row
        if state in RUNNING_STATES:
            if state == "COMPLETING":
                removed = index.last_act(c, ("remove",), sub.time)
                if removed is not None:  # being cancelled by htmap
                    return REMOVED, removed.get("reason") or "removed by the user", None, None, None, row
            return RUNNING, None, None, None, None, row
        if state == "SUSPENDED":
            return SUSPENDED, None, None, None, None, row
        removed = index.last_act(c, ("remove",), sub.time)
        if state == "CANCELLED" or removed is not None:
            reason = (removed.get("reason") or "removed by the user") if removed else (
                f"cancelled outside htmap (scancel or a Slurm administrator; job {row.job_id})")
            return REMOVED, reason, None, None, None, row
        if state == "COMPLETED":
            key = (job.job_id, c, sub.seq)
            first = self._no_output_since.setdefault(key, now)
            if now - first < OUTPUT_GRACE:
                return RUNNING, None, None, None, None, row
            message = (f"component {c}: its Slurm job {row.job_id} ({arr.array_id}_{row.task}) completed with "
                       f"exit code 0 but no output appeared in {job.paths.output(c).parent} within {OUTPUT_GRACE:.0f} s")
            return self._fail(job, index, c, sub, arr, row, message, now)
        return self._fail(job, index, c, sub, arr, row, None, now)

    def _limit_reason(self, arr: ArrayRec, row: Row, kind: str) -> str:
        if kind == "TIMEOUT":
            limit = arr.resources.get("max_runtime")
            limit_text = f"{limit} s" if limit else f"Slurm time limit ({row.time_limit})"
            return (f"ran longer than its max_runtime of {limit_text} and was stopped by Slurm "
                    f"(job {row.job_id}: TIMEOUT)")
        mem = arr.resources.get("request_memory") or commands.memory_mb(row.min_memory)
        return (f"used more memory than its request_memory of {mem} MB and was killed by Slurm "
                f"(job {row.job_id}: OUT_OF_MEMORY)")

    def _fail(self, job: JobSet, index: Index, c: int, sub: SubRec, arr: ArrayRec, row: Optional[Row],
              message: Optional[str], now: float):
        """A component whose task ended without output: retry, hold, or error with a reason."""
        d = self._dir(job)
        attempt = sub.attempts.get(c, 1)
        history = sub.history.get(c) or []
        max_retries = int(job.option("max_retries", c) or 0)
        state = row.state if row is not None else "LOST"
        if message is None:
            message = (f"component {c} died without output: its process {_describe_exit(row.exit_status)} "
                       f"(Slurm job {row.job_id} = {arr.array_id}_{row.task}: {state}, reason {row.reason})")
            if state == "NODE_FAIL":
                message += "; the node it ran on failed"
            elif state == "PREEMPTED":
                message += "; it was preempted by a job of higher priority"
            elif state == "BOOT_FAIL":
                message += "; its node failed to boot"
            elif state == "DEADLINE":
                message += "; it reached its deadline"
            elif row.reason == "JobLaunchFailure" and not job.paths.log(c, "stderr").exists():
                message += "; Slurm could not launch it (see the Slurm log below)"
        if state in ("TIMEOUT", "OUT_OF_MEMORY"):
            message = f"component {c} " + self._limit_reason(arr, row, state)
        if state in SCHEDULER_FAILURES and attempt <= max_retries:
            next_mem = None
            if state == "OUT_OF_MEMORY":
                factor = float(job.option("retry_memory_factor", c) or 1.0)
                current = arr.resources.get("request_memory") or commands.memory_mb(row.min_memory) or 0
                if factor > 1 and current:
                    next_mem = int(-(-current * factor // 1))
            return "retry", f"attempt {attempt}: {message}", next_mem, None, None, row
        if history:
            message += f" (attempt {attempt}; earlier attempts: " + "; ".join(history) + ")"
        end_name = f"{c}-{sub.seq}.json"
        if state in ("TIMEOUT", "OUT_OF_MEMORY"):
            hold_code = HOLD_CODE_TIME if state == "TIMEOUT" else HOLD_CODE_MEMORY
            message += ("; give it more time (max_runtime) with a new map, or make it checkpoint, then m.release()"
                        if state == "TIMEOUT" else "; raise it with m.set_memory(...) and then m.release()")
            self._write_end(job, c, end_name, {"code": HELD, "reason": message, "hold_code": hold_code})
            return HELD, message, hold_code, None, None, row
        tail = jobfiles.tail(job.paths.log(c, "stderr"))
        slurm_log = self._slurm_log_lines(d, arr, row)
        if slurm_log:
            tail = (tail + "\n" if tail else "") + "--- Slurm ---\n" + slurm_log
        try:
            jobfiles.write_failure(job.paths.output(c), c, message, tail)
        except FileNotFoundError:
            return None, None, None, None, None, row  # the map was removed
        return ERRORED, message, None, now, None, row

    @staticmethod
    def _slurm_log_lines(d: Path, arr: ArrayRec, row: Optional[Row]) -> str:
        """Lines of the array's Slurm log about this task (slurmstepd errors, launch failures)."""
        if row is None:
            return ""
        text = jobfiles.tail(d / "logs" / f"{arr.array_id}.log", 64 * 1024)
        marks = (f"JOB {row.job_id} ", f"StepId={row.job_id}.", f"job {row.job_id} ", f"{arr.array_id}_{row.task}")
        lines = [line for line in text.splitlines() if any(m in line for m in marks)]
        return "\n".join(lines[-10:])

    def _exception_retry(self, job: JobSet, c: int, path: Path, attempt: int) -> Optional[str]:
        names = job.option("retry_exceptions", c)
        max_retries = int(job.option("max_retries", c) or 0)
        if not names or attempt > max_retries:
            return None
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        elif isinstance(names, type):
            names = [names.__name__]
        try:
            kind, report = jobfiles.read_output(path)
        except Exception:
            return None
        if kind != "ERR" or report.get("kind") != "exception":
            return None
        if report.get("exception_type") not in set(getattr(n, "__name__", str(n)).rsplit(".", 1)[-1] for n in names):
            return None
        return f"attempt {attempt}: raised {report.get('exception_type')}: {report.get('exception_msg')}"

    def _retry(self, job: JobSet, index: Index, items: List[Tuple[int, str, Optional[int]]]) -> List[Tuple[int, str]]:
        """Resubmit failed components (once, whoever claims them first); [(component, reason)]."""
        d = self._dir(job)
        mine: List[Tuple[int, str, Optional[int]]] = []
        for c, reason, mem in items:
            sub = index.current(c)
            claim = self._cpath(job, "claims", c, f"{c}-{sub.seq}")
            store.make_dir(claim.parent)
            if store.create_exclusive(claim, reason.encode()):
                mine.append((c, reason, mem))
        if not mine:
            return []
        attempts, history, memory = {}, {}, {}
        for c, reason, mem in mine:
            sub = index.current(c)
            attempts[c] = sub.attempts.get(c, 1) + 1
            history[c] = (sub.history.get(c) or []) + [reason]
            if mem is not None:
                memory[c] = mem
            max_retries = int(job.option("max_retries", c) or 0)
            history[c][-1] += f"; retry {attempts[c] - 1} of {max_retries}" + (
                f" with request_memory {mem} MB" if mem is not None else "")
            out = job.paths.output(c)
            kept = self._cpath(job, "attempts", c, f"{c}-{sub.seq}.out")
            try:  # keep the failed attempt's report, out of the way
                store.make_dir(kept.parent)
                os.replace(out, kept)
            except FileNotFoundError:
                pass
        try:
            self._submit(job, sorted(attempts), index, memory=memory, attempts=attempts, history=history)
        except SlurmError as e:
            # the retry itself was refused (e.g. more memory than any node has): end here, saying so
            for c, reason, mem in mine:
                sub = index.current(c)
                kept = self._cpath(job, "attempts", c, f"{c}-{sub.seq}.out")
                message = (f"{'; '.join(history[c])}; the retry could not be submitted: {e}")
                if kept.exists():
                    os.replace(kept, job.paths.output(c))
                elif "OUT_OF_MEMORY" in reason or "TIMEOUT" in reason:
                    self._write_end(job, c, f"{c}-{sub.seq}.json", {
                        "code": HELD, "reason": message,
                        "hold_code": HOLD_CODE_MEMORY if "OUT_OF_MEMORY" in reason else HOLD_CODE_TIME})
                else:
                    jobfiles.write_failure(job.paths.output(c), c, message, jobfiles.tail(job.paths.log(c, "stderr")))
            return []
        if memory:
            for mem in sorted(set(memory.values())):
                self._record_act(job, action="edit", resource="request_memory", value=mem,
                                 components=_ranges(c for c, m in memory.items() if m == mem), internal=True)
        return [(c, history[c][-1]) for c in sorted(attempts)]

    # -- actions -----------------------------------------------------------------------------
    def _targets(self, job: JobSet, index: Index, components: Optional[Sequence[int]]):
        """{array_id: [(component, task), ...]} of the current submission of each target."""
        comps = range(job.num_components) if components is None else components
        out: Dict[str, List[Tuple[int, int]]] = {}
        for c in comps:
            sub = index.current(int(c))
            if sub is None:
                continue
            arr = sub.array_of(int(c))
            if arr is not None:
                out.setdefault(arr.array_id, []).append((int(c), int(c) - arr.offset))
        return out

    @staticmethod
    def _job_list(targets: Dict[str, List[Tuple[int, int]]], tasks: Optional[Dict[str, List[int]]] = None) -> List[str]:
        specs = []
        for array_id, items in targets.items():
            chosen = sorted(t for _c, t in items) if tasks is None else sorted(tasks.get(array_id, []))
            if chosen:
                specs.append(f"{array_id}_[{commands.compress(chosen)}]")
        return specs

    def act(self, job: JobSet, action: Action, components: Optional[Sequence[int]] = None,
            reason: Optional[str] = None) -> None:
        action = Action(action)
        index = self._load_index(job)
        if not index.subs:
            return
        targets = self._targets(job, index, components)
        comp_ranges = None if components is None else _ranges(int(c) for c in components)
        rows = self._poll_rows(job, index, force=True) or {}
        by_state: Dict[str, Dict[str, List[int]]] = {}
        comps_in: Dict[str, List[int]] = {}
        finished: List[int] = []
        for array_id, items in targets.items():
            for c, task in items:
                row = rows.get((array_id, task))
                if row is None or row.state not in PENDING_STATES + RUNNING_STATES + ("SUSPENDED",):
                    finished.append(c)
                    continue
                held = row.reason in HELD_REASONS or row.state == "REQUEUE_HOLD"
                if row.state in PENDING_STATES or (held and row.state == "COMPLETING"):
                    group = "held" if held else "pending"
                else:
                    group = "suspended" if row.state == "SUSPENDED" else "running"
                by_state.setdefault(group, {}).setdefault(array_id, []).append(task)
                comps_in.setdefault(group, []).append(c)

        def jobs(*groups: str) -> List[str]:
            merged: Dict[str, List[int]] = {}
            for g in groups:
                for a, tasks in by_state.get(g, {}).items():
                    merged.setdefault(a, []).extend(tasks)
            return self._job_list({a: [(0, t) for t in ts] for a, ts in merged.items()})

        self._control_waits[job.job_id] = (action, {
            "pending": by_state.get("pending", {}), "held": by_state.get("held", {}),
            "running": by_state.get("running", {}), "suspended": by_state.get("suspended", {})})
        if action is Action.REMOVE:
            self._record_act(job, action="remove", components=comp_ranges, reason=reason or "removed by the user")
            ids = sorted({a.array_id for s in index.subs for a in s.arrays}) if components is None else \
                jobs("pending", "held", "running", "suspended")
            self._scontrol(["scancel"], ids)
        elif action is Action.HOLD:
            self._record_act(job, action="hold", components=comp_ranges, reason=reason or "held by the user (htmap hold)",
                             requeued=_ranges(comps_in.get("running", []) + comps_in.get("suspended", [])))
            self._scontrol(["scontrol", "hold"], jobs("pending"))
            self._scontrol(["scontrol", "requeuehold"], jobs("running", "suspended"))
        elif action is Action.RELEASE:
            self._record_act(job, action="release", components=comp_ranges)
            self._scontrol(["scontrol", "release"], jobs("held"))
            d = self._dir(job)
            holds, ends = self._names(job, HOLDS), self._names(job, ENDS)
            comps = range(job.num_components) if components is None else components
            rerun = [int(c) for c in comps if self._held_without_job(job, index, int(c), holds, ends)]
            if rerun:
                self._submit(job, rerun, index)
        elif action is Action.VACATE:
            # which ones were really stopped: a reader that only sees them finish still shows the eviction
            self._record_act(job, action="vacate", components=comp_ranges,
                             requeued=_ranges(comps_in.get("running", []) + comps_in.get("suspended", [])),
                             reason=reason or "vacated by the user (htmap vacate); it runs again")
            self._scontrol(["scontrol", "requeue"], jobs("running", "suspended"))
        elif action is Action.PAUSE:
            self._scontrol(["scontrol", "suspend"], jobs("running"), operator=True)
        elif action is Action.RESUME:
            self._scontrol(["scontrol", "resume"], jobs("suspended"), operator=True)
        self._invalidate(job)
        self._index.pop(job.job_id, None)

    def wait_for_control(self, job: JobSet, timeout: float = 20.0) -> bool:
        """Block until squeue shows the last action on this map carried out (Map calls this after act)."""
        waiting = self._control_waits.pop(job.job_id, None)
        if waiting is None:
            return True
        action, groups = waiting

        def done(group: str, row: Optional[Row]) -> bool:
            if row is None:
                return True
            state, held = row.state, row.reason in HELD_REASONS or row.state == "REQUEUE_HOLD"
            if action is Action.HOLD:  # requeued ones pass through COMPLETING before they wait, held
                return (held and state in PENDING_STATES) or state not in PENDING_STATES + RUNNING_STATES + ("SUSPENDED",)
            if action is Action.RELEASE:
                return group != "held" or not held
            if action is Action.REMOVE:
                return state not in PENDING_STATES + ("RUNNING", "SUSPENDED", "CONFIGURING")
            if action is Action.VACATE:
                return state not in ("RUNNING", "SUSPENDED")
            if action is Action.PAUSE:
                return group != "running" or state != "RUNNING"
            if action is Action.RESUME:
                return group != "suspended" or state != "SUSPENDED"
            return True

        relevant = {Action.HOLD: ("pending", "running", "suspended"), Action.RELEASE: ("held",),
                    Action.REMOVE: ("pending", "held", "running", "suspended"), Action.VACATE: ("running", "suspended"),
                    Action.PAUSE: ("running",), Action.RESUME: ("suspended",)}.get(action, ())
        tasks = [(g, a, t) for g in relevant for a, ts in groups.get(g, {}).items() for t in ts]
        if not tasks:
            return True
        index = self._load_index(job)
        deadline = time.monotonic() + timeout
        while True:
            rows = self._poll_rows(job, index, force=True)
            if rows is not None and all(done(g, rows.get((a, t))) for g, a, t in tasks):
                self._invalidate(job)
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def _held_without_job(self, job: JobSet, index: Index, c: int, holds: set, ends: set) -> bool:
        """Held by htmap after its task ended (time/memory limit, missing input file)."""
        sub = index.current(c)
        if sub is None:
            return False
        if f"{c}-{sub.seq}" in holds:
            return True
        if f"{c}-{sub.seq}.json" not in ends:
            return False
        end = _read_json(self._cpath(job, "ends", c, f"{c}-{sub.seq}.json"))
        return bool(end and end.get("code") == HELD) and not job.paths.output(c).exists()

    @staticmethod
    def _scontrol(cmd: List[str], job_list: List[str], operator: bool = False) -> None:
        if not job_list:
            return
        # one call per array keeps each argument short; Slurm takes several ids per call
        for i in range(0, len(job_list), 50):
            chunk = job_list[i:i + 50]
            proc = commands.run(cmd + chunk)
            text = (proc.stderr or proc.stdout).strip()
            if proc.returncode == 0:
                continue
            low = text.lower()
            if "access/permission denied" in low or "permission denied" in low:
                who = "a Slurm operator or administrator" if operator else "the job's owner or an administrator"
                raise SlurmPermissionError(f"{' '.join(cmd)} was refused by Slurm: {text}. Only {who} may do this"
                                           + ("; scontrol suspend/resume need operator rights (ask your admins)."
                                              if operator else "."))
            if all(any(ok in line.lower() for ok in ("already", "completed", "invalid job id", "job has finished",
                                                      "not pending", "not suspended", "is pending",
                                                      "no error", "job is not running"))
                   for line in text.splitlines() if line.strip()):
                continue  # raced with the job finishing or starting
            raise SlurmError(f"{' '.join(cmd)} {' '.join(chunk)} failed: {text}")

    def edit(self, job: JobSet, resource: str, value: Any, components: Optional[Sequence[int]] = None) -> None:
        keys = {"request_memory": "MinMemoryNode", "request_disk": "MinTmpDiskNode", "max_runtime": "TimeLimit"}
        if resource not in keys:
            raise NotImplementedError(f"the slurm engine cannot edit {resource}")
        value = int(value)
        index = self._load_index(job)
        self._record_act(job, action="edit", resource=resource, value=value,
                         components=None if components is None else _ranges(int(c) for c in components))
        if not index.subs:
            return
        rows = self._poll_rows(job, index, force=True) or {}
        pending: Dict[str, List[Tuple[int, int]]] = {}
        for array_id, items in self._targets(job, index, components).items():
            for c, task in items:
                row = rows.get((array_id, task))
                if row is not None and row.state in PENDING_STATES:
                    pending.setdefault(array_id, []).append((c, task))
        if resource == "request_memory":
            setting = f"MinMemoryNode={value}"
        elif resource == "request_disk":
            setting = f"MinTmpDiskNode={max(1, -(-value // 1024))}"
        else:
            setting = f"TimeLimit={commands.format_time(value)}"
        for spec in self._job_list(pending):
            proc = commands.run(["scontrol", "update", f"JobId={spec}", setting])
            if proc.returncode != 0:
                text = (proc.stderr or proc.stdout).strip()
                if "not pending" in text.lower() or "already" in text.lower():
                    continue
                raise SlurmError(f"scontrol update JobId={spec} {setting} failed: {text}")
        self._invalidate(job)
        self._index.pop(job.job_id, None)

    def forget(self, job: JobSet) -> None:
        self._index.pop(job.job_id, None)
        self._invalidate(job)
        self._outputs.pop(job.job_id, None)
        self._control_waits.pop(job.job_id, None)
        self._last_full.pop(job.job_id, None)


# ----------------------------------------------------------------------------- (de)serialising

def _spec_set(spec: str) -> set:
    out = set()
    for r in commands.expand(spec):
        out.update(r)
    return out


def _res_dict(res: Tuple) -> Dict[str, Any]:
    keys = ("request_memory", "request_disk", "request_cpus", "max_runtime", "partition", "account", "qos")
    return {k: v for k, v in zip(keys, res) if v is not None}


def _sub_to_json(rec: SubRec) -> Dict[str, Any]:
    return {
        "seq": rec.seq,
        "arrays": [{"id": a.array_id, "offset": a.offset, "ranges": a.ranges, "resources": a.resources}
                   for a in rec.arrays],
        "components": rec.components,
        "attempts": {str(k): v for k, v in rec.attempts.items()},
        "history": {str(k): v for k, v in rec.history.items()},
    }


def _sub_from_json(data: Dict[str, Any]) -> SubRec:
    return SubRec(
        seq=data["seq"],
        arrays=[ArrayRec(a["id"], a["offset"], a["ranges"], a.get("resources", {})) for a in data["arrays"]],
        components=data["components"],
        attempts={int(k): v for k, v in (data.get("attempts") or {}).items()},
        history={int(k): v for k, v in (data.get("history") or {}).items()},
    )
