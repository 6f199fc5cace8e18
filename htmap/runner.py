#!/usr/bin/env python3
"""Runs one map component: the job's executable on every engine.

Self-contained on purpose (stdlib + cloudpickle only) so that an execute node needs
Python and cloudpickle but not htmap. Usage::

    python3 runner.py FUNC_FILE INPUTS COMPONENT OUTPUT_DIR

INPUTS is a map's ``inputs`` directory (``data`` + ``index``) or one pickle file of
``(args, kwargs)``. It writes ``OUTPUT_DIR/<component>.out``, atomically: a header line
``HTMAP1 OK`` followed by the cloudpickled return value, or ``HTMAP1 ERR`` followed by
a pickled error report (plain dict). The exit status is non-zero only when the runner
itself could not write that file.
"""
import errno
import getpass
import os
import pickle
import platform
import socket
import struct
import sys
import time
import traceback

NO_ROOM_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a full disk, a quota, a file size limit
OK = b"HTMAP1 OK\n"
ERR = b"HTMAP1 ERR\n"
INDEX_ENTRY = struct.Struct("<Q")
MAX_REPR = 200
TAIL_BYTES = 4000
CHECKPOINT_DIR = "_htmap_checkpoint"
TRANSFER_DIR = "_htmap_transfer"
HELPERS_FILE = "execution.py"  # htmap/execution.py, shipped beside the runner to nodes without htmap
SHARD_SIZE = 1000  # components per leaf directory of a sharded map (see htmap/layout.py)


def shard(component):
    """The sub-path of a per-component directory that holds ``component``'s entries.

    ``"0/012"`` for component 12345: at most SHARD_SIZE components per leaf directory and
    SHARD_SIZE leaf directories per middle one, so no directory outgrows AFS's limits.
    Defined here because the runner is the one file every execute node has."""
    return "%d/%03d" % (component // (SHARD_SIZE * SHARD_SIZE), component // SHARD_SIZE % SHARD_SIZE)


def component_dir(base, component, sharded=True):
    """The directory under ``base`` where ``component``'s entry lives (``base`` itself for old,
    unsharded maps)."""
    return os.path.join(base, shard(component)) if sharded else base


try:
    import cloudpickle
except ImportError as _e:  # reported per component, not as a crash
    cloudpickle = None
    CLOUDPICKLE_ERROR = str(_e)


def read_stored_input(index_fd, data_fd, component):
    """The pickled (args, kwargs) of one component from open ``index`` and ``data`` files."""
    size = INDEX_ENTRY.size
    raw = os.pread(index_fd, 2 * size, component * size)
    if len(raw) != 2 * size:
        raise IndexError("component %d is not in the map's inputs" % component)
    start, end = INDEX_ENTRY.unpack(raw[:size])[0], INDEX_ENTRY.unpack(raw[size:])[0]
    return os.pread(data_fd, end - start, start)


def read_input_bytes(inputs, component):
    """The pickled (args, kwargs) of one component, from a directory store or a file."""
    if os.path.isdir(inputs):
        index_fd = os.open(os.path.join(inputs, "index"), os.O_RDONLY)
        try:
            data_fd = os.open(os.path.join(inputs, "data"), os.O_RDONLY)
            try:
                return read_stored_input(index_fd, data_fd, component)
            finally:
                os.close(data_fd)
        finally:
            os.close(index_fd)
    with open(inputs, "rb") as f:
        return f.read()


def short_repr(value):
    try:
        text = repr(value)
    except Exception as e:  # a broken __repr__ must not hide the real error
        text = "<repr failed: %s>" % e
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 3] + "..."


def node_info():
    try:
        ip = socket.gethostbyname(socket.gethostname())
    except OSError:
        ip = "unknown"
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return {
        "hostname": socket.getfqdn(),
        "ip": ip,
        "platform": platform.platform(),
        "user": user,
        "pid": os.getpid(),
    }


def python_info():
    return {
        "executable": sys.executable,
        "version": sys.version,
        "cloudpickle": getattr(cloudpickle, "__version__", None),
    }


def scratch_contents(directory):
    out = []
    for root, _dirs, files in os.walk(directory):
        for name in files:
            out.append(os.path.relpath(os.path.join(root, name), directory))
    return sorted(out)


# Source of functions pickled by value (defined in a script or notebook), written beside the
# function file at submit: the execute node may not have the file, and cloudpickle hides its name.
SOURCES = {}
SOURCES_READ = set()  # function files whose sidecar was looked for (a warm worker runs many components)


