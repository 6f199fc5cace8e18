"""Module-level functions the tests map (importable by workers through sys.path)."""
import os
import sys
import time


def double(x):
    return 2 * x


def add(x, y=0, z=0):
    return x + y + z


def identity(*args, **kwargs):
    return args, kwargs


def fail_on(x, bad=3):
    if x == bad:
        local_note = "x" * 500
        raise ValueError(f"component input {x} is bad")
    return x


def chatty(x):
    print(f"out {x}")
    print(f"err {x}", file=sys.stderr)
    return x


def env_info(_):
    return os.environ.get("HTMAP_ON_EXECUTE"), os.environ.get("HTMAP_COMPONENT")


def wait_for_file(path, value=None, timeout=120):
    """Block until ``path`` exists (the test creates it), then return ``value``."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.02)
    return value


def run_count_then_wait(marker_dir, release_path, x):
    """Record each run of component ``x`` (outside HTMAP_DIR), wait for the release file, return 10x."""
    runs = len([n for n in os.listdir(marker_dir) if n.startswith(f"run-{x}-")])
    with open(os.path.join(marker_dir, f"run-{x}-{runs}"), "w"):
        pass
    wait_for_file(release_path)
    return 10 * x


def touch_then_wait(marker_dir, release_path, x):
    """Record that component ``x`` started, then wait for the release file."""
    with open(os.path.join(marker_dir, f"started-{x}-{os.getpid()}"), "w"):
        pass
    wait_for_file(release_path)
    return x * 10


def exit_hard(code):
    os._exit(code)


def segfault(_):
    import ctypes
    ctypes.string_at(0)


def kill_self(_):
    import signal
    os.kill(os.getpid(), signal.SIGKILL)


def unpicklable(_):
    import threading
    return threading.Lock()


def sleep_then(x, seconds=0.05):
    time.sleep(seconds)
    return x


def exit_after_print(text):
    print(text, file=sys.stderr, flush=True)
    os._exit(7)


def read_text(path):
    """Read a staged input file (relative to the component's working directory)."""
    from pathlib import Path
    return Path(path).read_text()


def read_nested(data):
    from pathlib import Path
    return {k: Path(v[0]).read_text() for k, v in data.items()}


def list_cwd(_=None):
    out = []
    for root, _dirs, files in os.walk("."):
        for name in files:
            out.append(os.path.relpath(os.path.join(root, name), "."))
    return sorted(out)


def make_outputs(x):
    import htmap
    from pathlib import Path
    Path("sub").mkdir(exist_ok=True)
    Path("sub/deep.txt").write_text(f"deep {x}")
    Path("top.txt").write_text(f"top {x}")
    htmap.transfer_output_files("sub/deep.txt", "top.txt")
    return x


def hold_memory(mb, seconds=60.0):
    """Hold ``mb`` MB of real (touched) memory for a while."""
    block = b"x" * (mb * 1024 * 1024)
    time.sleep(seconds)
    return len(block) // (1024 * 1024)


def spawn_child_and_wait(marker_dir, release_path):
    """Start a grandchild process (sleep), record both pids, then wait."""
    import subprocess
    child = subprocess.Popen(["sleep", "300"])
    with open(os.path.join(marker_dir, f"pids-{os.getpid()}-{child.pid}"), "w"):
        pass
    wait_for_file(release_path)
    return 0


def join_cgroup_then_hold(cgroup_procs, mb):
    """Move this process into a memory cgroup (its limit below ``mb``), then hold ``mb`` MB."""
    with open(cgroup_procs, "w") as f:
        f.write(str(os.getpid()))
    block = b"x" * (mb * 1024 * 1024)
    return len(block)


def megabytes(n):
    """A return value of ``n`` MB."""
    return b"x" * (n * 1024 * 1024)


def start_daemon():
    """A `sleep` that left this process's session and was orphaned (setsid, then its shell exits)."""
    import subprocess
    out = subprocess.run(["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"], start_new_session=True,
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def spawn_daemon_and_wait(marker_dir, release_path):
    """Start a daemon (another session, orphaned), record both pids, then wait."""
    daemon = start_daemon()
    with open(os.path.join(marker_dir, f"pids-{os.getpid()}-{daemon}"), "w"):
        pass
    wait_for_file(release_path)
    return 0


def leave_daemon(marker_dir):
    """Start a daemon, record its pid, and return while it still runs."""
    daemon = start_daemon()
    with open(os.path.join(marker_dir, f"daemon-{daemon}"), "w"):
        pass
    return daemon


def counting_checkpoint(marker_dir, release_path, steps=5):
    """Count steps, checkpointing each; at step 2 say so (``checkpointed-2``) and block until released
    (the test vacates it there)."""
    import htmap
    from pathlib import Path
    state = Path("progress.txt")
    done = int(state.read_text()) if state.exists() else 0
    Path(marker_dir, f"resumed-at-{done}-{os.getpid()}").touch()
    while done < steps:
        done += 1
        state.write_text(str(done))
        htmap.checkpoint(state)
        if done == 2:
            Path(marker_dir, "checkpointed-2").touch()
            wait_for_file(release_path)
    return done


def fail_first_time(counter_path):
    from pathlib import Path
    p = Path(counter_path)
    n = int(p.read_text()) if p.exists() else 0
    p.write_text(str(n + 1))
    if n == 0:
        raise OSError("flaky storage")
    return n + 1


def killed_first_time(counter_path):
    """SIGKILL itself on the first attempt (like the OOM killer), succeed on the next."""
    import signal
    from pathlib import Path
    p = Path(counter_path)
    n = int(p.read_text()) if p.exists() else 0
    p.write_text(str(n + 1))
    if n == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return n + 1


def record_pid(marker_dir, x, seconds=0.01):
    """Note which process ran component x, then take a little time."""
    with open(os.path.join(marker_dir, f"ran-{x}-{os.getpid()}"), "w"):
        pass
    time.sleep(seconds)
    return x


def print_wait_print(path):
    """Print a line, wait for ``path`` to exist, print another."""
    print("first line", flush=True)
    print("first err", file=sys.stderr, flush=True)
    wait_for_file(path)
    print("second line", flush=True)
    return 1
