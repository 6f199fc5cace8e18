"""The local engine's supervisor: one detached process per HTMAP_DIR and host.

It takes run requests from ``queue/``, actions from ``control/``, runs components on
warm workers (at most ``max_workers`` at once), and appends what happens to each
job's event log. It is the only writer of those logs. It recovers from a crash by
replaying them: components that were running are run again unless their output was
already published. It exits after a while with nothing to do.
"""
from __future__ import annotations

import collections
import json
import math
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Tuple

from ... import jobfiles, layout, store
from . import processes, protocol

NEW, PENDING, RUNNING, HELD, DONE, REMOVED, SUSPENDED, ASSIGNED = range(8)
# ASSIGNED: sent to a worker that has not started it yet (never logged; PENDING after a crash)
CHUNK_MAX = 64  # most components sent to a worker in one message
_STATE_AFTER = {
    "submitted": PENDING, "released": PENDING, "evicted": PENDING, "running": RUNNING,
    "unsuspended": RUNNING, "suspended": SUSPENDED, "completed": DONE, "errored": DONE,
    "held": HELD, "removed": REMOVED,
}
SCAN_INTERVAL = 1.0
WORKER_PATH = Path(__file__).with_name("worker.py")


class Job:
    """What the supervisor knows of one job set: its components' states and log."""

    def __init__(self, reg: dict):
        self.job_id: str = reg["job_id"]
        self.directory = Path(reg["directory"])
        self.n: int = reg["num_components"]
        self.sys_path: List[str] = reg.get("sys_path", [])
        self.state = bytearray(self.n)
        self.pending: Deque[int] = collections.deque()
        self.lines: List[str] = []
        self.open_event: Optional[list] = None  # [t, first, count, kind, extra]: the last event, still growing
        self.events_path = self.directory / "engine" / protocol.EVENTS_FILE
        self.overrides_path = self.directory / "engine" / "overrides.json"
        fields = load_job_fields(self.directory)
        self.paths = layout.Layout(self.directory, layout.version_of(fields))
        self.fixed: Dict[str, Any] = fields.get("fixed", {})
        self.per: Dict[str, List[Any]] = fields.get("per_component", {})
        self.fixed_files: List[str] = fields.get("fixed_input_files") or []
        self.files: Optional[List[List[str]]] = fields.get("input_files")
        self.remaps: Optional[List[Dict[str, str]]] = fields.get("output_remaps")
        self.overrides: Dict[str, Dict[int, Any]] = self.load_overrides()
        self.retries: Dict[int, int] = {}
        self.recover()

    def option(self, name: str, c: int, default: Any = None) -> Any:
        """A component's option: an edit (set_memory, a retry) wins over the map's options."""
        edited = self.overrides.get(name)
        if edited and c in edited:
            return edited[c]
        if name in self.per:
            return self.per[name][c]
        return self.fixed.get(name, default)

    def cpus(self, c: int) -> int:
        return int(self.option("request_cpus", c, 1) or 1)

    def load_overrides(self) -> Dict[str, Dict[int, Any]]:
        data = protocol.read_json(self.overrides_path) or {}
        return {name: {int(c): v for c, v in values.items()} for name, values in data.items()}

    def set_override(self, name: str, components: List[int], value: Any) -> None:
        self.overrides.setdefault(name, {}).update((c, value) for c in components)
        data = {k: {str(c): v for c, v in vals.items()} for k, vals in self.overrides.items()}
        try:
            store.write_text_atomic(self.overrides_path, json.dumps(data))
        except FileNotFoundError:
            pass  # the map was removed

    @staticmethod
    def edit_offline(directory: Path, resource: str, value: Any, components: Optional[List[int]]) -> None:
        """Record an edit for a job no supervisor runs now (it is read when the job runs again)."""
        path = directory / "engine" / "overrides.json"
        data = protocol.read_json(path) or {}
        if components is None:
            with open(directory / "map.json") as f:
                components = range(json.load(f)["num_components"])
        data.setdefault(resource, {}).update((str(c), value) for c in components)
        store.write_text_atomic(path, json.dumps(data))

    def run_extras(self, c: int) -> Optional[Dict[str, Any]]:
        """What a worker needs beyond the inputs: files to stage and output remaps (None: nothing)."""
        files = self.fixed_files + (self.files[c] if self.files is not None else [])
        remaps = self.remaps[c] if self.remaps is not None else {}
        if not files and not remaps:
            return None
        return {"files": files, "remaps": remaps}

    def recover(self) -> None:
        data, end = protocol.read_new(self.events_path, 0)
        self.drop_torn_tail(end)
        for _t, first, count, kind, extra in protocol.parse_events(data):
            if first + count > self.n:
                continue  # not an event of this job (a damaged line): it must not grow the state
            if extra.get("retry"):
                self.retries[first] = int(extra["retry"])
            new = _STATE_AFTER.get(kind)
            if new is not None:
                self.state[first:first + count] = bytes([new]) * count
        now = time.time()
        for c, s in enumerate(self.state):
            if s in (RUNNING, SUSPENDED):
                kind = jobfiles.output_kind(self.paths.output(c))
                if kind is not None:
                    self.log(now, c, "completed" if kind == "OK" else "errored")
                else:
                    self.log(now, c, "evicted", reason="htmap's local supervisor stopped while this "
                             "component ran; it runs again")
        # log() queued the evicted ones already: rebuild the queue so each waiting component is in it once
        self.pending = collections.deque(c for c, s in enumerate(self.state) if s == PENDING)

    def drop_torn_tail(self, end: int) -> None:
        """A supervisor killed mid-append may leave half a line: cut it before appending."""
        try:
            if self.events_path.stat().st_size > end:
                os.truncate(self.events_path, end)
        except FileNotFoundError:
            pass

    def log(self, t: float, component: int, kind: str, count: int = 1, **extra) -> None:
        """Record an event. The same event for the next component at the same time widens the last
        line's range (``first+count``): holding a million components writes one line, not a million."""
        last = self.open_event
        if last is not None and last[0] == t and last[3] == kind and last[1] + last[2] == component and last[4] == extra:
            last[2] += count
        else:
            self.close_event()
            self.open_event = [t, component, count, kind, extra]
        new = _STATE_AFTER.get(kind)
        if new is not None:
            self.state[component:component + count] = bytes([new]) * count
            if new == PENDING:
                self.pending.extend(range(component, component + count))

    def close_event(self) -> None:
        if self.open_event is not None:
            t, first, count, kind, extra = self.open_event
            self.lines.append(protocol.format_event(t, first, kind, extra, count))
            self.open_event = None

    def flush(self) -> bool:
        """Append the new events; False if the map is gone. A full disk raises, and the lines are
        kept for the next try (a half-written line is cut first, so readers never see it)."""
        self.close_event()
        if not self.lines:
            return True
        try:
            fd = os.open(self.events_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, store.FILE_MODE)
            with os.fdopen(fd, "ab") as f:
                start = os.fstat(f.fileno()).st_size
                try:
                    # after a stray partial line (a damaged file), start a new line: never glue an event to it
                    torn = start > 0 and os.pread(f.fileno(), 1, start - 1) != b"\n"
                    f.write(("\n" if torn else "").encode() + "".join(self.lines).encode())
                    f.flush()
                except OSError:
                    os.ftruncate(f.fileno(), start)
                    raise
        except FileNotFoundError:
            return False  # the map was removed under us
        self.lines.clear()
        return True

    def peek_pending(self) -> Optional[int]:
        while self.pending:
            c = self.pending[0]
            if self.state[c] == PENDING:
                return c
            self.pending.popleft()
        return None

    def finished(self) -> bool:
        return not any(s in self.state for s in (PENDING, RUNNING, SUSPENDED, HELD, ASSIGNED))


