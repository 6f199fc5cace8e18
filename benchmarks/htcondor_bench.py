#!/usr/bin/env python3
"""HTCondor-engine figures from issue 10 ("Performance on the live pool"), measured in one run.

1. N (default 1,000) trivial components end to end, ``htmap.map(noop, range(N))`` then
   ``m.wait()``, against a bare ``htcondor2`` submission of the same N jobs (a shell job, one
   input and one output file per job, ``count=N`` with ``$(ProcId)``; submit -> every
   JOB_TERMINATED in its event log). Rounds alternate bare, htmap, bare, htmap... so drift in the
   pool's load hits both (target: htmap <= 1.5x bare).
2. ``htmap.map`` of 10,000 components: time to return (target <= 1 s); removed right after.
3. ``htmap.map`` of 100,000 components (late materialization), in a fresh process: time to
   return (target < 5 s) and that process's peak RSS (target < 200 MB); removed right after.
4. ``status()`` of a FINISHED 10,000-component map from a fresh process (target < 0.2 s).
   Running 10,000 jobs on a 2-slot pool takes about 10 minutes: not in the default figures.

Usage (HTCondor never runs root's jobs, so run it as the pool's user)::

    HTMAP_LIVE_DIR=/var/tmp/htmap-live-bench bash scripts/htcondor-pool.sh bench \
        [--figures 1,2,3,4] [--components 1000] [--rounds 2]

HTMAP_DIR is a fresh directory under $TMPDIR. Everything the run submits is removed at the end
(its own clusters only, by id), also when it fails or is interrupted.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BARE_BATCH_NAME = "htmap-bench-bare"
OUR_CLUSTERS: set = set()  # every cluster this run submitted (bare ones; maps' are read from their dirs)


def noop(x):
    """The mapped function; defined in __main__, so it travels to the node by value."""
    return x


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- bare htcondor2 ------------------------------------------------------------------------------
BARE_SCRIPT = '#!/bin/sh\ncat "$1.in" > "$1.out"\n'


def bare(n: int, workdir: Path, timeout: float = 3600) -> float:
    """Submit n shell jobs (one input, one output file each) with htcondor2; seconds until all ended."""
    import htcondor2

    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "out").mkdir(parents=True)
    start = time.perf_counter()
    (workdir / "in").mkdir()
    for i in range(n):  # (htmap writes its inputs inside its own timing too)
        (workdir / "in" / f"{i}.in").write_bytes(b"x" * 30)
    exe = workdir / "bare.sh"
    exe.write_text(BARE_SCRIPT)
    exe.chmod(0o755)
    log = workdir / "events"
    desc = htcondor2.Submit({
        "universe": "vanilla",
        "executable": str(exe),
        "arguments": "$(ProcId)",
        "transfer_executable": "true",
        "should_transfer_files": "YES",
        "when_to_transfer_output": "ON_EXIT",
        "transfer_input_files": f"{workdir / 'in'}/$(ProcId).in",
        "transfer_output_files": "$(ProcId).out",
        "transfer_output_remaps": f'"$(ProcId).out={workdir / "out"}/$(ProcId).out"',
        "initialdir": str(workdir),
        "log": str(log),
        "JobBatchName": BARE_BATCH_NAME,
    })
    cluster = htcondor2.Schedd().submit(desc, count=n).cluster()
    OUR_CLUSTERS.add(int(cluster))
    jel = htcondor2.JobEventLog(str(log))
    ended = 0
    deadline = time.monotonic() + timeout
    while ended < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"bare cluster {cluster}: only {ended} of {n} jobs ended within {timeout:g} s")
        for event in jel.events(stop_after=0):
            if event.type == htcondor2.JobEventType.JOB_TERMINATED:
                ended += 1
            elif event.type in (htcondor2.JobEventType.JOB_HELD, htcondor2.JobEventType.JOB_ABORTED):
                raise SystemExit(f"bare cluster {cluster}: job {event.proc} {event.type.name}: {dict(event)}")
        if ended < n:
            time.sleep(0.2)  # the poll interval ceiling htmap's wait uses too (0.25 s)
    elapsed = time.perf_counter() - start
    missing = [i for i in range(n) if not (workdir / "out" / f"{i}.out").exists()]
    if missing:
        raise SystemExit(f"bare cluster {cluster}: {len(missing)} outputs missing, e.g. {missing[:5]}")
    jel.close()
    return elapsed


# -- htmap ---------------------------------------------------------------------------------------
def through_htmap(n: int, tag: str, timeout: float = 3600) -> float:
    import htmap

    start = time.perf_counter()
    m = htmap.map(noop, range(n), tag=tag, quiet=True)
    m.wait(timeout=timeout)
    elapsed = time.perf_counter() - start
    done = m.status_counts()[htmap.ComponentStatus.COMPLETED]
    if done != n:
        raise SystemExit(f"map {tag}: {done} of {n} components completed")
    if m.get(n - 1) != n - 1:
        raise SystemExit(f"map {tag}: wrong result for component {n - 1}")
    m.remove()
    return elapsed


BIG_MAP_SNIPPET = """
import json, resource, sys, time
import htmap

