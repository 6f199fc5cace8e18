"""Local-engine figures from issue 2, measured in one run of this script.

1. 10,000 trivial components, submit to last result, against
   ``ProcessPoolExecutor().map(double, range(10_000), chunksize=1)`` (target: ratio <= 2).
2. ``htmap.map`` over 100,000 components: time to return and the submitting process's peak RSS
   (targets: a few seconds, < 300 MB).
3. ``status()`` of a finished 100,000-component map in a new process (target: < 1 s).
4. ``htmap.map`` over a generator of 1,000,000 inputs: time to return and peak RSS (streamed).
5. ``m.hold()`` of that map, and its ``status()`` from a new process.

Usage: python3 benchmarks/local_bench.py [--small] [--rounds N] [--quiet-disk-wait SECONDS]
(HTMAP_DIR is a fresh temporary directory under the home directory). Figure 0 is the cost of
publishing one file on that disk: every component costs at least one, ProcessPoolExecutor none.
"""
import argparse
import concurrent.futures
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_funcs import double  # noqa: E402  (importable by workers and pool processes)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def file_publish_us(directory: str, n: int = 2000) -> float:
    """Microseconds to publish one small file by write-to-temp-then-rename here: every component
    costs at least one of these, so it bounds the local engine on this filesystem.

    The files stay until ``directory`` is removed at the end: deleting thousands of files makes
    some disks (ext4 mounted with ``discard``) slow for a while, which would skew the next figure."""
    d = tempfile.mkdtemp(dir=directory)
    start = time.perf_counter()
    for i in range(n):
        tmp = os.path.join(d, f".{i}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, b"HTMAP1 OK\n" + b"x" * 20)
        os.close(fd)
        os.replace(tmp, os.path.join(d, f"{i}.out"))
    return (time.perf_counter() - start) / n * 1e6


QUIET_PUBLISH_US = 100


def wait_for_quiet_disk(directory: str, patience: float, quiet_for: float = 30) -> float:
    """Wait (up to ``patience`` seconds) until publishing a file has cost what it does on a quiet
    disk for ``quiet_for`` seconds in a row.

    On this project's CI VMs (ext4 mounted with ``discard``) creating files costs 10 to 50 times
    more for a minute or more after many files were deleted anywhere on the disk, e.g. by the
    previous run's cleanup. Figure 1 is about htmap, so it waits that out, and says so."""
    deadline = time.monotonic() + patience
    quiet_since = None
    while time.monotonic() < deadline:
        publish = file_publish_us(directory, n=300)
        now = time.monotonic()
        if publish > QUIET_PUBLISH_US:
            quiet_since = None
            print(f"    waiting for a quiet disk: publishing a file takes {publish:.0f} us", flush=True)
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= quiet_for:
            break
        time.sleep(5)
    return file_publish_us(directory)


def bench_pool(n: int) -> float:
    start = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor() as pool:
        results = list(pool.map(double, range(n), chunksize=1))
    elapsed = time.perf_counter() - start
    assert results[-1] == 2 * (n - 1)
    return elapsed


def bench_htmap(n: int, tag: str) -> float:
    import htmap

    start = time.perf_counter()
    m = htmap.map(double, range(n), tag=tag)
    results = list(m.iter(timeout=600))
    elapsed = time.perf_counter() - start
    assert results[-1] == 2 * (n - 1)
    return elapsed


def bench_submit(n: int):
    import htmap

    rss_before = peak_rss_mb()
    start = time.perf_counter()
    m = htmap.map(double, range(n), tag="bench-submit")
    elapsed = time.perf_counter() - start
    return m, elapsed, rss_before, peak_rss_mb()


STATUS_SNIPPET = """
import time, htmap
start = time.perf_counter()
m = htmap.load("bench-submit")
text = m.status()
counts = m.status_counts()
elapsed = time.perf_counter() - start
start = time.perf_counter()
table = htmap.status()
print(elapsed, counts[htmap.ComponentStatus.COMPLETED], time.perf_counter() - start)
"""


MILLION_STATUS_SNIPPET = """
import time, htmap
start = time.perf_counter()
m = htmap.load("bench-million")
text = m.status()
counts = m.status_counts()
print(time.perf_counter() - start, counts[htmap.ComponentStatus.HELD])
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true", help="10x smaller sizes, for a quick look")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of figure 1 (default 3)")
    parser.add_argument("--quiet-disk-wait", type=float, default=300, metavar="SECONDS",
                        help="wait up to this long for file creation to be quick before figure 1 (default 300)")
    args = parser.parse_args()
    scale = 10 if args.small else 1
    n_fast, n_big = 10_000 // scale, 100_000 // scale

    # under the home directory, where HTMAP_DIR normally lives (~/.htmap)
    htmap_dir = tempfile.mkdtemp(prefix=".htmap-bench-", dir=os.path.expanduser("~"))
    os.environ["HTMAP_DIR"] = htmap_dir
    import htmap

    htmap.settings["HTMAP_DIR"] = htmap_dir
    htmap.settings["ENGINE"] = "local"
    print(f"cpus: {os.cpu_count()}, HTMAP_DIR: {htmap_dir}")
    publish = wait_for_quiet_disk(htmap_dir, args.quiet_disk_wait)
    print(f"[0] publishing one small file (temp + rename) in HTMAP_DIR: {publish:.0f} us "
          "(each component costs at least one)")
    if publish > QUIET_PUBLISH_US:
        print(f"    WARNING: file creation here is slow right now (a quiet local disk takes about 20 us): "
              "figure 1 measures the disk more than htmap")

    # 1. throughput against ProcessPoolExecutor, same run; each round: pool, htmap, pool again.
    #    The first round includes starting the supervisor and its workers.
    ratios = []
    for r in range(args.rounds):
        pool_a = bench_pool(n_fast)
        ours = bench_htmap(n_fast, tag=f"bench-{n_fast}-{r}")
        pool_b = bench_pool(n_fast)
        pool = min(pool_a, pool_b)
        ratios.append(ours / pool)
        print(f"[1] {n_fast} components, round {r + 1}: ProcessPoolExecutor {pool:.2f} s "
              f"(runs {pool_a:.2f}, {pool_b:.2f}), htmap local {ours:.2f} s, ratio {ours / pool:.2f}")
    print(f"[1] ratio htmap / ProcessPoolExecutor: median {statistics.median(ratios):.2f}, worst {max(ratios):.2f} "
          f"over {len(ratios)} rounds (target <= 2)")
    print(f"[0] publishing one small file in HTMAP_DIR, again: {file_publish_us(htmap_dir):.0f} us")

    # 2. submitting a large map
    m, submit_s, rss_before, rss_after = bench_submit(n_big)
    print(f"[2] htmap.map over {n_big} components returned in {submit_s:.2f} s; "
          f"peak RSS of the submitting process {rss_after:.0f} MB (was {rss_before:.0f} MB before; target < 300 MB)")
    wait_start = time.perf_counter()
    m.wait(timeout=3600)
    print(f"    ... all {n_big} ran in {time.perf_counter() - wait_start:.1f} s more")

    # 3. status of the finished map, from a new process
    out = subprocess.run([sys.executable, "-c", STATUS_SNIPPET], capture_output=True, text=True,
                         env={**os.environ, "HTMAP_ENGINE": "local"}, check=True).stdout.split()
    print(f"[3] status() of the finished {n_big}-component map in a new process: {float(out[0]):.3f} s "
          f"({out[1]} completed; target < 1 s); then htmap.status() table with local data: {float(out[2]):.3f} s")
    htmap.clean(all=True)

    # 4. streaming: a generator of 1,000,000 inputs (held at once, then removed: not run)
    if not args.small:
        import gc

        gc.collect()
        start = time.perf_counter()
        m = htmap.map(double, (i for i in range(1_000_000)), tag="bench-million")
        elapsed = time.perf_counter() - start
        print(f"[4] htmap.map over a generator of 1,000,000 inputs returned in {elapsed:.2f} s; "
              f"peak RSS of the submitting process {peak_rss_mb():.0f} MB")
        # 5. acting on all of it: hold, then the status of the held map from a new process
        start = time.perf_counter()
        m.hold()
        hold_s = time.perf_counter() - start
        out = subprocess.run([sys.executable, "-c", MILLION_STATUS_SNIPPET], capture_output=True, text=True,
                             env={**os.environ, "HTMAP_ENGINE": "local"}, check=True).stdout.split()
        events = m._dir / "engine" / "events"
        print(f"[5] m.hold() of the 1,000,000-component map: {hold_s:.2f} s (event log {events.stat().st_size} bytes); "
              f"its status() in a new process: {float(out[0]):.3f} s ({out[1]} held)")
        m.remove()
    import shutil

    print("removing the benchmark's files; on some disks this slows file creation for a minute or two")
    shutil.rmtree(htmap_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
