"""The body of the batch script every Slurm array task runs (stdlib only).

The engine writes ``engine/slurm/job.py`` per map: a ``#!python`` line (the Python that
submitted), the map's ``#SBATCH`` lines, ``CONFIG = {...}`` and then this file's source.
Running the task in Python directly (no shell in between) keeps per-task overhead at
one interpreter start. Usage (by sbatch)::

    job.py OFFSET SUBMISSION   # component = OFFSET + SLURM_ARRAY_TASK_ID

Per-component paths below are in the component's shard (``logs/0/012/12345.stdout``,
``runner.component_dir``, see htmap/layout.py) unless the map predates sharding.
What it does for one component: stdout/stderr to ``logs/<i>.stdout|stderr``; a
scratch directory (kept across requeue, so ``_htmap_checkpoint/`` survives); input
files staged into it (a missing one -> a hold file and exit 0, the engine then holds
the component naming the path); ``htmap.checkpoint()`` files kept in
``engine/checkpoints/<i>`` (shared, so a requeue on any node restores them); ``runner.main`` writes the output into a staging
directory; ``_htmap_transfer/`` is copied to ``output_files/<i>/`` (or remapped);
and only then is the output published into ``outputs/`` by rename, so a reader that
sees the output also sees the output files. Exit status 0 unless the runner itself
failed (then the engine reports the Slurm state and the stderr tail).
"""
import importlib.util
import json
import os
import resource
import shutil
import sys
import time

CONFIG = globals().get("CONFIG", {})  # replaced by the engine when it writes job.py

TRANSFER_DIR = "_htmap_transfer"
CHECKPOINT_DIR = "_htmap_checkpoint"


def _redirect(path, fd):
    new = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(new, fd)
    os.close(new)


def _local_path(spec):
    """A staged path: plain paths and file:// URLs; other protocols are refused."""
    if spec.startswith("file://"):
        return spec[len("file://"):]
    if "://" in spec:
        raise ValueError("the slurm engine stages only local paths on the shared filesystem, not %s" % spec)
    return spec


def _write_private(path, text):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def stage(specs, work):
    """Copy input files/directories into ``work``; a trailing / stages a directory's contents.

    Returns None, or a message naming the first path that is missing.
    """
    for spec in specs:
        try:
            path = _local_path(spec)
        except ValueError as e:
            return str(e)
        contents = path.endswith("/")
        src = path.rstrip("/") or "/"
        if not os.path.exists(src):
            return "input file %s does not exist (create it, then release the component)" % src
        if contents and os.path.isdir(src):
            for name in os.listdir(src):
                _copy(os.path.join(src, name), os.path.join(work, name))
        else:
            _copy(src, os.path.join(work, os.path.basename(src)))
    return None


def _copy(src, dst):
    if os.path.isdir(src):
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dst)


def transfer_outputs(work, output_files_dir, remaps):
    """Bring back what the component listed in htmap.transfer_output_files()."""
    root = os.path.join(work, TRANSFER_DIR)
    if not os.path.isdir(root):
        return
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            src = os.path.join(dirpath, name)
            rel = os.path.relpath(src, root)
            dest = remaps.get(rel) or remaps.get(name)
            if dest:
                dest = _local_path(dest)
                if dest.endswith("/") or os.path.isdir(dest):
                    dest = os.path.join(dest, name)
            else:
                dest = os.path.join(output_files_dir, rel)
            os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
            tmp = "%s.tmp-%d" % (dest, os.getpid())
            shutil.copy2(src, tmp)
            os.replace(tmp, dest)


def load_runner(path):
    spec = importlib.util.spec_from_file_location("_htmap_runner", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv):
    os.umask(0o077)  # maps hold pickles: everything a task creates is private (DESIGN.md)
    offset, submission = int(argv[0]), argv[1]
    component = offset + int(os.environ["SLURM_ARRAY_TASK_ID"])
    mapdir = CONFIG["map_dir"]
    engine_dir = os.path.join(mapdir, "engine", "slurm")
    for entry in reversed(CONFIG.get("sys_path", [])):
        if entry not in sys.path:
            sys.path.insert(1, entry)
    runner = load_runner(CONFIG["runner"])
    sharded = CONFIG.get("sharded", False)  # maps made before sharding keep flat directories

    def under(*sub):  # component's directory under a per-component directory (htmap/layout.py)
        path = runner.component_dir(os.path.join(mapdir, *sub), component, sharded)
        if not os.path.isdir(path):
            os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    logs = under("logs")
    _redirect(os.path.join(logs, "%d.stdout" % component), 1)
    _redirect(os.path.join(logs, "%d.stderr" % component), 2)

    scratch_root = CONFIG.get("scratch_dir")
    if scratch_root:
        scratch = os.path.join(os.path.expandvars(os.path.expanduser(scratch_root)),
                               "htmap-%s-%d" % (CONFIG["job_id"], component))
    else:
        scratch = os.path.join(under("engine", "slurm", "scratch"), str(component))
    os.makedirs(scratch, mode=0o700, exist_ok=True)
    os.chdir(scratch)
    # htmap.checkpoint() saves on the shared filesystem (survives a requeue to another node);
    # htmap.transfer_output_files() collects under the scratch directory, whatever the cwd then
    checkpoints = os.path.join(under("engine", "checkpoints"), str(component))
    os.environ["HTMAP_CHECKPOINT_DIR"] = checkpoints
    os.environ["HTMAP_TRANSFER_DIR"] = os.path.join(scratch, TRANSFER_DIR)

    specs = list(CONFIG.get("fixed_input_files") or [])
    remaps = {}
    if CONFIG.get("per_component_files"):
        with open(os.path.join(engine_dir, "files.json")) as f:
            files = json.load(f)
        if files.get("input_files"):
            specs += files["input_files"][component]
        if files.get("output_remaps"):
            remaps = files["output_remaps"][component] or {}
    problem = stage(specs, scratch)
    if problem:
        _write_private(os.path.join(under("engine", "slurm", "holds"), "%d-%s" % (component, submission)), problem)
        sys.stderr.write("htmap: %s\n" % problem)
        return 0

    staging = under("engine", "slurm", "staging")
    started = time.time()
    rc = runner.main([os.path.join(mapdir, "func"), os.path.join(mapdir, "inputs"), str(component), staging])
    runtime = time.time() - started
    sys.stdout.flush()
    sys.stderr.flush()
    staged = os.path.join(staging, "%d.out" % component)
    if not os.path.exists(staged):
        return rc or 1
    try:  # peak resident memory of the component (it ran in this process) and its children
        peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        _write_private(os.path.join(under("engine", "slurm", "stats"), str(component)),
                       json.dumps({"runtime": round(runtime, 6), "memory_mb": int(peak_kb // 1024), "start": started}))
    except OSError:
        pass
    os.chdir(engine_dir)
    try:
        transfer_outputs(scratch, os.path.join(under("output_files"), str(component)), remaps)
    except Exception as e:  # the value is still returned; the missing file is reported
        sys.stderr.write("htmap: could not bring back output files: %s: %s\n" % (type(e).__name__, e))
    os.replace(staged, os.path.join(under("outputs"), "%d.out" % component))
    shutil.rmtree(scratch, ignore_errors=True)
    for leftover in (checkpoints, checkpoints + ".old", checkpoints + ".new"):
        shutil.rmtree(leftover, ignore_errors=True)  # a finished component's checkpoint is not an output
    return 0


if __name__ == "__main__":
    sys.path.pop(0)  # the script's directory: never shadow the user's modules
    sys.exit(main(sys.argv[1:]))