def noop(x):
    return x

n, tag = int(sys.argv[1]), sys.argv[2]
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
m = htmap.map(noop, range(n), tag=tag, quiet=True)
submit = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
m.remove()
print(json.dumps({"submit": submit, "rss": rss, "rss_before": rss_before,
                  "remove": time.perf_counter() - start}))
"""

STATUS_SNIPPET = """
import json, sys, time
t0 = time.perf_counter()
import htmap
imported = time.perf_counter() - t0
start = time.perf_counter()
m = htmap.load(sys.argv[1])
text = m.status()
elapsed = time.perf_counter() - start
start = time.perf_counter()
counts = htmap.load(sys.argv[1]).status_counts()
again = time.perf_counter() - start
print(json.dumps({"status": elapsed, "again": again, "import": imported,
                  "completed": counts[htmap.ComponentStatus.COMPLETED]}))
"""


def fresh_process(snippet: str, *args: str) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", snippet, *args], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"fresh process failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall"] = wall
    return out


# -- clean-up ------------------------------------------------------------------------------------
def clean_up(htmap_dir: Path) -> None:
    """Remove every cluster this run submitted: the bare ones, and each map's (from its clusters.json)."""
    clusters = set(OUR_CLUSTERS)
    for path in htmap_dir.rglob("clusters.json"):
        try:
            clusters.update(int(r["cluster"]) for r in json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if not clusters:
        return
    try:
        import htcondor2

        constraint = " || ".join(f"ClusterId == {c}" for c in sorted(clusters))
        htcondor2.Schedd().act(htcondor2.JobAction.Remove, constraint, reason=("htcondor_bench clean-up", 0))
        print(f"removed this run's clusters: {', '.join(map(str, sorted(clusters)))}")
    except Exception as e:  # (nothing left to remove is fine)
        print(f"clean-up: {type(e).__name__}: {e}")


# -- main ----------------------------------------------------------------------------------------
def pool_summary() -> str:
    import htcondor2

    slots = htcondor2.Collector().query(htcondor2.AdType.Startd, projection=["Name", "State"])
    queued = htcondor2.Schedd().query(projection=["JobStatus"])
    by_status = {}
    for ad in queued:
        by_status[ad.get("JobStatus")] = by_status.get(ad.get("JobStatus"), 0) + 1
    names = {1: "idle", 2: "running", 3: "removed", 4: "completed", 5: "held"}
    others = ", ".join(f"{v} {names.get(k, k)}" for k, v in sorted(by_status.items())) or "none"
    return f"{len(slots)} slots; jobs already in the schedd's queue (others' too): {others}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--figures", default="1,2,3", help="comma-separated figures to run (default 1,2,3; "
                        "4 runs 10,000 jobs, about 10 minutes on 2 slots)")
    parser.add_argument("--components", type=int, default=1000, help="components of figure 1 (default 1000)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of figure 1, each bare then htmap (default 2)")
    args = parser.parse_args()
    figures = {int(f) for f in args.figures.split(",") if f.strip()}

    tmp = Path(tempfile.mkdtemp(prefix="htmap-condor-bench-"))
    htmap_dir = tmp / "htmap"
    os.environ["HTMAP_DIR"] = str(htmap_dir)
    os.environ["HTMAP_ENGINE"] = "htcondor"
    import htmap

    htmap.settings["HTMAP_DIR"] = str(htmap_dir)
    htmap.settings["ENGINE"] = "htcondor"
    # SIGTERM too runs the clean-up below
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(f"pool: {pool_summary()}; cpus: {os.cpu_count()}; HTMAP_DIR: {htmap_dir}; "
          f"delivery: {htmap.settings.get('DELIVERY_METHOD', 'assume')}; python: {sys.executable}", flush=True)
    try:
        if 1 in figures:
            n = args.components
            bares, ours = [], []
            for r in range(args.rounds):
                t_bare = bare(n, tmp / f"bare-{r}")
                bares.append(t_bare)
                print(f"[1] round {r + 1}: bare htcondor2 {n} jobs: {t_bare:.1f} s", flush=True)
                t_ours = through_htmap(n, tag=f"bench-1-{r}")
                ours.append(t_ours)
                print(f"[1] round {r + 1}: htmap {n} components: {t_ours:.1f} s (ratio {t_ours / t_bare:.2f})",
                      flush=True)
            ours_m, bare_m = statistics.mean(ours), statistics.mean(bares)
            print(f"[1] htmap {n} components: {ours_m:.1f} s; bare htcondor2: {bare_m:.1f} s; "
                  f"ratio {ours_m / bare_m:.2f} (target <= 1.5) [means of {args.rounds} alternating rounds; "
                  f"per-round ratios {', '.join(f'{o / b:.2f}' for o, b in zip(ours, bares))}]", flush=True)

        if 2 in figures:
            n = 10_000
            start = time.perf_counter()
            m = htmap.map(noop, range(n), tag="bench-2", quiet=True)
            submit = time.perf_counter() - start
            start = time.perf_counter()
            m.remove()
            print(f"[2] htmap.map of {n} components returned in {submit:.2f} s (target <= 1 s); "
                  f"m.remove() {time.perf_counter() - start:.2f} s", flush=True)

        if 3 in figures:
            n = 100_000
            out = fresh_process(BIG_MAP_SNIPPET, str(n), "bench-3")
            print(f"[3] htmap.map of {n} components (late materialization) returned in {out['submit']:.2f} s "
                  f"(target < 5 s); peak RSS of that fresh process {out['rss']:.0f} MB (target < 200 MB; "
                  f"{out['rss_before']:.0f} MB after importing htmap); m.remove() {out['remove']:.2f} s", flush=True)

        if 4 in figures:
            n = 10_000
            start = time.perf_counter()
            m = htmap.map(noop, range(n), tag="bench-4", quiet=True)
            submit = time.perf_counter() - start
            m.wait(timeout=3 * 3600)
            ran = time.perf_counter() - start
            print(f"[4] ran a {n}-component map: submit {submit:.2f} s, all finished after {ran:.0f} s", flush=True)
            first = fresh_process(STATUS_SNIPPET, "bench-4")
            second = fresh_process(STATUS_SNIPPET, "bench-4")
            print(f"[4] status() of the finished {n}-component map from a fresh process: {first['status']:.3f} s "
                  f"(target < 0.2 s; {first['completed']} completed; a second fresh process: {second['status']:.3f} s; "
                  f"load+status_counts right after: {first['again']:.3f} s; import htmap {first['import']:.2f} s, "
                  f"process wall {first['wall']:.2f} s)", flush=True)
            m.remove()
    finally:
        clean_up(htmap_dir)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
