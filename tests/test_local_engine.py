"""The local engine: detached supervisor, idle exit, crash recovery, store permissions."""
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import htmap
from htmap import ComponentStatus, exceptions
from htmap.engines.local import protocol
from tests import funcs
from tests.helpers import supervisor_pids, wait_until

T = 60
REPO = Path(__file__).parent.parent


def started(marker_dir: Path):
    """{component: worker pid} of components that have started, from their marker files."""
    out = {}
    for p in marker_dir.glob("started-*"):
        _, c, pid = p.name.split("-")
        out[int(c)] = int(pid)
    return out


def events_of(m):
    data, _ = protocol.read_new(m._dir / "engine" / protocol.EVENTS_FILE, 0)
    return list(protocol.parse_events(data))


def finished_once(m):
    """Each component's completed/errored events: exactly one each."""
    ends = {}
    for _t, first, count, kind, _ in events_of(m):
        if kind in ("completed", "errored"):
            for c in range(first, first + count):
                ends[c] = ends.get(c, 0) + 1
    return ends


def test_supervisor_is_detached_and_exits_when_idle(isolated_htmap):
    m = htmap.map(funcs.double, range(3), tag="idle")
    m.wait(timeout=T)
    assert supervisor_pids(isolated_htmap), "a supervisor should serve the map"
    wait_until(lambda: not supervisor_pids(isolated_htmap), timeout=30, message="supervisor idle exit")
    again = htmap.map(funcs.double, range(3), tag="idle-again")
    assert list(again.iter(timeout=T)) == [0, 2, 4]


def test_max_workers_limits_concurrency(tmp_path):
    htmap.settings["LOCAL.MAX_WORKERS"] = 2
    markers, release = tmp_path / "markers", tmp_path / "go"
    markers.mkdir()
    m = htmap.starmap(funcs.touch_then_wait, args=[(str(markers), str(release), i) for i in range(5)], tag="slots")
    wait_until(lambda: len(started(markers)) == 2, T, message="two components to start")
    assert m.components_by_status().get(ComponentStatus.RUNNING, ()) != ()
    m._refresh()
    assert m._state.counts()[ComponentStatus.RUNNING] <= 2
    assert len(started(markers)) == 2  # the third waits for a free slot
    release.touch()
    assert list(m.iter(timeout=T)) == [0, 10, 20, 30, 40]


def test_kill_9_supervisor_mid_map_recovers_every_component_exactly_once(isolated_htmap, tmp_path):
    htmap.settings["LOCAL.MAX_WORKERS"] = 2
    markers, release = tmp_path / "markers", tmp_path / "go"
    markers.mkdir()
    n = 8
    m = htmap.starmap(funcs.touch_then_wait, args=[(str(markers), str(release), i) for i in range(n)], tag="crash")
    wait_until(lambda: len(started(markers)) == 2, T, message="components to start")
    first_workers = started(markers)
    (pid,) = supervisor_pids(isolated_htmap)
    os.kill(pid, signal.SIGKILL)
    # its workers die with it (no orphan keeps running the component)
    wait_until(lambda: not any(_alive(p) for p in first_workers.values()), T, message="workers to die")
    release.touch()
    m.wait(timeout=T)  # the next htmap call starts a new supervisor, which recovers
    assert list(m) == [i * 10 for i in range(n)]
    assert finished_once(m) == {c: 1 for c in range(n)}
    assert m.component_statuses == [ComponentStatus.COMPLETED] * n
    history = m._state.history
    assert any("supervisor stopped" in reason for c in first_workers for _, _, reason in history.get(c, []))
    assert not [p for p in (m._dir / "outputs").rglob("*") if p.is_file() and not p.name.endswith(".out")], \
        "temp files left"


def test_kill_9_worker_mid_component_errors_it_with_a_reason(tmp_path):
    markers, release = tmp_path / "markers", tmp_path / "go"
    markers.mkdir()
    m = htmap.starmap(funcs.touch_then_wait, args=[(str(markers), str(release), i) for i in range(3)], tag="wkill")
    wait_until(lambda: 0 in started(markers), T, message="component 0 to start")
    os.kill(started(markers)[0], signal.SIGKILL)
    release.touch()
    m.wait(timeout=T, errors_ok=True)
    assert m.component_statuses[0] is ComponentStatus.ERRORED
    assert "signal 9" in m.get_err(0).exception_msg
    assert m.get(1) == 10 and m.get(2) == 20
    assert finished_once(m) == {0: 1, 1: 1, 2: 1}


