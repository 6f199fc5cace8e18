"""The local engine's client side: files in, events out; the supervisor does the work."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ... import store
from ..base import Action, ComponentEvent, Engine, JobSet
from . import protocol


READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


class LocalEngine(Engine):
    name = "local"

    def __init__(self, settings: Optional[Dict[str, Any]] = None):
        super().__init__(settings)
        self.htmap_dir = Path(os.path.expanduser(str(self.settings.get("HTMAP_DIR", "~/.htmap"))))
        local = self.settings.get("LOCAL", {}) or {}
        self.max_workers = int(local.get("MAX_WORKERS") or 0) or (os.cpu_count() or 1)
        self.idle_exit = float(local.get("IDLE_EXIT_SECONDS", 10))
        self.paths = protocol.LocalPaths(self.htmap_dir)
        self._last_liveness: Dict[str, float] = {}
        self._warned_garbled: set = set()  # jobs whose garbled event lines were already reported

    @classmethod
    def available(cls) -> Tuple[bool, str]:
        return True, "the local engine runs components on this machine"

    def check(self, job: JobSet) -> None:
        from ... import exceptions

        protocol.wake(self.htmap_dir)  # before anything is written: fails if another user holds our socket

        cpus = job.fixed.get("request_cpus", 1)
        per = job.per_component.get("request_cpus")
        most = max(per) if per else cpus
        if int(most) > self.max_workers:
            raise exceptions.InvalidOption(
                f"request_cpus={most} is more than the local engine's {self.max_workers} worker slots "
                "(LOCAL.MAX_WORKERS); ask for fewer cpus or raise LOCAL.MAX_WORKERS"
            )
        from ...options import PORTABLE_OPTIONS, warn_unknown_options
        from ...transfer import is_url

        warn_unknown_options(list(job.fixed) + list(job.per_component), PORTABLE_OPTIONS, self.name)
        files = list(job.fixed_input_files)
        for per in job.input_files or ():
            files.extend(per)
        for spec in files:
            if is_url(spec):
                raise exceptions.InvalidOption(
                    f"the local engine cannot fetch {spec}: it copies local files only; download it first "
                    "and give the local path, or use a cluster engine"
                )
        warn_missing_inputs(files)
        seen = set()
        for remaps in job.output_remaps or ():
            if id(remaps) in seen:
                continue
            seen.add(id(remaps))
            for name, dest in remaps.items():
                if is_url(dest):
                    raise exceptions.InvalidOption(
                        f"output_remaps sends {name!r} to {dest}, but the local engine writes local files only "
                        "(plain paths or file:// URLs); use a local destination or a cluster engine"
                    )

    def _registration(self, job: JobSet) -> Dict[str, Any]:
        return {
            "job_id": job.job_id,
            "directory": str(job.directory),
            "num_components": job.num_components,
            "host": protocol.hostname(),
            "sys_path": [p for p in sys.path if p],
            "max_workers": self.max_workers,
            "idle_exit": self.idle_exit,
        }

    def submit(self, job: JobSet, components: Optional[Sequence[int]] = None) -> None:
        self.paths.make()
        reg = self._registration(job)
        reg["components"] = list(components) if components is not None else None
        protocol.write_request(self.paths.queue, job.job_id, reg)
        self.ensure_supervisor()

    def act(self, job: JobSet, action: Action, components: Optional[Sequence[int]] = None,
            reason: Optional[str] = None) -> None:
        self.paths.make()
        req = self._registration(job)
        req.update(action=Action(action).value, components=list(components) if components is not None else None,
                   reason=reason)
        path = protocol.write_request(self.paths.control, job.job_id, req)
        if not self._job_active(job):
            # nothing of this job runs or waits: the action is a no-op
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return
        self.ensure_supervisor()

    def edit(self, job: JobSet, resource: str, value: Any, components: Optional[Sequence[int]] = None) -> None:
        """Change a resource request; the supervisor applies it to components not yet finished."""
        if resource not in ("request_memory", "request_disk", "max_runtime"):
            raise NotImplementedError(f"the local engine cannot edit {resource}")
        self.paths.make()
        req = self._registration(job)
        req.update(action="edit", resource=resource, value=value,
                   components=list(components) if components is not None else None)
        protocol.write_request(self.paths.control, job.job_id, req)
        if not self._job_active(job):
            # nothing runs: record the edit directly, the supervisor reads it when it next runs the job
            from .supervisor import Job

            try:
                Job.edit_offline(job.directory, resource, value, components)
            finally:
                for p in protocol.list_requests(self.paths.control):
                    if p.name.startswith(job.job_id + "."):
                        try:
                            os.unlink(p)
                        except FileNotFoundError:
                            pass
            return
        self.ensure_supervisor()
        self.wait_for_control(job)

    def wait_for_control(self, job: JobSet, timeout: float = 30.0) -> bool:
        """Block until the supervisor has carried out this job's pending actions."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while time.monotonic() < deadline:
            if not any(p.name.startswith(job.job_id + ".") for p in protocol.list_requests(self.paths.control)):
                return True
            self.ensure_supervisor()
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        return False

    def live_log(self, job: JobSet, component: int, stream: str) -> Optional[Path]:
        """The capture file of the worker running ``component`` (each worker names its component in
        its ``current`` file), or None when no worker runs it."""
        import glob
        import tempfile

        wanted = f"{job.job_id} {component}"
        for marker in glob.glob(os.path.join(tempfile.gettempdir(), "htmap-scratch-*", "worker-*", "current")):
            try:
                with open(marker) as f:
                    if f.readline().strip() == wanted:
                        return Path(marker).with_name(stream)
            except OSError:
                continue
        return None

    def forget(self, job: JobSet) -> None:
        self.wait_for_control(job)

    def read_events(self, job: JobSet, cursor: Any) -> Tuple[List[ComponentEvent], Any]:
        offset = cursor or 0
        path = job.engine_dir / protocol.EVENTS_FILE
        data, offset = protocol.read_new(path, offset)
        skipped: List[str] = []
        events = []
        for fields in protocol.parse_events(data, skipped):
            if fields[1] + fields[2] <= job.num_components:
                events.append(protocol.to_component_event(*fields))
            else:
                skipped.append(protocol.format_event(fields[0], fields[1], fields[3], fields[4], fields[2]).strip())
        if skipped and job.job_id not in self._warned_garbled:
            self._warned_garbled.add(job.job_id)
            warn_garbled(path, skipped)
        now = time.monotonic()
        if now - self._last_liveness.get(job.job_id, 0.0) > 1.0:
            self._last_liveness[job.job_id] = now
            if self._job_active(job):
                try:
                    self.ensure_supervisor()
                except OSError as e:
                    if e.errno not in READ_ONLY_ERRNOS:
                        raise  # else: a read-only HTMAP_DIR (a colleague's maps): reading must still work
        return events, offset

    def _job_active(self, job: JobSet) -> bool:
        if (self.paths.active / f"{job.job_id}.json").exists():
            return True
        return any(p.name.startswith(job.job_id + ".") for p in protocol.list_requests(self.paths.queue))

    def ensure_supervisor(self) -> None:
        """Wake the supervisor, starting one (detached) if none is listening."""
        if protocol.wake(self.htmap_dir):
            return
        orphaned = self._orphaned_jobs()
        store.make_dir(self.paths.root)
        with store.open_private(self.paths.log, "ab") as log:
            subprocess.Popen(
                [sys.executable, "-m", "htmap.engines.local.supervisor", str(self.htmap_dir),
                 str(self.max_workers), str(self.idle_exit)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
                cwd="/", env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
            )
        if orphaned:
            import warnings

            warnings.warn(f"htmap's local supervisor for {self.htmap_dir} had stopped (killed, or the machine "
                          f"restarted) with {orphaned} map{'s' if orphaned > 1 else ''} not finished, and nothing "
                          "ran since; started it again: components that were running run again",
                          RuntimeWarning, stacklevel=4)

    def _orphaned_jobs(self) -> int:
        """Jobs of this host that a supervisor took on and did not finish, if it was killed (its pid
        file is left and none listens now); 0 after a normal idle exit."""
        count = 0
        try:
            pid = int(self.paths.pid.read_text())
        except (OSError, ValueError):
            return 0
        if pid_alive(pid):
            return 0  # exiting (or starting) right now, not killed
        for path in protocol.list_requests(self.paths.active):
            reg = protocol.read_json(path)
            if reg and reg.get("host") == protocol.hostname():
                count += 1
        return count


def warn_missing_inputs(specs: Sequence[str], shown: int = 5) -> None:
    """Input files missing at submit: the components that need them are held when they start."""
    import warnings

    missing = sorted({s for s in specs if not os.path.exists(s.rstrip("/") or "/")})
    if not missing:
        return
    names = ", ".join(missing[:shown]) + (f" and {len(missing) - shown} more" if len(missing) > shown else "")
    warnings.warn(f"input file{'s' if len(missing) > 1 else ''} {names} do{'' if len(missing) > 1 else 'es'} not "
                  "exist now; a component that needs one is held when it starts: create the file, then release it "
                  "(m.release())", UserWarning, stacklevel=4)


def warn_garbled(path: Path, lines: Sequence[str]) -> None:
    import warnings

    warnings.warn(f"{len(lines)} line{'s' if len(lines) > 1 else ''} of {path} could not be read and "
                  f"{'were' if len(lines) > 1 else 'was'} skipped (the first: {lines[0][:80]!r}); the events after "
                  "them count as usual", RuntimeWarning, stacklevel=5)


def pid_alive(pid: int) -> bool:
    """Running, and not a zombie (a killed supervisor stays one while the client that started it lives)."""
    if os.path.isdir("/proc/self"):
        from .processes import is_running

        return is_running(pid)
    from ...mapstore import pid_exists

    return pid_exists(pid)
