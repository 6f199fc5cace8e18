#!/usr/bin/env python3
"""1,000 trivial components through htmap's slurm engine vs a bare sbatch array, in one run.

    python3 benchmarks/slurm_bench.py [N]

Needs a working Slurm (``scripts/slurm-cluster.sh start``). Measures, one after the other
on the same cluster:

* bare:  ``sbatch --array=0-(N-1) --wrap "python3 -c pass"``, submit -> every task finished
         (squeue -t all polled every 0.2 s);
* htmap: ``htmap.map(noop, range(N))``, submit -> the last result in hand (``list(m)``).

and prints both, and their ratio (the target is htmap within 1.5x of bare). The bare array
runs before and after htmap, and the ratio uses their mean, because a shared machine's
load drifts. Note that ``python3`` on PATH may be a slower wrapper than the interpreter
htmap runs (pyenv shims are bash scripts); the header line shows both.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import htmap  # noqa: E402


def noop(x):
    return x


def wait_array(job_id: str, n: int, poll: float = 0.2) -> None:
    while True:
        out = subprocess.run(["squeue", "-h", "-t", "all", "-r", "-j", job_id, "-o", "%T"],
                             capture_output=True, text=True).stdout.split()
        done = sum(1 for s in out if s in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY"))
        if done >= n:
            bad = [s for s in out if s != "COMPLETED"]
            if bad:
                raise SystemExit(f"bare array {job_id}: {len(bad)} tasks did not complete: {set(bad)}")
            return
        time.sleep(poll)


def bare(n: int, python: str, workdir: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(["sbatch", "--parsable", f"--array=0-{n - 1}", f"--output={workdir}/bare-%A_%a.out",
                           "--wrap", f"{python} -c pass"], capture_output=True, text=True, check=True)
    wait_array(proc.stdout.strip().split(";")[0], n)
    return time.perf_counter() - t0


def through_htmap(n: int, htmap_dir: Path) -> float:
    htmap.settings["HTMAP_DIR"] = str(htmap_dir)
    htmap.settings["ENGINE"] = "slurm"
    t0 = time.perf_counter()
    m = htmap.map(noop, range(n), tag="bench")
    results = list(m.iter(timeout=3600))
    elapsed = time.perf_counter() - t0
    assert results == list(range(n)), "wrong results"
    m.remove()
    return elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory(prefix="htmap-bench-") as tmp:
        tmp = Path(tmp)
        sinfo = subprocess.run(["sinfo", "-h", "-o", "%P %c CPUs %T"], capture_output=True, text=True).stdout.strip()
        python3 = subprocess.run(["sh", "-c", "command -v python3"], capture_output=True, text=True).stdout.strip()
        print(f"cluster: {sinfo}; {n} components; python3 on PATH: {python3}; htmap runs {sys.executable}")
        # bare, htmap, bare: the machine may be shared, so bracket htmap between two bare runs
        t_bare1 = bare(n, "python3", tmp)
        print(f"bare  sbatch --array=0-{n - 1} --wrap 'python3 -c pass' : {t_bare1:7.2f} s ({n / t_bare1:5.1f} tasks/s)")
        t_htmap = through_htmap(n, tmp / "htmap")
        print(f"htmap htmap.map(noop, range({n})) -> last result  : {t_htmap:7.2f} s ({n / t_htmap:5.1f} tasks/s)")
        t_bare2 = bare(n, "python3", tmp)
        print(f"bare  (again)                                       : {t_bare2:7.2f} s ({n / t_bare2:5.1f} tasks/s)")
        mean = (t_bare1 + t_bare2) / 2
        print(f"ratio htmap / bare (mean of both): {t_htmap / mean:.2f}   (target <= 1.5)")


if __name__ == "__main__":
    os.environ.setdefault("HTMAP_DIR", tempfile.mkdtemp(prefix="htmap-bench-home-"))
    main()