def load_sources(func_file):
    import json

    if func_file in SOURCES_READ:
        return
    SOURCES_READ.add(func_file)
    try:
        with open(func_file + ".source.json") as f:
            SOURCES.update(json.load(f))
    except (OSError, ValueError):
        pass


def source_line(code, lineno):
    """(filename, line) for a frame, using the shipped source when the file is not here."""
    filename = code.co_filename
    line = traceback.FrameSummary(filename, lineno, code.co_name).line or ""
    known = SOURCES.get(code.co_name)
    if not line and known and (filename.startswith("<") or filename == known["filename"]):
        index = lineno - known["first"]
        if 0 <= index < len(known["lines"]):
            line = known["lines"][index].strip()
        filename = known["filename"]
    return filename, line


def stack_summary(tb):
    frames = []
    for frame, lineno in traceback.walk_tb(tb):
        code = frame.f_code
        filename, line = source_line(code, lineno)
        frames.append(
            {
                "filename": filename,
                "lineno": lineno,
                "name": code.co_name,
                "line": line,
                "locals": {k: short_repr(v) for k, v in frame.f_locals.items()},
            }
        )
    return frames


def error_report(component, kind, message, *, exc=None, scratch=None, started=None, stderr_tail=""):
    """A plain-dict report that any Python can unpickle without the user's code."""
    report = {
        "component": component,
        "kind": kind,  # "exception" (user code raised) or "failure" (htmap or the system)
        "exception_type": type(exc).__name__ if exc is not None else kind,
        "exception_msg": message,
        "stack_summary": [],
        "traceback": "",
        "node_info": node_info(),
        "python_info": python_info(),
        "scratch_dir_contents": scratch_contents(scratch) if scratch else [],
        "start_time": started,
        "end_time": time.time(),
        "stderr_tail": stderr_tail,
    }
    if exc is not None:
        tb = exc.__traceback__
        # drop the runner's own frames so the report starts at the user's function
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next
        report["stack_summary"] = stack_summary(tb)
        report["traceback"] = "".join(traceback.format_exception(type(exc), exc, tb))
    return report


def restore_checkpoint(scratch):
    """Put the files of the component's last checkpoint back into its working directory.

    The checkpoint is ``$HTMAP_CHECKPOINT_DIR`` (engines that keep it outside the scratch
    directory) or ``./_htmap_checkpoint``; ``.old`` is used if a crash interrupted a swap.
    """
    import shutil

    source = os.environ.get("HTMAP_CHECKPOINT_DIR") or os.path.join(scratch, CHECKPOINT_DIR)
    for candidate in (source, source + ".old"):
        if os.path.isdir(candidate):
            for name in os.listdir(candidate):
                src, dest = os.path.join(candidate, name), os.path.join(scratch, name)
                if os.path.isdir(src):
                    shutil.copytree(src, dest, dirs_exist_ok=True)
                else:
                    shutil.copy2(src, dest)
            return True
    return False


def run(func, args, kwargs, component, scratch):
    """Call the user's function; returns the bytes of the output file."""
    os.environ["HTMAP_ON_EXECUTE"] = "1"
    os.environ["HTMAP_COMPONENT"] = str(component)
    try:
        restore_checkpoint(scratch)
    except OSError as e:
        sys.stderr.write("htmap: could not restore the checkpoint: %s\n" % e)
    started = time.time()
    try:
        value = func(*args, **kwargs)
    except (Exception, KeyboardInterrupt) as e:  # KeyboardInterrupt raised by user code is its error too
        report = error_report(component, "exception", str(e), exc=e, scratch=scratch, started=started)
        sys.stderr.write(report["traceback"])
        sys.stderr.flush()
        return ERR + pickle.dumps(report, protocol=4)
    try:
        return OK + cloudpickle.dumps(value)
    except Exception as e:
        message = "the return value (%s) could not be pickled: %s" % (short_repr(value), e)
        sys.stderr.write("htmap: %s\n" % message)
        return ERR + pickle.dumps(error_report(component, "failure", message, scratch=scratch, started=started), protocol=4)


