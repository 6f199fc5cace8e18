"""Control and resource limits on the local engine: hold, release, pause, resume, vacate,
remove, rerun, edits, cpus, memory and runtime limits, retries, checkpoints."""
import os
import signal
from pathlib import Path

import pytest

import htmap
from htmap import ComponentStatus, exceptions
from htmap.engines.local import processes
from tests import funcs
from tests.helpers import alive, proc_state, supervisor_pids, wait_until

T = 60


def markers_in(d: Path, prefix: str):
    return sorted(p.name for p in d.glob(prefix + "*"))


def started(d: Path):
    return {int(p.name.split("-")[1]): int(p.name.split("-")[2]) for p in d.glob("started-*")}


@pytest.fixture
def gate(tmp_path):
    markers, release = tmp_path / "markers", tmp_path / "go"
    markers.mkdir()
    return markers, release


def gated_map(gate, n, tag, **options):
    markers, release = gate
    return htmap.starmap(funcs.touch_then_wait, args=[(str(markers), str(release), i) for i in range(n)], tag=tag,
                         map_options=htmap.MapOptions(**options) if options else None)


def status_is(m, component, status):
    return lambda: m.component_statuses[component] is status


def test_hold_running_component_then_release(gate):
    markers, release = gate
    m = gated_map(gate, 2, "hold")
    wait_until(lambda: len(started(markers)) == 2, T, message="both to start")
    pid0 = started(markers)[0]
    m.hold(components=[0])
    assert m.component_statuses[0] is ComponentStatus.HELD
    assert "held by the user" in m.holds[0].reason
    wait_until(lambda: not alive(pid0), T, message="held component's process to stop")
    assert m.component_statuses[1] is ComponentStatus.RUNNING
    release.touch()
    assert m.get(1, timeout=T) == 10
    m.release()
    assert m.get(0, timeout=T) == 0


def test_hold_whole_map_holds_idle_components_too(gate):
    markers, release = gate
    htmap.settings["LOCAL.MAX_WORKERS"] = 1
    m = gated_map(gate, 3, "holdall")
    wait_until(lambda: 0 in started(markers), T, message="component 0 to start")
    m.hold()
    assert m.component_statuses == [ComponentStatus.HELD] * 3
    release.touch()
    m.release()
    assert list(m.iter(timeout=T)) == [0, 10, 20]


def test_pause_and_resume(gate):
    markers, release = gate
    m = gated_map(gate, 1, "pause")
    wait_until(lambda: 0 in started(markers), T, message="start")
    pid = started(markers)[0]
    m.pause()
    assert m.component_statuses[0] is ComponentStatus.SUSPENDED
    wait_until(lambda: proc_state(pid) == "T", T, message="process stopped")
    m.resume()
    assert m.component_statuses[0] is ComponentStatus.RUNNING
    wait_until(lambda: proc_state(pid) in ("S", "R"), T, message="process running again")
    release.touch()
    assert m.get(0, timeout=T) == 0


def test_vacate_resumes_from_checkpoint(gate):
    markers, release = gate
    m = htmap.starmap(funcs.counting_checkpoint, args=[(str(markers), str(release))], tag="ckpt")
    wait_until(lambda: markers_in(markers, "resumed-at-0"), T, message="first start")
    wait_until(lambda: (m._job.paths.checkpoint(0) / "progress.txt").exists(), T,
               message="a checkpoint")
    wait_until(lambda: (m._job.paths.checkpoint(0) / "progress.txt").read_text() == "2", T,
               message="checkpoint at step 2")
    m.vacate()
    wait_until(lambda: markers_in(markers, "resumed-at-2"), T, message="restart from the checkpoint")
    release.touch()
    assert m.get(0, timeout=T) == 5
    assert len(markers_in(markers, "resumed-at-2")) == 1  # restarted once, not twice
    assert any(kind == "evicted" for _, kind, _ in m._state.history[0])
    assert not m._job.paths.checkpoint(0).exists()  # finished: checkpoint dropped
    assert not (m.output_files[0] / "progress.txt").exists()  # and not returned as an output


