"""A warm worker: loads each map's function once, then runs components on request.

Started by the supervisor as ``python worker.py RUNNER_PATH CONN_FD`` with its stdout
and stderr pointing at capture files; imports only the stdlib, cloudpickle and the
runner, so it starts fast and user modules named like htmap's cannot clash.
"""
import collections
import importlib.util
import os
import shutil
import sys
import threading
import time
from multiprocessing.connection import Connection


def load_module(path, name):
    """Import a file under a private name: the user's modules must not clash with ours."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_runner(path):
    return load_module(path, "_htmap_runner")


TRANSFER_DIR = "_htmap_transfer"


def die_with_parent():
    """Linux: get SIGKILL when the supervisor dies, so no component outlives it."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class MemoryMeter:
    """Peak resident memory per component: reset with clear_refs, read VmHWM (Linux).

    The /proc files stay open: two opens per component cost more than a trivial component."""

    def __init__(self):
        try:
            self.clear = os.open("/proc/self/clear_refs", os.O_WRONLY)
            self.status = os.open("/proc/self/status", os.O_RDONLY)
        except OSError:
            self.clear = self.status = None

    def reset(self):
        if self.clear is not None:
            try:
                os.write(self.clear, b"5")
            except OSError:
                pass

    def peak_mb(self):
        if self.status is not None:
            try:
                data = os.pread(self.status, 8192, 0)
                start = data.index(b"VmHWM:")
                return int(data[start + 6:data.index(b"kB", start)]) // 1024
            except (OSError, ValueError):
                pass
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def save_capture(fd, destination, runner):
    """Copy what the component wrote to fd 1 or 2 into its log file, then empty the capture."""
    size = os.fstat(fd).st_size
    if not size:
        return 0
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, size)
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            break
        data += chunk
    runner.publish(destination, data)
    os.ftruncate(fd, 0)
    return size


CURRENT_WIDTH = 128


def mark_current(fd, job_id, component):
    """Name the component this worker runs in its ``current`` file (``htmap stdout --follow``
    reads it): one line, padded so that it always overwrites the one before."""
    line = ("%s %d" % (job_id, component)).ljust(CURRENT_WIDTH - 1) + "\n"
    os.pwrite(fd, line.encode(), 0)


def empty_directory(path):
    """Remove what a component left in its scratch directory (usually nothing)."""
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    pass


class JobCache:
    """Per job set: the function (loaded once) and open input files (read with pread)."""

    def __init__(self, runner, size=8):
        self.runner = runner
        self.size = size
        self.jobs = {}

    def get(self, job_id, directory, sys_path):
        """(function or None, index fd, data fd); None values mean: let the runner load and report."""
        entry = self.jobs.get(job_id)
        if entry is not None:
            return entry
        for path in reversed(sys_path):
            if path not in sys.path:
                sys.path.insert(1, path)
        try:
            with open(os.path.join(directory, "func"), "rb") as f:
                func = self.runner.cloudpickle.load(f)
            index = os.open(os.path.join(directory, "inputs", "index"), os.O_RDONLY)
            data = os.open(os.path.join(directory, "inputs", "data"), os.O_RDONLY)
        except Exception:
            return None, None, None
        if len(self.jobs) >= self.size:
            self.drop(next(iter(self.jobs)))
        entry = self.jobs[job_id] = (func, index, data)
        return entry

    def input_bytes(self, entry, component):
        _, index, data = entry
        if index is None:
            return None
        try:
            return self.runner.read_stored_input(index, data, component)
        except IndexError:
            return None  # the runner reads it again and reports the failure

    def drop(self, job_id):
        _, index, data = self.jobs.pop(job_id)
        for fd in (index, data):
            if fd is not None:
                os.close(fd)


FLUSH_INTERVAL = 0.02  # seconds: reports of fast components go to the supervisor in batches


class Outbox:
    """Reports for the supervisor, sent in batches so fast components cost one message, not two.

    A background thread sends what is waiting every FLUSH_INTERVAL, so a long component's
    start is reported at once even though nothing else happens in this process meanwhile."""

    def __init__(self, conn):
        self.conn = conn
        self.items = []
        self.last = 0.0
        self.lock = threading.Lock()
        threading.Thread(target=self._flush_regularly, daemon=True).start()

    def _flush_regularly(self):
        while True:
            time.sleep(FLUSH_INTERVAL)
            try:
                self.flush()
            except OSError:
                return

    def add(self, item):
        with self.lock:
            self.items.append(item)
        if time.time() - self.last >= FLUSH_INTERVAL:
            self.flush()

    def flush(self):
        with self.lock:
            if self.items:
                self.conn.send(self.items)
                self.items = []
                self.last = time.time()


def receive(conn, queue, outbox):
    """Take every message waiting (blocking only when there is nothing to run); False on exit."""
    while not queue or conn.poll():
        if not queue:
            outbox.flush()
        msg = conn.recv()
        if msg[0] == "exit":
            return False
        if msg[0] == "run":
            _, job_id, directory, sys_path, items, sharded = msg
            queue.extend((job_id, directory, sys_path, c, extras, sharded) for c, extras in items)
        elif msg[0] == "cancel":
            for item in queue:
                if item[0] == msg[1] and item[3] == msg[2]:
                    queue.remove(item)
                    outbox.add(("skipped", msg[1], msg[2]))
                    outbox.flush()
                    break
    return True


def stage_inputs(specs, scratch):
    """Copy input files into the working directory; the first missing one is returned, else None."""
    for spec in specs:
        contents = spec.endswith("/")
        src = spec.rstrip("/") or "/"
        if not os.path.exists(src):
            return src
        if os.path.isdir(src):
            dest = scratch if contents else os.path.join(scratch, os.path.basename(src))
            shutil.copytree(src, dest, dirs_exist_ok=True)
        else:
            shutil.copy2(src, os.path.join(scratch, os.path.basename(src)))
    return None


