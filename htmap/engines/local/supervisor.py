"""The local engine's supervisor: one detached process per HTMAP_DIR and host.

It takes run requests from ``queue/``, actions from ``control/``, runs components on
warm workers (at most ``max_workers`` at once), and appends what happens to each
job's event log. It is the only writer of those logs. It recovers from a crash by
replaying them: components that were running are run again unless their output was
already published. It exits after a while with nothing to do.
"""
from __future__ import annotations

import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Deque, Dict, List, Optional, Set, Tuple

from ... import jobfiles, store
from . import protocol

NEW, PENDING, RUNNING, HELD, DONE, REMOVED, SUSPENDED, ASSIGNED = range(8)
# ASSIGNED: sent to a worker that has not started it yet (never logged; PENDING after a crash)
PREFETCH = 2  # components a worker holds at once: it starts the next without a round trip
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
        self.events_path = self.directory / "engine" / protocol.EVENTS_FILE
        self.recover()

    def recover(self) -> None:
        data, end = protocol.read_new(self.events_path, 0)
        self.drop_torn_tail(end)
        for _t, first, count, kind, _extra in protocol.parse_events(data):
            new = _STATE_AFTER.get(kind)
            if new is not None:
                self.state[first:first + count] = bytes([new]) * count
        now = time.time()
        outputs = self.directory / "outputs"
        for c, s in enumerate(self.state):
            if s in (RUNNING, SUSPENDED):
                kind = jobfiles.output_kind(jobfiles.output_path(outputs, c))
                if kind is not None:
                    self.log(now, c, "completed" if kind == "OK" else "errored")
                else:
                    self.log(now, c, "evicted", reason="htmap's local supervisor stopped while this "
                             "component ran; it runs again")
        self.pending.extend(c for c, s in enumerate(self.state) if s == PENDING)

    def drop_torn_tail(self, end: int) -> None:
        """A supervisor killed mid-append may leave half a line: cut it before appending."""
        try:
            if self.events_path.stat().st_size > end:
                os.truncate(self.events_path, end)
        except FileNotFoundError:
            pass

    def log(self, t: float, component: int, kind: str, count: int = 1, **extra) -> None:
        self.lines.append(protocol.format_event(t, component, kind, extra, count))
        new = _STATE_AFTER.get(kind)
        if new is not None:
            self.state[component:component + count] = bytes([new]) * count
            if new == PENDING:
                self.pending.extend(range(component, component + count))

    def flush(self) -> bool:
        if not self.lines:
            return True
        try:
            with store.open_private(self.events_path, "ab") as f:
                f.write("".join(self.lines).encode())
        except FileNotFoundError:
            return False  # the map was removed under us
        self.lines.clear()
        return True

    def next_pending(self) -> Optional[int]:
        while self.pending:
            c = self.pending.popleft()
            if self.state[c] == PENDING:
                return c
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
        self.cancelling: Set[Tuple[str, int]] = set()
        self.started = 0.0
        self.stopped_on_purpose = False

    @property
    def busy(self) -> bool:
        return bool(self.assigned)

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

    def send(self, job: Job, component: int) -> None:
        self.assigned.append((job, component))
        job.state[component] = ASSIGNED
        self.conn.send(("run", job.job_id, str(job.directory), component, job.sys_path))

    def cancel(self, job: Job, component: int) -> None:
        """Ask the worker to drop a component it has not started."""
        self.cancelling.add((job.job_id, component))
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
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        self.signal(signal.SIGKILL)
        self.conn.close()


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
        self.scratch_root = tempfile.mkdtemp(prefix="htmap-scratch-")
        self.listener: Optional[socket.socket] = None
        self.rr = 0  # round-robin position over jobs

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
            return False
        s.listen(64)
        s.setblocking(False)
        self.listener = s
        return True

    def run(self) -> int:
        if not self.bind():
            return 0  # another supervisor serves this HTMAP_DIR
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
                    self.scan()
                    last_scan = now
                self.dispatch()
                self.flush()
                if self.busy():
                    idle_since = now
                elif now - idle_since > self.idle_exit and self.try_exit():
                    return 0
                ready = wait([self.listener, *[w for w in self.workers if w.busy]],
                             timeout=SCAN_INTERVAL)
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

    def try_exit(self) -> bool:
        """Stop listening, then look once more, so no request is left behind."""
        self.listener.close()
        self.scan()
        if self.busy():
            return not self.bind()  # someone else took over if we cannot bind again
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

    def scan(self) -> None:
        for path in protocol.list_requests(self.paths.queue):
            req = protocol.read_json(path)
            if req is None or req.get("host") != self.host:
                continue
            self.apply_settings(req)
            job = self.load_job(req)
            if job is not None:
                store.write_text_atomic(self.paths.active / f"{job.job_id}.json", path.read_text())
                self.submit(job, req.get("components"))
                if not job.flush():
                    self.drop(job)
            os.unlink(path)
        for path in protocol.list_requests(self.paths.control):
            req = protocol.read_json(path)
            if req is None or req.get("host") != self.host:
                continue
            self.apply_settings(req)
            job = self.load_job(req)
            if job is not None:
                self.control(job, req["action"], req.get("components"), req.get("reason"))
                if not job.flush():
                    self.drop(job)
            os.unlink(path)

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

    def control(self, job: Job, action: str, components: Optional[List[int]], reason: Optional[str]) -> None:
        now = time.time()
        targets = range(job.n) if components is None else components
        holders = {c: w for w in self.workers for j, c in w.assigned if j is job}
        for c in targets:
            s = job.state[c]
            worker = holders.get(c)
            if action == "hold" and s in (PENDING, ASSIGNED, RUNNING, SUSPENDED):
                self.withdraw(worker, job, c)
                job.log(now, c, "held", reason=reason or "held by the user (htmap hold)", code=1)
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
        """Take a component away from its worker: stop it if running, else cancel it."""
        if worker is None:
            return
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
        """Give pending components to workers: idle ones first, then one more each (prefetch)."""
        for depth in range(1, PREFETCH + 1):
            jobs = [j for j in self.jobs.values() if j.pending]
            while jobs:
                worker = self.worker_with_room(depth)
                if worker is None:
                    break
                job = jobs[self.rr % len(jobs)]
                self.rr += 1
                c = job.next_pending()
                if c is None:
                    jobs.remove(job)
                    continue
                worker.send(job, c)

    def worker_with_room(self, depth: int) -> Optional[Worker]:
        """A live worker holding fewer than ``depth`` components, starting one if allowed."""
        for w in self.workers:
            if len(w.assigned) < depth and not w.stopped_on_purpose and w.proc.poll() is None:
                return w
        self.workers = [w for w in self.workers if w.busy or w.proc.poll() is None]
        if depth == 1 and len(self.workers) < self.max_workers:
            w = Worker(self.python, self.scratch_root)
            self.workers.append(w)
            return w
        return None

    def on_worker_message(self, worker: Worker) -> None:
        try:
            while True:
                self.handle_message(worker, worker.conn.recv())
                if not worker.conn.poll():
                    return
        except (EOFError, OSError):
            self.on_worker_death(worker)

    def handle_message(self, worker: Worker, msg: tuple) -> None:
        kind, job_id, component = msg[0], msg[1], msg[2]
        if kind == "skipped":
            worker.cancelling.discard((job_id, component))
            worker.forget(job_id, component)
            return
        job = next((j for j, c in worker.assigned if j.job_id == job_id and c == component), None)
        if job is None:
            return
        if kind == "start":
            worker.current, worker.started = (job, component), msg[3]
            if (job_id, component) in worker.cancelling:
                self.stop(worker)  # it started before it saw the cancel; already logged held/removed
            elif job.state[component] == ASSIGNED:
                job.log(msg[3], component, "running")
        elif kind == "done":
            _, _, _, result, runtime, memory_mb = msg
            worker.forget(job_id, component)
            worker.current = None
            if job.state[component] == RUNNING:
                job.log(time.time(), component, result, runtime=round(runtime, 6), memory_mb=memory_mb)

    def on_worker_death(self, worker: Worker) -> None:
        try:
            returncode = worker.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            returncode = None
        if worker in self.workers:
            self.workers.remove(worker)
        job, c = worker.job, worker.component
        if job is not None and c is not None and not worker.stopped_on_purpose and job.state[c] == RUNNING:
            logs = job.directory / "logs"
            stderr_tail = jobfiles.tail(Path(worker.stderr_path))
            for name in ("stdout", "stderr"):
                src = Path(worker.capture_dir) / name
                if src.stat().st_size:
                    store.write_bytes_atomic(logs / f"{c}.{name}", src.read_bytes())
            message = f"component {c} died without output: {describe_exit(returncode)}"
            try:
                jobfiles.write_failure(job.directory / "outputs", c, message, stderr_tail)
            except FileNotFoundError:
                pass
            job.log(time.time(), c, "errored", reason=message, runtime=round(time.time() - worker.started, 6))
        for other_job, other in worker.assigned:  # sent but never started: back in the queue
            if other_job.state[other] == ASSIGNED:
                other_job.state[other] = PENDING
                other_job.pending.appendleft(other)
        worker.assigned.clear()
        worker.current = None
        worker.close()

    def flush(self) -> None:
        for job in list(self.jobs.values()):
            if not job.flush():
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