def test_checkpoint_survives_supervisor_kill(gate, isolated_htmap):
    markers, release = gate
    m = htmap.starmap(funcs.counting_checkpoint, args=[(str(markers), str(release))], tag="ckpt-kill")
    ck = m._job.paths.checkpoint(0) / "progress.txt"
    wait_until(lambda: ck.exists() and ck.read_text() == "2", T, message="checkpoint at step 2")
    supervisors = supervisor_pids(isolated_htmap)
    workers = [w for pid in supervisors for w in processes.descendants(pid)]
    for pid in supervisors:
        os.kill(pid, signal.SIGKILL)
    # its workers die with it; release only then, or the component may finish in the dying worker
    wait_until(lambda: not any(alive(p) for p in workers), T, message="the supervisor's workers to die")
    release.touch()
    assert m.get(0, timeout=T) == 5
    assert markers_in(markers, "resumed-at-2")


@pytest.mark.parametrize("spawn", [funcs.spawn_child_and_wait, funcs.spawn_daemon_and_wait],
                         ids=["child", "daemon-in-own-session"])
def test_remove_running_map_leaves_no_process(gate, spawn):
    markers, release = gate
    m = htmap.starmap(spawn, args=[(str(markers), str(release))] * 2, tag="rm-running")
    wait_until(lambda: len(markers_in(markers, "pids-")) == 2, T, message="components and children to start")
    pids = [int(x) for name in markers_in(markers, "pids-") for x in name.split("-")[1:]]
    assert all(alive(p) for p in pids)
    m.remove()
    wait_until(lambda: not any(alive(p) for p in pids), T, message="every process of the map to end")
    assert not m.exists


def test_processes_a_component_leaves_running_end_with_it(gate):
    markers, _ = gate
    m = htmap.map(funcs.leave_daemon, [str(markers)], tag="leftover")
    daemon = m.get(0, timeout=T)
    assert markers_in(markers, f"daemon-{daemon}")
    wait_until(lambda: not alive(daemon), T, message="the daemon the component left behind to end")


def test_rerun_only_finished_components(gate):
    markers, release = gate
    m = gated_map(gate, 2, "rerun-some")
    wait_until(lambda: len(started(markers)) == 2, T, message="start")
    with pytest.raises(exceptions.CannotRerunComponents, match="0"):
        m.rerun([0])
    release.touch()
    m.wait(timeout=T)
    m.rerun(components=[1])
    assert m.get(1, timeout=T) == 10


def test_request_cpus_takes_slots(gate):
    markers, release = gate
    htmap.settings["LOCAL.MAX_WORKERS"] = 2
    m = gated_map(gate, 3, "cpus", request_cpus=["2", "1", "1"])
    wait_until(lambda: 0 in started(markers), T, message="the 2-cpu component to start")
    m._refresh()
    assert m._state.counts()[ComponentStatus.RUNNING] == 1
    assert set(started(markers)) == {0}  # it takes both slots: nothing else runs beside it
    release.touch()
    assert list(m.iter(timeout=T)) == [0, 10, 20]


def test_memory_limit_holds_with_reason_and_peak():
    m = htmap.map(funcs.hold_memory, [300], tag="oom", map_options=htmap.MapOptions(request_memory="150MB"))
    m.wait(timeout=T, holds_ok=True)
    hold = m.holds[0]
    assert "request_memory of 150 MB" in hold.reason
    used = int(hold.reason.split("used ")[1].split(" MB")[0])
    assert used > 150
    assert m.memory_usage[0] >= 150


def test_set_memory_then_release_lets_it_finish():
    m = htmap.starmap(funcs.hold_memory, args=[(120, 0.5)], tag="grow", map_options=htmap.MapOptions(request_memory="60MB"))
    m.wait(timeout=T, holds_ok=True)
    assert m.component_statuses[0] is ComponentStatus.HELD
    m.set_memory("1GB")
    m.set_disk("2GB")
    m.release()
    assert m.get(0, timeout=T) == 120
    assert m.memory_usage[0] >= 120


