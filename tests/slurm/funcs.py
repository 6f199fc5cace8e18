"""Module-level functions the Slurm tests map (the batch tasks import them by reference)."""
import os
import sys
import time

from tests.funcs import chatty, double, fail_on, wait_for_file  # noqa: F401  (shared with the core tests)


def die(x):
    """The process dies without the runner writing an output."""
    sys.stderr.write(f"about to die with status 3 (input {x})\n")
    sys.stderr.flush()
    os._exit(3)


def mark_then_wait(marker_dir, release_path, x):
    """Record that component x started (with its pid), then wait for the release file."""
    with open(os.path.join(marker_dir, f"started-{x}-{os.getpid()}"), "w"):
        pass
    return wait_for_file(release_path, x)


def sleep_for(seconds):
    time.sleep(seconds)
    return seconds


def hog(mb):
    """Touch ``mb`` MB of memory."""
    block = bytearray(mb * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return mb


def read_file(name):
    with open(name) as f:
        return f.read()


def list_cwd(_):
    return sorted(os.listdir("."))


def make_output_files(x):
    """What htmap.transfer_output_files() leaves for the engine: files under _htmap_transfer/."""
    os.makedirs("_htmap_transfer/nested", exist_ok=True)
    with open("_htmap_transfer/result.txt", "w") as f:
        f.write(f"result {x}")
    with open("_htmap_transfer/nested/deep.txt", "w") as f:
        f.write(f"deep {x}")
    return x


def resume_from_scratch(marker_dir, x):
    """First run: leave progress in the working directory and wait; a rerun in the same
    directory (after requeue) finds it and returns at once."""
    if os.path.exists("progress"):
        with open("progress") as f:
            return f"resumed after {f.read()}"
    with open("progress", "w") as f:
        f.write("step 1")
    with open(os.path.join(marker_dir, f"started-{x}"), "w"):
        pass
    time.sleep(300)
    return "not vacated"


def flaky(counter_dir, x):
    """Raises OSError the first time it runs for x, then succeeds."""
    path = os.path.join(counter_dir, f"tries-{x}")
    tries = int(open(path).read()) if os.path.exists(path) else 0
    with open(path, "w") as f:
        f.write(str(tries + 1))
    if tries == 0:
        raise OSError(f"transient failure of {x}")
    return x


def resume_from_checkpoint(marker_dir, x):
    """First run: checkpoint progress (and delete the working copy), then wait to be vacated;
    the restarted run finds the file restored from the checkpoint."""
    import htmap

    if os.path.exists("progress"):
        with open("progress") as f:
            return f"resumed after {f.read()}"
    with open("progress", "w") as f:
        f.write("step 1")
    htmap.checkpoint("progress")
    os.remove("progress")
    with open(os.path.join(marker_dir, f"started-{x}"), "w"):
        pass
    time.sleep(300)
    return "not vacated"
