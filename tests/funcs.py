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


def wait_for_file(path, value=None, timeout=60):
    """Block until ``path`` exists (the test creates it), then return ``value``."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.02)
    return value


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