def place(src, dest, runner=None):
    """Move a file or directory to ``dest`` (replacing what is there), across filesystems too.
    With ``runner`` (a destination inside the map), directories become 0700 and files 0600."""
    parent = os.path.dirname(dest)
    if parent and runner is not None:
        runner.make_private_dirs(parent)
    elif parent:
        os.makedirs(parent, exist_ok=True)
    if os.path.isdir(dest) and not os.path.islink(dest):
        shutil.rmtree(dest)
    shutil.move(src, dest)
    if runner is not None:
        runner.make_private(dest)


def collect_outputs(scratch, target, remaps, runner=None):
    """Bring ``_htmap_transfer`` back: remapped names to their destinations, the rest to ``target``
    (the component's output_files directory)."""
    transfer = os.path.join(scratch, TRANSFER_DIR)
    if not os.path.isdir(transfer):
        return
    for root, dirs, files in os.walk(transfer):
        for name in files:
            src = os.path.join(root, name)
            rel = os.path.relpath(src, transfer)
            dest = remaps.get(rel) or remaps.get(name) if remaps else None
            if dest is not None:
                place(src, os.path.join(dest, name) if dest.endswith("/") else dest)
            else:
                place(src, os.path.join(target, rel), runner)


def exception_of(data, runner):
    """(type, message) of an error output, for retry decisions."""
    if not data.startswith(runner.ERR):
        return None, None
    try:
        import pickle

        report = pickle.loads(data[len(runner.ERR):])
        return report.get("exception_type") or None, str(report.get("exception_msg", ""))[:500]
    except Exception:
        return None, None


def main(runner_path, conn_fd):
    die_with_parent()
    processes = load_module(os.path.join(os.path.dirname(os.path.abspath(__file__)), "processes.py"),
                            "_htmap_processes")
    processes.become_subreaper()  # processes a component starts stay below this one, even after setsid
    runner = load_runner(runner_path)
    conn = Connection(conn_fd)
    home = os.getcwd()
    cache = JobCache(runner)
    memory = MemoryMeter()
    scratch = os.path.join(home, "scratch")  # reused: a directory per component is slow on AFS/NFS
    os.makedirs(scratch, exist_ok=True)
    queue = collections.deque()  # the supervisor sends more components before these end
    current = os.open(os.path.join(home, "current"), os.O_WRONLY | os.O_CREAT, 0o600)
    outbox = Outbox(conn)
    while True:
        try:
            if not receive(conn, queue, outbox):
                return 0
        except (EOFError, OSError):
            return 0
        job_id, directory, sys_path, component, extras, sharded = queue.popleft()

        def under(sub):  # component's directory under a per-component directory (htmap/layout.py)
            return runner.component_dir(os.path.join(directory, sub), component, sharded)

        outbox.add(("start", job_id, component, time.time()))
        mark_current(current, job_id, component)
        extras = extras or {}
        if extras.get("files"):
            try:
                missing = stage_inputs(extras["files"], scratch)
            except OSError as e:
                missing = "%s (%s)" % (getattr(e, "filename", "") or "an input file", e.strerror or e)
            if missing is not None:
                empty_directory(scratch)
                outbox.add(("held", job_id, component,
                            "input file %s of component %d does not exist; create it, then release the "
                            "component (m.release())" % (missing, component), 13))
                outbox.flush()
                continue
        checkpoint_dir = os.path.join(under(os.path.join("engine", "checkpoints")), str(component))
        os.environ["HTMAP_CHECKPOINT_DIR"] = checkpoint_dir
        entry = cache.get(job_id, directory, sys_path)
        memory.reset()
        os.chdir(scratch)
        started = time.time()
        data = runner.load_and_run(os.path.join(directory, "func"), os.path.join(directory, "inputs"),
                                   component, scratch, func=entry[0], input_bytes=cache.input_bytes(entry, component))
        runtime = time.time() - started
        sys.stdout.flush()
        sys.stderr.flush()
        os.chdir(home)
        # what the component started and left running ends with it, as a batch job's would
        processes.end_leftovers()
        try:
            collect_outputs(scratch, os.path.join(under("output_files"), str(component)), extras.get("remaps"), runner)
        except OSError as e:
            data = runner.ERR + __import__("pickle").dumps(runner.error_report(
                component, "failure", "could not bring back the component's output files: %s" % e, scratch=scratch))
        logs = under("logs")
        try:
            save_capture(1, os.path.join(logs, "%d.stdout" % component), runner)
            save_capture(2, os.path.join(logs, "%d.stderr" % component), runner)
            data = runner.write_output_or_failure(under("outputs"), component, data,
                                                  scratch=scratch)
        except OSError as e:
            if e.errno not in runner.NO_ROOM_ERRNOS:
                raise
            # HTMAP_DIR is full: nothing of this run can be kept; the supervisor runs it again later
            for fd in (1, 2):
                os.ftruncate(fd, 0)
            empty_directory(scratch)
            outbox.add(("noroom", job_id, component, "%s (%s)" % (e.strerror, e.filename or directory)))
            outbox.flush()
            continue
        empty_directory(scratch)
        if os.path.isdir(checkpoint_dir):
            shutil.rmtree(checkpoint_dir, ignore_errors=True)  # finished: a checkpoint is not an output
        kind = "completed" if data.startswith(runner.OK) else "errored"
        exc_type, exc_msg = exception_of(data, runner)
        outbox.add(("done", job_id, component, kind, runtime, memory.peak_mb(), exc_type, exc_msg))


if __name__ == "__main__":
    sys.path.pop(0)  # this file's directory: never shadow the user's modules
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
