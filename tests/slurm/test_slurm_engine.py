"""The slurm engine end to end on the project's real single-node Slurm."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

import htmap
from htmap import ComponentStatus, MapOptions, exceptions
from htmap.engines.slurm import commands
from htmap.engines.slurm.engine import SlurmEngine
from tests.helpers import wait_until

from . import funcs
from .conftest import cluster_config

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]


def array_ids(m):
    """The Slurm array job ids of a map (from the engine's submission records)."""
    subs = sorted((m._dir / "engine" / "slurm" / "subs").glob("*.json"))
    return [a["id"] for s in subs for a in json.loads(s.read_text())["arrays"]]


def queue_states(ids):
    proc = subprocess.run(["squeue", "-h", "-t", "all", "-r", "-j", ",".join(ids), "-o", "%i %T %r"],
                          capture_output=True, text=True)
    return [line.split(None, 2) for line in proc.stdout.splitlines()]


def live_tasks(ids):
    return [r for r in queue_states(ids) if r[1] in ("PENDING", "RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING")]


def statuses(m):
    return m.component_statuses


@pytest.mark.usefixtures("timelimit_map")  # submitted first, checked last (see conftest)
def test_engine_is_available():
    ok, why = SlurmEngine.available()
    assert ok, why
    assert "sinfo" in why


def test_map_results_stdout_stderr_and_runtime():
    m = htmap.map(funcs.chatty, range(6), tag="basic")
    assert list(m.iter(timeout=60)) == list(range(6))
    assert m.is_done
    assert m.stdout[4] == "out 4\n"
    assert m.stderr[4] == "err 4\n"
    assert all(s is ComponentStatus.COMPLETED for s in statuses(m))
    assert all(mb > 0 for mb in m.memory_usage)  # peak RSS, measured in the task
    assert all(0 < r.total_seconds() < 30 for r in m.runtime)
    # one sbatch --array for the whole map, named after it
    ids = array_ids(m)
    assert len(ids) == 1
    names = subprocess.run(["squeue", "-h", "-t", "all", "-j", ids[0], "-o", "%j"], capture_output=True,
                           text=True).stdout.split()
    assert set(names) == {"htmap-basic"}


def test_starmap_and_a_python_exception_is_errored_with_report():
    m = htmap.map(funcs.fail_on, range(5), tag="errs")
    m.wait(timeout=60, errors_ok=True)
    assert m.component_statuses[3] is ComponentStatus.ERRORED
    err = m.get_err(3)
    assert err.exception_type == "ValueError"
    assert "component input 3 is bad" in err.report()
    assert [m.get(i) for i in (0, 1, 2, 4)] == [0, 1, 2, 4]
    with pytest.raises(exceptions.MapComponentError):
        m.get(3)


def test_process_death_without_output_gets_slurm_reason_and_stderr_tail():
    m = htmap.map(funcs.die, [7], tag="dies")
    m.wait(timeout=60, errors_ok=True)
    assert m.component_statuses[0] is ComponentStatus.ERRORED
    err = m.get_err(0)
    assert "FAILED" in err.exception_msg and "exited with code 3" in err.exception_msg
    assert "about to die with status 3" in err.report()


def test_split_arrays_at_max_array_size_with_offsets():
    htmap.settings["SLURM.MAX_ARRAY_SIZE"] = 4  # the cluster's MaxArraySize is larger: cap it
    m = htmap.map(funcs.double, range(10), tag="split")
    assert list(m.iter(timeout=90)) == [2 * x for x in range(10)]
    sub = json.loads(next((m._dir / "engine" / "slurm" / "subs").glob("*.json")).read_text())
    assert [(a["offset"], a["ranges"]) for a in sub["arrays"]] == [(0, [[0, 3]]), (4, [[4, 7]]), (8, [[8, 9]])]


def test_plan_arrays_keeps_every_index_below_max_array_size():
    size = int(cluster_config().get("MaxArraySize", "1001"))
    plans = commands.plan_chunks(range(2 * size + 5), size)
    assert len(plans) == 3
    for offset, spec, chunk in plans:
        indices = [i for r in commands.expand(spec) for i in r]
        assert max(indices) < size
        assert [offset + i for i in indices] == chunk
    # sparse component sets (a rerun of a few components) stay short
    assert commands.plan_chunks([5, 6, 7, 2000], size)[0][:2] == (5, "0-2")


def test_hold_and_release_of_a_running_map(tmp_path):
    release = tmp_path / "go"
    m = htmap.starmap(funcs.mark_then_wait, [(str(tmp_path), str(release), x) for x in range(3)], tag="holdme")
    wait_until(lambda: statuses(m).count(ComponentStatus.RUNNING) >= 1, 60, message="one running")
    m.hold()
    wait_until(lambda: all(s is ComponentStatus.HELD for s in statuses(m)), 60, message="all held")
    assert "held by the user" in m.holds[0].reason
    assert not [r for r in queue_states(array_ids(m)) if r[1] == "RUNNING"]
    with pytest.raises(exceptions.MapComponentHeld):
        m.get(0, timeout=5)
    release.touch()
    m.release()
    assert list(m.iter(timeout=120)) == [0, 1, 2]


def test_remove_of_a_running_map_leaves_nothing_behind(tmp_path):
    m = htmap.starmap(funcs.mark_then_wait, [(str(tmp_path), str(tmp_path / "never"), x) for x in range(4)],
                      tag="rm")
    wait_until(lambda: len(list(tmp_path.glob("started-*"))) >= 1, 60, message="a component started")
    ids = array_ids(m)
    pids = [int(p.name.rsplit("-", 1)[1]) for p in tmp_path.glob("started-*")]
    m.remove()
    assert "rm" not in htmap.get_tags()
    wait_until(lambda: not live_tasks(ids), 30, message="no task of the map left in Slurm")
    states = {r[1] for r in queue_states(ids)}
    assert states <= {"CANCELLED"}, states

    def gone(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{pid}/status").exists() and "zombie" in Path(f"/proc/{pid}/status").read_text()

    wait_until(lambda: all(gone(p) for p in pids), 30, message="component processes gone")


def test_remove_some_components_and_rerun(tmp_path):
    release = tmp_path / "go"
    m = htmap.starmap(funcs.mark_then_wait, [(str(tmp_path), str(release), x) for x in range(3)], tag="part")
    m._engine.act(m._job, "remove", [2])  # the core has no remove(components=) yet
    release.touch()
    wait_until(lambda: statuses(m)[:2] == [ComponentStatus.COMPLETED] * 2 and
               statuses(m)[2] is ComponentStatus.REMOVED, 60, message="0,1 done and 2 removed")
    m.rerun([2])
    assert m.get(2, timeout=60) == 2
    with pytest.raises(exceptions.CannotRerunComponents):
        m2 = htmap.starmap(funcs.mark_then_wait, [(str(tmp_path), str(tmp_path / "x"), 9)], tag="busy")
        wait_until(lambda: statuses(m2)[0] in (ComponentStatus.IDLE, ComponentStatus.RUNNING), 30)
        m2.rerun()


@pytest.mark.parametrize("func", [funcs.resume_from_scratch, funcs.resume_from_checkpoint])
def test_vacate_requeues_keeping_working_directory_and_checkpoint(tmp_path, func):
    # resume_from_scratch keeps its progress in its working directory, resume_from_checkpoint
    # in htmap.checkpoint() (it deletes the working copy)
    m = htmap.starmap(func, [(str(tmp_path), 0)], tag="vac")
    wait_until(lambda: (tmp_path / "started-0").exists(), 60, message="first run started")
    wait_until(lambda: statuses(m)[0] is ComponentStatus.RUNNING, 30)
    m.vacate()
    assert m.get(0, timeout=90) == "resumed after step 1"
    history = m._state.history.get(0, [])
    assert any(kind == "evicted" and "vacated" in reason for _t, kind, reason in history), history
    # a finished component's checkpoint is gone, and is not an output file
    assert not m._job.paths.checkpoint(0).exists()
    assert not (m.output_files[0] / "progress").exists()


def test_pause_and_resume(tmp_path):
    release = tmp_path / "go"
    m = htmap.starmap(funcs.mark_then_wait, [(str(tmp_path), str(release), 0)], tag="pause")
    wait_until(lambda: statuses(m)[0] is ComponentStatus.RUNNING, 60)
    m.pause()
    wait_until(lambda: statuses(m)[0] is ComponentStatus.SUSPENDED, 30, message="suspended")
    assert queue_states(array_ids(m))[0][1] == "SUSPENDED"
    m.resume()
    wait_until(lambda: statuses(m)[0] is ComponentStatus.RUNNING, 30, message="running again")
    release.touch()
    assert m.get(0, timeout=60) == 0


def test_input_files_output_files_and_missing_input_holds(tmp_path):
    shared = tmp_path / "shared.txt"
    shared.write_text("shared!")
    own = [tmp_path / f"own-{i}.txt" for i in range(2)]
    own[0].write_text("mine 0")
    m = htmap.map(funcs.read_file, ["own-0.txt", "own-1.txt"], tag="files",
                  map_options=MapOptions(fixed_input_files=[str(shared)], input_files=[str(p) for p in own]))
    assert m.get(0, timeout=60) == "mine 0"
    wait_until(lambda: statuses(m)[1] is ComponentStatus.HELD, 60, message="component 1 held")
    assert str(own[1]) in m.holds[1].reason
    own[1].write_text("mine 1")
    m.release([1])
    assert m.get(1, timeout=60) == "mine 1"

    m2 = htmap.map(funcs.list_cwd, [0], tag="cwd", map_options=MapOptions(fixed_input_files=[str(shared)]))
    assert "shared.txt" in m2.get(0, timeout=60)

    # a TransferPath in the arguments is staged and replaced by ./<name>
    m4 = htmap.map(funcs.read_file, [htmap.TransferPath(shared)], tag="tpath")
    assert m4.get(0, timeout=60) == "shared!"
    with pytest.raises(exceptions.InvalidOption, match="URL"):
        htmap.map(funcs.read_file, ["x"], tag="url",
                  map_options=MapOptions(fixed_input_files=["https://example.org/x"]))

    m3 = htmap.map(funcs.make_output_files, [5], tag="outfiles")  # what transfer_output_files leaves
    assert m3.get(0, timeout=60) == 5
    assert (m3.output_files[0] / "result.txt").read_text() == "result 5"
    assert (m3.output_files[0] / "nested" / "deep.txt").read_text() == "deep 5"


def test_output_remaps(tmp_path):
    dest = tmp_path / "elsewhere.txt"
    m = htmap.map(funcs.make_output_files, [1], tag="remap",
                  map_options=MapOptions(output_remaps={"result.txt": str(dest)}))
    assert m.get(0, timeout=60) == 1
    assert dest.read_text() == "result 1"
    assert not (m.output_files[0] / "result.txt").exists()


def test_resources_and_custom_options_reach_sbatch(tmp_path):
    release = tmp_path / "go"
    m = htmap.starmap(funcs.mark_then_wait, [(str(tmp_path), str(release), x) for x in range(2)], tag="res",
                      map_options=MapOptions(request_memory=["150MB", "200MB"], request_cpus="1", max_runtime="5m",
                                             request_disk="10MB", custom_options={"comment": "from-htmap"}))
    ids = array_ids(m)
    assert len(ids) == 2  # different memory per component: two arrays
    shown = "\n".join(subprocess.run(["scontrol", "-o", "show", "job", i], capture_output=True, text=True).stdout
                      for i in ids)
    assert "MinMemoryNode=150M" in shown and "MinMemoryNode=200M" in shown
    assert "TimeLimit=00:05:00" in shown and "Comment=from-htmap" in shown and "MinTmpDiskNode=10M" in shown
    release.touch()
    assert list(m.iter(timeout=60)) == [0, 1]


def test_reserved_custom_options_and_sbatch_errors_are_clear():
    with pytest.raises(exceptions.ReservedOptionKeyword, match="array"):
        htmap.map(funcs.double, [1], tag="bad1", map_options=MapOptions(custom_options={"array": "0-3"}))
    with pytest.raises(exceptions.ReservedOptionKeyword, match="request_memory"):
        htmap.map(funcs.double, [1], tag="bad2", map_options=MapOptions(custom_options={"mem": "1G"}))
    with pytest.raises(commands.SlurmSubmitError, match="Invalid partition"):
        htmap.map(funcs.double, [1], tag="bad3", map_options=MapOptions(partition="nosuch"))
    assert "bad3" not in htmap.get_tags()


def test_set_memory_on_pending_components(tmp_path):
    release = tmp_path / "go"
    htmap.settings["MAP_OPTIONS"] = {"max_running": 1}
    m = htmap.starmap(funcs.mark_then_wait, [(str(tmp_path), str(release), x) for x in range(3)], tag="edit")
    wait_until(lambda: statuses(m).count(ComponentStatus.RUNNING) == 1, 60, message="one running (throttle)")
    m.set_memory("300MB", components=[1, 2])
    ids = array_ids(m)
    shown = subprocess.run(["scontrol", "-o", "show", "job", ids[0]], capture_output=True, text=True).stdout
    tasks = {re.search(r"ArrayTaskId=(\S+)", line).group(1): re.search(r"MinMemory(?:Node|CPU)=(\S+)", line).group(1)
             for line in shown.splitlines() if "ArrayTaskId=" in line}
    # the running task keeps its request; the pending ones (maybe still one array record "1-2%1") get 300M
    assert tasks.pop("0") == "100M" and tasks and set(tasks.values()) == {"300M"}, tasks
    release.touch()
    assert list(m.iter(timeout=90)) == [0, 1, 2]


@pytest.fixture
def needs_cgroup():
    if "cgroup" not in cluster_config().get("TaskPlugin", ""):
        pytest.skip("the test cluster does not enforce memory (TaskPlugin has no task/cgroup; "
                    "start it with HTMAP_SLURM_CGROUP=v1 where cgroup v1 is available)")


@pytest.mark.usefixtures("needs_cgroup")
def test_memory_limit_holds_then_set_memory_and_release():
    m = htmap.map(funcs.hog, [200], tag="oom", map_options=MapOptions(request_memory="60MB"))
    wait_until(lambda: statuses(m)[0] is ComponentStatus.HELD, 60, message="held for memory")
    reason = m.holds[0].reason
    assert "request_memory of 60 MB" in reason and "OUT_OF_MEMORY" in reason and "m.set_memory" in reason
    assert m.holds[0].code == 34
    m.set_memory("400MB")
    m.release()
    assert m.get(0, timeout=60) == 200
    assert m.memory_usage[0] >= 200


@pytest.mark.usefixtures("needs_cgroup")
def test_retries_escalate_memory_and_keep_each_attempts_reason():
    m = htmap.map(funcs.hog, [150], tag="retry",
                  map_options=MapOptions(request_memory="50MB", max_retries=3, retry_memory_factor=2))
    assert m.get(0, timeout=120) == 150
    history = [r for _t, kind, r in m._state.history.get(0, []) if kind == "evicted"]
    assert len(history) == 2, history  # 50 -> 100 (both too small) -> 200 MB
    assert "OUT_OF_MEMORY" in history[0] and "retry 1 of 3 with request_memory 100 MB" in history[0]
    assert "retry 2 of 3 with request_memory 200 MB" in history[1]


def test_retry_python_exceptions_of_given_types(tmp_path):
    m = htmap.starmap(funcs.flaky, [(str(tmp_path), 0), (str(tmp_path), 1)], tag="flaky",
                      map_options=MapOptions(max_retries=1, retry_exceptions=[OSError]))
    assert list(m.iter(timeout=90)) == [0, 1]
    history = [r for _t, kind, r in m._state.history.get(0, []) if kind == "evicted"]
    assert history and "OSError" in history[0] and "transient failure of 0" in history[0]


def test_time_limit_kills_and_holds_with_reason(timelimit_map):
    m, htmap_dir = timelimit_map
    htmap.settings["HTMAP_DIR"] = str(htmap_dir)
    assert m.get(1, timeout=60) == 0
    wait_until(lambda: statuses(m)[0] is ComponentStatus.HELD, 150, interval=0.5, message="held for its time limit")
    hold = m.holds[0]
    assert hold.code == 47  # as the local engine (HTCondor's allowed_job_duration)
    assert "max_runtime of 60 s" in hold.reason and "TIMEOUT" in hold.reason
    with pytest.raises(exceptions.MapComponentHeld, match="max_runtime"):
        m.wait(timeout=5)
    m.remove()


def test_cancel_or_hold_from_outside_htmap_is_reported(tmp_path):
    release = tmp_path / "go"
    htmap.settings["MAP_OPTIONS"] = {"max_running": 1}
    m = htmap.starmap(funcs.mark_then_wait, [(str(tmp_path), str(release), x) for x in range(3)], tag="outside")
    wait_until(lambda: statuses(m)[0] is ComponentStatus.RUNNING, 60, message="component 0 running")
    (array_id,) = array_ids(m)
    subprocess.run(["scontrol", "hold", f"{array_id}_2"], check=True, capture_output=True)
    subprocess.run(["scancel", f"{array_id}_0"], check=True, capture_output=True)
    wait_until(lambda: statuses(m)[0] is ComponentStatus.REMOVED and statuses(m)[2] is ComponentStatus.HELD, 60,
               message="0 removed, 2 held")
    assert "held in Slurm" in m.holds[2].reason and m.holds[2].code == 2
    release.touch()
    assert m.get(1, timeout=60) == 1
    m.release([2])
    assert m.get(2, timeout=60) == 2