class Worker:
    """A warm worker process and the components sent to it (the first may be running)."""

    def __init__(self, python: str, scratch_root: str):
        self.capture_dir = tempfile.mkdtemp(prefix="worker-", dir=scratch_root)
        self.stdout_path = os.path.join(self.capture_dir, "stdout")
        self.stderr_path = os.path.join(self.capture_dir, "stderr")
        parent, child = socket.socketpair()
        out = os.open(self.stdout_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        err = os.open(self.stderr_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self.proc = subprocess.Popen(
                [python, str(WORKER_PATH), str(jobfiles.runner_path()), str(child.fileno())],
                pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True, cwd=self.capture_dir,
            )
        finally:
            os.close(out)
            os.close(err)
            child.close()
        self.conn = Connection(parent.detach())
        self.assigned: Deque[Tuple[Job, int]] = collections.deque()  # in the order the worker runs them
        self.current: Optional[Tuple[Job, int]] = None  # started and not finished
        self.cancelling: Dict[Tuple[str, int], Job] = {}  # withdrawn before the worker said it started
        self.started = 0.0
        self.peak_mb = 0  # largest resident memory seen for the current component and its children
        self.stopped_on_purpose = False

    @property
    def busy(self) -> bool:
        return bool(self.assigned)

    @property
    def cost(self) -> int:
        """Slots (cpus) this worker takes: its largest request among what it holds."""
        return max((job.cpus(c) for job, c in self.assigned), default=0)

    @property
    def job(self) -> Optional[Job]:
        return self.current[0] if self.current else None

    @property
    def component(self) -> Optional[int]:
        return self.current[1] if self.current else None

    def holds(self, job: Job) -> bool:
        return any(j is job for j, _ in self.assigned)

    def fileno(self) -> int:
        return self.conn.fileno()

    def send(self, job: Job, components: List[int]) -> None:
        for c in components:
            self.assigned.append((job, c))
            job.state[c] = ASSIGNED
        self.conn.send(("run", job.job_id, str(job.directory), job.sys_path,
                        [(c, job.run_extras(c)) for c in components], job.paths.sharded))

    def cancel(self, job: Job, component: int) -> None:
        """Ask the worker to drop a component it has not started."""
        self.cancelling[(job.job_id, component)] = job
        try:
            self.conn.send(("cancel", job.job_id, component))
        except OSError:
            pass

    def forget(self, job_id: str, component: int) -> Optional[Job]:
        for item in self.assigned:
            if item[0].job_id == job_id and item[1] == component:
                self.assigned.remove(item)
                return item[0]
        return None

    def signal(self, sig: int) -> None:
        """Signal the worker and every process below it, also those in other sessions (setsid)."""
        pid = self.proc.pid
        if sig == signal.SIGKILL:
            # Frozen, the worker starts nothing new; alive, it keeps the orphans of what is killed
            # below it (it is their subreaper). Killed first, they would escape to init.
            processes.signal_all([pid], signal.SIGSTOP)
            processes.kill_descendants(pid)
        else:
            processes.signal_all([pid] + processes.descendants(pid), sig)
        try:
            os.killpg(pid, sig)  # and the worker's own group (all of it where /proc is missing)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        self.signal(signal.SIGKILL)
        self.conn.close()


ROOM_PROBE_BYTES = 1 << 20  # components start again once this much can be written in HTMAP_DIR


def say(message: str) -> None:
    """A line in the supervisor's log; on a full disk even that may fail, which must not stop it."""
    try:
        print(f"htmap supervisor: {message}", file=sys.stderr, flush=True)
    except OSError:
        pass


HOLD_CODE_USER = 1  # HTCondor's UserRequest
HOLD_CODE_INPUT = 13  # HTCondor's TransferInputError
HOLD_CODE_MEMORY = 34  # HTCondor's JobOutOfResources (memory)
HOLD_CODE_RUNTIME = 47  # a runtime limit (HTCondor's allowed_job_duration)
LIMIT_CHECK_INTERVAL = 0.1


def format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


SCRATCH_PREFIX = "htmap-scratch-"


def remove_dead_scratch_roots() -> None:
    """Scratch directories of supervisors killed with -9 (their pid is in the name)."""
    tmp = Path(tempfile.gettempdir())
    try:
        names = [n for n in os.listdir(tmp) if n.startswith(SCRATCH_PREFIX)]
    except OSError:
        return
    for name in names:
        pid = name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running (or another user's: not ours to remove)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        path = tmp / name
        try:
            if path.stat().st_uid == os.getuid():
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def load_job_fields(directory: Path) -> Dict[str, Any]:
    """The job set's options and files, as the core wrote them (job.pkl)."""
    try:
        with open(directory / "job.pkl", "rb") as f:
            return pickle.load(f)
    except (FileNotFoundError, EOFError, pickle.UnpicklingError):
        return {}


def kernel_oom_kills() -> Optional[int]:
    """How many processes the kernel's out-of-memory killer has killed since boot (Linux >= 4.13)."""
    try:
        with open("/proc/vmstat") as f:
            for line in f:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def describe_exit(returncode: Optional[int]) -> str:
    if returncode is None:
        return "its process stopped answering"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"its process was killed by signal {-returncode} ({name})"
    return f"its process exited with code {returncode} before writing the component's output"


class Supervisor:
    def __init__(self, htmap_dir: Path, max_workers: int, idle_exit: float):
        self.htmap_dir = htmap_dir
        self.paths = protocol.LocalPaths(htmap_dir).make()
        self.host = protocol.hostname()
        self.max_workers = max_workers or os.cpu_count() or 1
        self.idle_exit = idle_exit
        self.python = sys.executable
        self.jobs: Dict[str, Job] = {}
        self.workers: List[Worker] = []
        self.scratch_root = ""  # made once this supervisor has won the socket (losers leave nothing)
        self.listener: Optional[socket.socket] = None
        self.rr = 0  # round-robin position over jobs
        self.no_room: Optional[str] = None  # why nothing can be written in HTMAP_DIR, while it lasts
        self.oom_kills = kernel_oom_kills()  # the kernel's count, read about once a second (not per component)
        self.oom_kills_read, self.oom_kills_rose = time.time(), 0.0
        self.no_room_until = 0.0  # no new components start before this (monotonic) time
        self.no_room_wait = 0.0

    # -- life cycle -------------------------------------------------------------
    def bind(self) -> bool:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address = protocol.socket_address(self.htmap_dir)
        try:
            if not address.startswith("\0") and os.path.exists(address):
                if protocol.wake(self.htmap_dir):
                    s.close()
                    return False
                os.unlink(address)
            s.bind(address)
        except OSError:
            s.close()
            try:
                protocol.wake(self.htmap_dir)
            except Exception as e:  # squatted by another user: say so in the log (clients say so too)
                say(str(e))
            return False
        s.listen(64)
        s.setblocking(False)
        self.listener = s
        return True

    def run(self) -> int:
        if not self.bind():
            return 0  # another supervisor serves this HTMAP_DIR
        remove_dead_scratch_roots()
        self.scratch_root = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")
        store.write_text_atomic(self.paths.pid, str(os.getpid()))
        for path in protocol.list_requests(self.paths.active):
            reg = protocol.read_json(path)
            if reg and reg.get("host") == self.host:
                self.load_job(reg)
        last_scan = 0.0
        idle_since = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if now - last_scan >= SCAN_INTERVAL:
                    try:
                        self.scan()
                    except OSError as e:  # a full disk: the request stays, and is taken again later
                        if e.errno not in store.NO_ROOM_ERRNOS:
                            raise
                        self.out_of_room(f"{e.strerror} ({e.filename or self.htmap_dir})")
                    last_scan = now
                    self.watch_oom_kills(time.time())
                self.dispatch()
                limits = self.limits_active()
                if limits:
                    self.enforce_limits()
                self.flush()
                if self.busy():
                    idle_since = now
                elif now - idle_since > self.idle_exit and self.try_exit():
                    return 0
                ready = wait([self.listener, *[w for w in self.workers if w.busy]],
                             timeout=LIMIT_CHECK_INTERVAL if limits else SCAN_INTERVAL)
                for obj in ready:
                    if obj is self.listener:
                        self.accept_wakeups()
                        last_scan = 0.0
                    else:
                        self.on_worker_message(obj)
        finally:
            for w in self.workers:
                w.close()
            shutil.rmtree(self.scratch_root, ignore_errors=True)
            self.remove_pid_file()

    def remove_pid_file(self) -> None:
        """A normal exit says so; only a killed supervisor leaves its pid file behind."""
        try:
            if self.paths.pid.read_text().strip() == str(os.getpid()):
                self.paths.pid.unlink()
        except (OSError, ValueError):
            pass

    def try_exit(self) -> bool:
        """Stop listening, then look once more, so no request is left behind."""
        self.remove_pid_file()  # first: a client that finds no listener from now on knows it is no crash
        self.listener.close()
        self.scan()
        if self.busy():
            if self.bind():
                store.write_text_atomic(self.paths.pid, str(os.getpid()))
                return False
            return True  # someone else took over
        return True

    def accept_wakeups(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, OSError):
                return
            conn.close()

    def busy(self) -> bool:
        return any(w.busy for w in self.workers) or any(j.pending and PENDING in j.state for j in self.jobs.values())

    # -- requests ---------------------------------------------------------------
    def load_job(self, reg: dict) -> Optional[Job]:
        job = self.jobs.get(reg["job_id"])
        if job is None:
            if not Path(reg["directory"]).is_dir():
                return None
            job = self.jobs[reg["job_id"]] = Job(reg)
        return job

    def requests(self, directory: Path):
        """(path, request, job) for each request file for this host, oldest first; the file is
        deleted once the caller is done with it."""
        for path in protocol.list_requests(directory):
            req = protocol.read_json(path)
            if req is None or req.get("host") != self.host:
                continue
            self.apply_settings(req)
            yield path, req, self.load_job(req)
            os.unlink(path)

    def scan(self) -> None:
        for path, req, job in self.requests(self.paths.queue):
            if job is not None:
                store.write_text_atomic(self.paths.active / f"{job.job_id}.json", path.read_text())
                self.submit(job, req.get("components"))
                if not job.flush():
                    self.drop(job)
        for _path, req, job in self.requests(self.paths.control):
            if job is not None:
                if req["action"] == "edit":
                    self.edit(job, req["resource"], req["value"], req.get("components"))
                else:
                    self.control(job, req["action"], req.get("components"), req.get("reason"))
                if not job.flush():
                    self.drop(job)

    def apply_settings(self, req: dict) -> None:
        if req.get("max_workers"):
            self.max_workers = int(req["max_workers"])
        if req.get("idle_exit") is not None:
            self.idle_exit = float(req["idle_exit"])

    def submit(self, job: Job, components: Optional[List[int]]) -> None:
        now = time.time()
        if components is None:
            fresh = [c for c, s in enumerate(job.state) if s == NEW]
            if len(fresh) == job.n:
                job.log(now, 0, "submitted", count=job.n)
                return
            components = fresh
        for c in components:
            if job.state[c] in (NEW, DONE, REMOVED):
                job.log(now, c, "submitted")

    def edit(self, job: Job, resource: str, value: Any, components: Optional[List[int]]) -> None:
        """Change a resource request of components that have not finished (set_memory, set_disk)."""
        targets = range(job.n) if components is None else components
        job.set_override(resource, list(targets), value)  # finished ones use it when rerun

    def control(self, job: Job, action: str, components: Optional[List[int]], reason: Optional[str]) -> None:
        now = time.time()
        targets = range(job.n) if components is None else components
        holders = {c: w for w in self.workers for j, c in w.assigned if j is job}
        for c in targets:
            s = job.state[c]
            worker = holders.get(c)
            if action == "hold" and s in (PENDING, ASSIGNED, RUNNING, SUSPENDED):
                self.withdraw(worker, job, c)
                job.log(now, c, "held", reason=reason or "held by the user (htmap hold)", code=HOLD_CODE_USER)
            elif action == "edit":
                continue
            elif action == "release" and s == HELD:
                job.log(now, c, "released")
            elif action == "remove" and s not in (DONE, REMOVED):
                self.withdraw(worker, job, c)
                job.log(now, c, "removed", reason=reason or "removed by the user")
            elif action == "vacate" and s in (RUNNING, SUSPENDED):
                self.withdraw(worker, job, c)
                job.log(now, c, "evicted", reason=reason or "vacated by the user (htmap vacate); it runs again")
            elif action == "pause" and s == RUNNING and worker is not None and worker.current == (job, c):
                worker.signal(signal.SIGSTOP)
                job.log(now, c, "suspended", reason=reason or "paused by the user")
            elif action == "resume" and s == SUSPENDED and worker is not None and worker.current == (job, c):
                worker.signal(signal.SIGCONT)
                job.log(now, c, "unsuspended")

    def withdraw(self, worker: Optional[Worker], job: Job, c: int) -> None:
        """Take a component away from its worker: stop it if running, else cancel it.

        Either way it leaves the worker's list at once, so a dying worker never hands it
        back to the queue after it was vacated or released elsewhere."""
        if worker is None:
            return
        worker.forget(job.job_id, c)
        if worker.current == (job, c):
            self.stop(worker)
        else:
            worker.cancel(job, c)

    def stop(self, worker: Optional[Worker]) -> None:
        if worker is None:
            return
        worker.stopped_on_purpose = True
        worker.signal(signal.SIGKILL)
        worker.signal(signal.SIGCONT)

    def drop(self, job: Job) -> None:
        """The job's directory is gone (its map was removed): forget it."""
        for w in self.workers:
            if w.holds(job):
                self.stop(w)
        self.jobs.pop(job.job_id, None)
        try:
            os.unlink(self.paths.active / f"{job.job_id}.json")
        except FileNotFoundError:
            pass

    # -- running ----------------------------------------------------------------
    def dispatch(self) -> None:
        """Give pending components to workers within LOCAL.MAX_WORKERS slots (a component takes
        request_cpus of them): idle workers first, then more to each before it runs dry. Many
        pending components go out in chunks, like ProcessPoolExecutor's chunksize."""
        jobs = [j for j in self.jobs.values() if j.pending]
        if not jobs or not self.room_to_run():
            return
        pending = sum(len(j.pending) for j in jobs)
        chunk = max(1, min(CHUNK_MAX, pending // (4 * self.max_workers)))
        for depth in (1, 2):
            candidates = list(jobs)
            while candidates:
                job = candidates[self.rr % len(candidates)]
                c = job.peek_pending()
                if c is None:
                    candidates.remove(job)
                    continue
                cpus = job.cpus(c)
                worker = self.worker_with_room(depth, cpus, chunk)
                if worker is None:
                    break
                batch = [job.pending.popleft()]
                job.state[c] = ASSIGNED  # a second entry of c in the queue is skipped, never sent twice
                while cpus == 1 and len(batch) < chunk:
                    nxt = job.peek_pending()
                    if nxt is None or job.cpus(nxt) != 1:
                        break
                    batch.append(job.pending.popleft())
                    job.state[nxt] = ASSIGNED
                self.rr += 1
                worker.send(job, batch)

    def slots_used(self) -> int:
        return sum(w.cost for w in self.workers if w.busy)

    def worker_with_room(self, depth: int, cpus: int, chunk: int) -> Optional[Worker]:
        """A live worker that can take a component of ``cpus`` cpus now, starting one if allowed.

        depth 1: an idle worker, within the free slots; depth 2: a busy 1-cpu worker whose
        queue is running low (prefetch, so it never waits for the supervisor)."""
        if depth == 1:
            if self.slots_used() + cpus > self.max_workers:
                return None
        elif cpus != 1:
            return None
        low_water = max(1, chunk // 2)
        for w in self.workers:
            if w.stopped_on_purpose or w.proc.poll() is not None:
                continue
            if depth == 1 and not w.assigned:
                return w
            if depth == 2 and w.assigned and w.cost == 1 and len(w.assigned) <= low_water:
                return w
        if depth > 1:
            return None
        self.workers = [w for w in self.workers if w.busy or w.proc.poll() is None]
        if len(self.workers) < self.max_workers:
            w = Worker(self.python, self.scratch_root)
            self.workers.append(w)
            return w
        return None

    def on_worker_message(self, worker: Worker) -> None:
        try:
            while True:
                for msg in worker.conn.recv():
                    self.handle_message(worker, msg)
                if not worker.conn.poll():
                    return
        except (EOFError, OSError):
            self.on_worker_death(worker)

    def handle_message(self, worker: Worker, msg: tuple) -> None:
        kind, job_id, component = msg[0], msg[1], msg[2]
        cancelled = worker.cancelling.get((job_id, component))
        if cancelled is not None:
            if kind == "start":
                worker.current, worker.started = (cancelled, component), msg[3]
                self.stop(worker)  # it started before it saw the cancel; already logged held/removed
                return
            worker.cancelling.pop((job_id, component), None)
            if kind == "done":  # it ran although it was withdrawn: its result must not show
                try:
                    os.unlink(cancelled.paths.output(component))
                except FileNotFoundError:
                    pass
            return
        if kind == "skipped":
            return
        job = next((j for j, c in worker.assigned if j.job_id == job_id and c == component), None)
        if job is None:
            return
        if kind == "start":
            worker.current, worker.started, worker.peak_mb = (job, component), msg[3], 0
            if job.state[component] == ASSIGNED:
                job.log(msg[3], component, "running")
        elif kind == "noroom":  # its results could not be written: run it again when there is room
            worker.forget(job_id, component)
            worker.current = None
            if job.state[component] == RUNNING:
                job.log(time.time(), component, "evicted",
                        reason=f"no room to write its output in {job.directory}: {msg[3]}; it runs again when "
                               "there is space (free some in HTMAP_DIR)")
            self.out_of_room(msg[3])
        elif kind == "held":  # could not start, e.g. a missing input file
            _, _, _, reason, code = msg
            worker.forget(job_id, component)
            worker.current = None
            if job.state[component] == RUNNING:
                job.log(time.time(), component, "held", reason=reason, code=code)
        elif kind == "done":
            _, _, _, result, runtime, memory_mb, exception_type, exception_msg = msg
            worker.forget(job_id, component)
            worker.current = None
            if self.no_room is not None:  # an output was written: there is room again
                say("there is room again in the map store; components start again")
                self.no_room = None
            if job.state[component] != RUNNING:
                return
            memory_mb = max(memory_mb, worker.peak_mb)
            if result == "errored" and exception_type and self.retry_exception(job, component, exception_type):
                self.retry(job, component, f"raised {exception_type}: {exception_msg}", memory_mb=memory_mb)
            else:
                job.log(time.time(), component, result, runtime=round(runtime, 6), memory_mb=memory_mb)

    # -- limits and retries ---------------------------------------------------
    def retries_left(self, job: Job, c: int) -> bool:
        return job.retries.get(c, 0) < int(job.option("max_retries", c, 0) or 0)

    def retry_exception(self, job: Job, c: int, exception_type: str) -> bool:
        wanted = job.option("retry_exceptions", c) or ()
        if isinstance(wanted, str):
            wanted = [wanted]
        short = exception_type.rsplit(".", 1)[-1]
        return any(w in (exception_type, short) for w in wanted) and self.retries_left(job, c)

    def retry(self, job: Job, c: int, why: str, memory: bool = False, memory_mb: Optional[int] = None) -> None:
        """Run a component again after a failure, growing its memory request if asked to."""
        attempt = job.retries.get(c, 0) + 1
        job.retries[c] = attempt
        total = int(job.option("max_retries", c, 0) or 0)
        reason = f"{why}; retry {attempt} of {total}"
        factor = float(job.option("retry_memory_factor", c, 1) or 1)
        limit = job.option("request_memory", c)
        if memory and limit and factor > 1:
            grown = int(math.ceil(int(limit) * factor))
            job.set_override("request_memory", [c], grown)
            reason += f" with request_memory {grown} MB"
        job.log(time.time(), c, "evicted", reason=reason, retry=attempt, memory_mb=memory_mb)

    def enforce_limits(self) -> None:
        """Stop components over their memory request or runtime limit, like a batch system."""
        now = time.time()
        for w in self.workers:
            if w.current is None or w.stopped_on_purpose:
                continue
            job, c = w.current
            if job.state[c] != RUNNING:
                continue
            limit_s = job.option("max_runtime", c)
            if limit_s and now - w.started > float(limit_s):
                self.over_limit(w, job, c, f"ran longer than its max_runtime of {format_seconds(float(limit_s))}",
                                HOLD_CODE_RUNTIME, memory=False)
                continue
            limit_mb = job.option("request_memory", c)
            if limit_mb:
                rss = processes.tree_rss_mb(w.proc.pid)
                w.peak_mb = max(w.peak_mb, rss)
                if rss > int(limit_mb):
                    self.over_limit(w, job, c, f"used {rss} MB of memory, more than its request_memory of "
                                    f"{int(limit_mb)} MB", HOLD_CODE_MEMORY, memory=True)

    def over_limit(self, worker: Worker, job: Job, c: int, why: str, code: int, memory: bool) -> None:
        worker.forget(job.job_id, c)
        self.stop(worker)
        peak = worker.peak_mb or None
        if self.retries_left(job, c):
            self.retry(job, c, f"component {c} {why}", memory=memory, memory_mb=peak)
            return
        hint = ("raise it with m.set_memory(...) and then m.release()" if memory
                else "give it more time (max_runtime) with a new map, or make it checkpoint, then m.release()")
        job.log(time.time(), c, "held", reason=f"component {c} {why}; {hint}", code=code, memory_mb=peak)

    def limits_active(self) -> bool:
        return any(w.current is not None and (w.current[0].option("request_memory", w.current[1])
                                              or w.current[0].option("max_runtime", w.current[1]))
                   for w in self.workers)

    def on_worker_death(self, worker: Worker) -> None:
        try:
            returncode = worker.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            returncode = None
        if worker in self.workers:
            self.workers.remove(worker)
        job, c = worker.job, worker.component
        if job is not None and c is not None and not worker.stopped_on_purpose and job.state[c] == RUNNING:
            stderr_tail = jobfiles.tail(Path(worker.stderr_path))
            for name in ("stdout", "stderr"):
                src = Path(worker.capture_dir) / name
                try:
                    if src.stat().st_size:
                        store.write_bytes_atomic(job.paths.log(c, name), src.read_bytes())
                except OSError as e:  # the map was removed, or the disk is full: go on, the reason matters more
                    say(f"could not keep the {name} of component {c}: {e}")
            message = f"component {c} died without output: {describe_exit(returncode)}"
            if returncode == -signal.SIGKILL and self.oom_killed_since(worker.started):
                peak = f" (its peak seen: {worker.peak_mb} MB)" if worker.peak_mb else ""
                message += (f", most likely by the kernel's out-of-memory killer: the machine (or the memory limit "
                            f"of its cgroup) ran out of memory while it ran{peak}. Give it less to hold at once, "
                            "run it where there is more memory, or set request_memory so that htmap holds it "
                            "with the reason before the kernel kills it")
            if returncode is not None and returncode < 0 and self.retries_left(job, c):
                self.retry(job, c, message + (f"; end of stderr: {stderr_tail[-300:]}" if stderr_tail else ""))
                c = None
        if job is not None and c is not None and not worker.stopped_on_purpose and job.state[c] == RUNNING:
            try:
                jobfiles.write_failure(job.paths.output(c), c, message, stderr_tail)
            except OSError as e:  # the map was removed, or the disk is full: the event below still says why
                say(f"could not record the failure of component {c}: {e}")
            job.log(time.time(), c, "errored", reason=message, runtime=round(time.time() - worker.started, 6))
        for other_job, other in worker.assigned:  # sent but never started: back in the queue
            if other_job.state[other] == ASSIGNED:
                other_job.state[other] = PENDING
                other_job.pending.appendleft(other)
        worker.assigned.clear()
        worker.current = None
        worker.close()

    def room_to_run(self) -> bool:
        """After HTMAP_DIR was found full: is there room again? Checked by writing a probe file, so
        that components are not run again (maybe for hours) only to find no room for their output."""
        if self.no_room is None:
            return True
        if time.monotonic() < self.no_room_until:
            return False
        probe = self.paths.root / ".room-probe"
        try:
            store.write_bytes_atomic(probe, bytes(ROOM_PROBE_BYTES))
        except OSError as e:
            if e.errno not in store.NO_ROOM_ERRNOS:
                raise
            self.out_of_room(e.strerror)
            return False
        finally:
            probe.unlink(missing_ok=True)
        say("there is room again in the map store; components start again")
        self.no_room = None
        return True

    def watch_oom_kills(self, now: float, force: bool = False) -> None:
        """Note when the kernel's out-of-memory killer last killed something (at most once a second)."""
        if self.oom_kills is None or (not force and now - self.oom_kills_read < 1.0):
            return
        count = kernel_oom_kills()
        if count is not None and count > self.oom_kills:
            self.oom_kills, self.oom_kills_rose = count, now
        self.oom_kills_read = now

    def oom_killed_since(self, started: float) -> bool:
        """Did the kernel's out-of-memory killer kill anything since ``started`` (epoch seconds)?"""
        self.watch_oom_kills(time.time(), force=True)
        return self.oom_kills is not None and self.oom_kills_rose >= started - 1.0

    def out_of_room(self, why: str) -> None:
        """HTMAP_DIR is full: start nothing new for a while (doubling, up to a minute), keep events."""
        if self.no_room is None:
            say(f"no room in {self.htmap_dir}: {why}; components wait until there is space")
            self.no_room_wait = 1.0
        else:
            self.no_room_wait = min(2 * self.no_room_wait, 60.0)
        self.no_room = why
        self.no_room_until = time.monotonic() + self.no_room_wait

    def flush(self) -> None:
        for job in list(self.jobs.values()):
            try:
                flushed = job.flush()
            except OSError as e:
                if e.errno not in store.NO_ROOM_ERRNOS:
                    raise
                if self.no_room is None or time.monotonic() >= self.no_room_until:
                    self.out_of_room(f"{e.strerror} ({job.events_path})")
                continue
            if not flushed:
                self.drop(job)
            elif job.finished() and not any(w.holds(job) for w in self.workers):
                self.jobs.pop(job.job_id)
                try:
                    os.unlink(self.paths.active / f"{job.job_id}.json")
                except FileNotFoundError:
                    pass


def main(argv: List[str]) -> int:
    htmap_dir = Path(argv[0])
    max_workers = int(argv[1]) if len(argv) > 1 else 0
    idle_exit = float(argv[2]) if len(argv) > 2 else 10.0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    return Supervisor(htmap_dir, max_workers, idle_exit).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