def test_torn_event_line_from_a_killed_supervisor_is_dropped(isolated_htmap):
    m = htmap.map(funcs.double, range(3), tag="torn")
    m.wait(timeout=T)
    events = m._dir / "engine" / protocol.EVENTS_FILE
    wait_until(lambda: not supervisor_pids(isolated_htmap), timeout=30, message="supervisor idle exit")
    with open(events, "ab") as f:
        f.write(b"1234.5 1 compl")  # what a kill -9 in the middle of an append leaves
    m.rerun([1])
    assert m.get(1, timeout=T) == 2
    assert b"compl1" not in events.read_bytes() and b"1 compl\n" not in events.read_bytes()


def test_submitter_killed_while_writing_inputs_leaves_nothing_visible(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        import htmap
        from tests import funcs
        htmap.settings["ENGINE"] = "local"  # not auto: a Slurm installed here but down makes auto refuse
        def inputs():
            for i in range(100_000):
                if i == 5000:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield i
        htmap.map(funcs.double, inputs(), tag="half-built")
    """)
    proc = subprocess.run([sys.executable, "-c", script], timeout=T)
    assert proc.returncode == -signal.SIGKILL
    assert htmap.get_tags() == ()
    with pytest.raises(exceptions.TagNotFound):
        htmap.load("half-built")
    # the dead creator's reservation is taken over: the tag can be used again
    m = htmap.map(funcs.double, range(2), tag="half-built")
    assert list(m.iter(timeout=T)) == [0, 2]
    htmap.clean()
    assert [p.name for p in (htmap.settings.get("HTMAP_DIR") and Path(htmap.settings["HTMAP_DIR"]) / "maps").iterdir()] == [m.uid]


def test_store_is_private(isolated_htmap):
    m = htmap.map(funcs.chatty, range(2), tag="private")
    m.wait(timeout=T)
    for path in [isolated_htmap, *isolated_htmap.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            assert mode == 0o700, f"{path} is {oct(mode)}"
        elif path.is_file():
            assert mode == 0o600, f"{path} is {oct(mode)}"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
    return True


def test_kill_9_worker_holding_a_chunk_requeues_the_rest(tmp_path):
    """Workers get chunks of components; killing one loses only the component it was running."""
    htmap.settings["LOCAL.MAX_WORKERS"] = 2
    markers = tmp_path / "markers"
    markers.mkdir()
    n = 400
    m = htmap.starmap(funcs.record_pid, args=[(str(markers), i) for i in range(n)], tag="chunks")
    wait_until(lambda: len(list(markers.iterdir())) >= 20, T, message="components to run")
    victim = int(sorted(markers.iterdir())[0].name.split("-")[2])
    os.kill(victim, signal.SIGKILL)
    m.wait(timeout=T, errors_ok=True)
    assert finished_once(m) == {c: 1 for c in range(n)}
    errored = [c for c, s in enumerate(m.component_statuses) if s is ComponentStatus.ERRORED]
    assert len(errored) <= 1  # at most the one it was running when killed
    assert all(m[c] == c for c in range(n) if c not in errored)


@pytest.fixture
def memory_cgroup():
    """A real 100 MB memory cgroup (v1 or v2) that a component can join; skipped where none can be made."""
    candidates = [(Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes"), (Path("/sys/fs/cgroup"), "memory.max")]
    for root, limit_file in candidates:
        if not (root / limit_file).exists() and not (root / "cgroup.subtree_control").exists():
            continue
        group = root / f"htmap-test-{os.getpid()}"
        try:
            group.mkdir()
            (group / limit_file).write_text(str(100 * 1024 * 1024))
        except OSError:
            if group.exists():
                group.rmdir()
            continue
        yield group / "cgroup.procs"
        wait_until(lambda: not (group / "cgroup.procs").read_text().split(), T, message="the cgroup to empty")
        group.rmdir()
        return
    pytest.skip("no memory cgroup can be made here (needs root and the memory controller)")


def test_a_component_killed_by_the_kernels_oom_killer_says_so(memory_cgroup):
    m = htmap.starmap(funcs.join_cgroup_then_hold, args=[(str(memory_cgroup), 400)], tag="oom")
    m.wait(timeout=T, errors_ok=True)
    message = m.get_err(0).exception_msg
    assert "signal 9" in message and "out-of-memory killer" in message and "request_memory" in message