def test_runtime_limit_holds_with_reason():
    m = htmap.starmap(funcs.sleep_then, args=[(1, 30)], tag="slowpoke", map_options=htmap.MapOptions(max_runtime="1s"))
    m.wait(timeout=T, holds_ok=True)
    assert "max_runtime of 1s" in m.holds[0].reason


def test_retry_with_memory_escalation_keeps_history():
    m = htmap.starmap(funcs.hold_memory, args=[(150, 0.6)], tag="escalate", map_options=htmap.MapOptions(
        request_memory="80MB", max_retries=3, retry_memory_factor=4))
    assert m.get(0, timeout=T) == 150
    reasons = [reason for _, kind, reason in m._state.history[0] if kind == "evicted"]
    assert len(reasons) == 1
    assert "request_memory of 80 MB" in reasons[0] and "retry 1 of 3 with request_memory 320 MB" in reasons[0]


def test_retry_python_exception_of_listed_type(tmp_path):
    counter = tmp_path / "count"
    m = htmap.map(funcs.fail_first_time, [str(counter)], tag="flaky",
                  map_options=htmap.MapOptions(max_retries=2, retry_exceptions=[OSError]))
    assert m.get(0, timeout=T) == 2
    reasons = [reason for _, kind, reason in m._state.history[0] if kind == "evicted"]
    assert reasons and "OSError: flaky storage" in reasons[0] and "retry 1 of 2" in reasons[0]


def test_exceptions_not_listed_are_not_retried(tmp_path):
    counter = tmp_path / "count"
    m = htmap.map(funcs.fail_first_time, [str(counter)], tag="no-retry",
                  map_options=htmap.MapOptions(max_retries=2, retry_exceptions=["ValueError"]))
    m.wait(timeout=T, errors_ok=True)
    assert m.component_statuses[0] is ComponentStatus.ERRORED
    assert counter.read_text() == "1"


def test_retries_exhausted_hold_and_error_report_shows_attempts():
    m = htmap.map(funcs.hold_memory, [200], tag="exhaust", map_options=htmap.MapOptions(
        request_memory="60MB", max_retries=1, retry_memory_factor=1.5))
    m.wait(timeout=T, holds_ok=True)
    assert m.component_statuses[0] is ComponentStatus.HELD
    assert "request_memory of 90 MB" in m.holds[0].reason
    history = m._state.history[0]
    assert [kind for _, kind, _ in history].count("evicted") == 1


def test_error_report_lists_each_attempt(tmp_path):
    m = htmap.map(funcs.fail_on, [3], tag="always-fails",
                  map_options=htmap.MapOptions(max_retries=2, retry_exceptions="ValueError"))
    m.wait(timeout=T, errors_ok=True)
    report = m.get_err(0).report()
    assert "retry 1 of 2" in report and "retry 2 of 2" in report
    assert "component input 3 is bad" in report


def test_killed_component_is_retried(tmp_path):
    counter = tmp_path / "count"
    m = htmap.map(funcs.killed_first_time, [str(counter)], tag="killed", map_options=htmap.MapOptions(max_retries=1))
    assert m.get(0, timeout=T) == 2
    reasons = [reason for _, kind, reason in m._state.history[0] if kind == "evicted"]
    assert reasons and "signal 9" in reasons[0] and "retry 1 of 1" in reasons[0]


def test_remove_some_components_keeps_the_map(gate):
    markers, release = gate
    m = gated_map(gate, 3, "rm-some")
    wait_until(lambda: len(started(markers)) >= 2, T, message="components to start")
    m.remove(components=[1])
    assert m.exists
    assert m.component_statuses[1] is ComponentStatus.REMOVED
    release.touch()
    m.wait(timeout=T)
    assert m.get(0) == 0 and m.get(2) == 20
    m.rerun([1])
    assert m.get(1, timeout=T) == 10


def test_set_runtime_then_release_lets_it_finish():
    m = htmap.starmap(funcs.sleep_then, args=[(7, 1.5)], tag="needs-time", map_options=htmap.MapOptions(max_runtime=1))
    m.wait(timeout=T, holds_ok=True)
    assert "max_runtime" in m.holds[0].reason
    m.set_runtime("1m")
    m.release()
    assert m.get(0, timeout=T) == 7