def python_mismatch_hint():
    """Why a function may not load here: the map was made by another Python version (its pickles
    hold that version's bytecode). The HTCondor wrapper says which Python made the map."""
    made_by = os.environ.get("HTMAP_SUBMIT_PYTHON", "")
    here = "%d.%d" % sys.version_info[:2]
    if not made_by or made_by.split(".")[:2] == here.split("."):
        return ""
    return ("; the map was made with Python %s but this node runs Python %s (%s): functions pickled by one "
            "Python version often cannot be loaded by another. Submit from a Python %s, or ship your Python "
            "with DELIVERY_METHOD 'transplant' (or use 'shared', 'docker' or 'singularity')"
            % (made_by, platform.python_version(), sys.executable, here))


def provide_htmap_helpers(directory):
    """Where htmap itself is not installed (a node with only Python and cloudpickle), make
    ``import htmap`` give mapped functions what they call while running (``htmap.checkpoint``,
    ``htmap.transfer_output_files``): the helpers module shipped beside the runner."""
    if "htmap" in sys.modules:
        return
    import importlib.util

    path = os.path.join(directory, HELPERS_FILE)
    if not os.path.exists(path) or importlib.util.find_spec("htmap") is not None:
        return
    spec = importlib.util.spec_from_file_location("htmap", path)
    module = importlib.util.module_from_spec(spec)
    sys.dont_write_bytecode, before = True, sys.dont_write_bytecode  # no __pycache__ in the scratch dir
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = before
    sys.modules["htmap"] = module


def load_and_run(func_file, inputs, component, scratch, func=None, input_bytes=None):
    """Everything that can go wrong before or in user code ends in a report, not a crash."""
    if cloudpickle is None:
        message = "cloudpickle is not installed for %s (%s); install it with: %s -m pip install cloudpickle" % (
            sys.executable, CLOUDPICKLE_ERROR, sys.executable)
        sys.stderr.write("htmap: %s\n" % message)
        return ERR + pickle.dumps(error_report(component, "failure", message, scratch=scratch), protocol=4)
    load_sources(func_file)
    try:
        if func is None:
            with open(func_file, "rb") as f:
                func = cloudpickle.load(f)
        if input_bytes is None:
            input_bytes = read_input_bytes(inputs, component)
        args, kwargs = cloudpickle.loads(input_bytes)
    except Exception as e:
        message = "could not load the function or input of component %d: %s: %s%s" % (
            component, type(e).__name__, e, python_mismatch_hint())
        sys.stderr.write("htmap: %s\n" % message)
        return ERR + pickle.dumps(error_report(component, "failure", message, exc=e, scratch=scratch), protocol=4)
    return run(func, args, kwargs, component, scratch)


def publish(path, data):
    """Write ``path`` by temp + rename (readers never see a torn file); on failure (a full disk)
    no temp file stays. os.write, not a file object: this runs once per component."""
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, ".%s.tmp-%d" % (name, os.getpid()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def make_private_dirs(path):
    """Create ``path`` and its missing parents as 0700, set explicitly: a umask of 000 must not
    open a map's directories (they hold pickles) to other users."""
    missing = []
    while path and not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)


def make_private(path):
    """Directories 0700 and files 0600 in a tree brought into the map (symlinks are left alone)."""
    if os.path.islink(path):
        return
    if not os.path.isdir(path):
        os.chmod(path, 0o600)
        return
    os.chmod(path, 0o700)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                os.chmod(full, 0o700 if name in dirs else 0o600)


def write_output(output_dir, component, data):
    return publish(os.path.join(output_dir, "%d.out" % component), data)


def write_output_or_failure(output_dir, component, data, scratch=None):
    """Write the output; if that fails (a full disk, a quota), write a short report saying so.
    Returns the bytes written. Raises only when even the report cannot be written: the engine
    then records the failure, with this process's stderr."""
    try:
        write_output(output_dir, component, data)
        return data
    except OSError as e:
        message = ("could not write the output of component %d (%d bytes) into %s: %s; free space there "
                   "(or raise the quota), then rerun the component" % (component, len(data), output_dir, e))
        sys.stderr.write("htmap: %s\n" % message)
        data = ERR + pickle.dumps(error_report(component, "failure", message, scratch=scratch), protocol=4)
        write_output(output_dir, component, data)
        return data


def main(argv):
    if len(argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    func_file, inputs, component, output_dir = argv[0], argv[1], int(argv[2]), argv[3]
    provide_htmap_helpers(os.path.dirname(os.path.abspath(__file__)))
    data = load_and_run(func_file, inputs, component, os.getcwd())
    write_output_or_failure(output_dir, component, data, scratch=os.getcwd())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
