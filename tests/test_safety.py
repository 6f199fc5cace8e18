"""Data safety: a full disk and concurrent commands never lose or corrupt a user's maps."""
import errno
import subprocess
import sys
import textwrap
from pathlib import Path

import os
import signal

import pytest

import htmap
from htmap import ComponentStatus
from htmap.engines.local import protocol
from tests import funcs
from tests.helpers import proc_state, supervisor_pids, wait_until

T = 60
REPO = Path(__file__).parent.parent


def run_python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=T, **kwargs)


def test_full_disk_while_writing_inputs_leaves_nothing_behind(isolated_htmap):
    kept = htmap.map(funcs.double, range(3), tag="kept")
    assert list(kept.iter(timeout=T)) == [0, 2, 4]
    # RLIMIT_FSIZE makes writes past 1 MB fail like a full disk (EFBIG instead of ENOSPC)
    proc = run_python(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
        import htmap
        from tests import funcs
        htmap.settings["ENGINE"] = "local"
        try:
            htmap.map(funcs.double, [b"x" * 300_000 for _ in range(10)], tag="too-big")
        except htmap.exceptions.NoRoomInStore as e:
            print("NoRoomInStore", e.errno, isinstance(e, OSError))
            print(e)
    """)
    assert "NoRoomInStore 27 True" in proc.stdout, proc.stderr
    assert "no room to write map 'too-big'" in proc.stdout and "free space there" in proc.stdout
    assert "Nothing of this map was kept" in proc.stdout
    assert htmap.get_tags() == ("kept",)
    assert [p.name for p in (isolated_htmap / "maps").iterdir()] == [kept.uid]
    assert list(htmap.load("kept")) == [0, 2, 4]


def test_settings_save_on_full_disk_keeps_the_old_file(tmp_path):
    htmap.settings["WAIT_TIME"] = 3
    rc = htmap.settings.save()
    before = rc.read_bytes()
    proc = run_python(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        import htmap
        htmap.settings["BIG"] = "x" * 200_000
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        try:
            htmap.settings.save()
        except OSError as e:
            print("OSError", e.errno)
    """)
    assert "OSError" in proc.stdout, proc.stderr
    assert rc.read_bytes() == before
    assert [p.name for p in rc.parent.iterdir() if p.name.startswith(".htmaprc")] == [".htmaprc"]


def test_concurrent_maps_with_one_tag_exactly_one_wins(isolated_htmap):
    code = f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        import htmap
        from tests import funcs
        htmap.settings["ENGINE"] = "local"
        try:
            htmap.map(funcs.double, range(50), tag="race")
            print("won")
        except htmap.exceptions.TagAlreadyExists:
            print("lost")
    """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    outcomes = sorted(p.communicate(timeout=T)[0].strip() for p in procs)
    assert outcomes == ["lost", "lost", "lost", "won"]
    m = htmap.load("race")
    assert list(m.iter(timeout=T)) == [2 * i for i in range(50)]
    assert len(list((isolated_htmap / "maps").iterdir())) == 1


def test_two_processes_watching_one_map_agree(isolated_htmap, tmp_path):
    m = htmap.map(funcs.double, range(20), tag="shared")
    code = f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        import htmap
        m = htmap.load("shared")
        m.wait(timeout=60)
        print(sum(m))
    """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    m.wait(timeout=T)
    assert [p.communicate(timeout=T)[0].strip() for p in procs] == [str(sum(2 * i for i in range(20)))] * 3
    assert m.status_counts()[htmap.ComponentStatus.COMPLETED] == 20


def test_full_disk_while_writing_an_output(isolated_htmap):
    """The supervisor and its workers inherit a 1 MB file-size limit: a 2 MB result cannot be written."""
    proc = run_python(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
        import htmap
        from tests import funcs
        htmap.settings["ENGINE"] = "local"
        m = htmap.map(funcs.megabytes, [2, 0], tag="full-disk")
        m.wait(timeout=60, errors_ok=True)
        print("statuses", [s.value for s in m.component_statuses])
    """)
    assert "statuses ['ERRORED', 'COMPLETED']" in proc.stdout, proc.stderr
    m = htmap.load("full-disk")
    assert m[1] == b""
    (report,) = m.error_reports()
    assert "could not write the output of component 0" in report
    assert "File too large" in report and "free space there" in report
    assert not [p.name for p in (m._dir / "outputs").rglob("*") if ".tmp" in p.name]  # no partial file kept
    # with space again (a supervisor without the limit), a rerun writes the whole result
    for pid in supervisor_pids(isolated_htmap):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not supervisor_pids(isolated_htmap), T, message="the limited supervisor to end")
    m.rerun(components=[0])
    assert len(m.get(0, timeout=T)) == 2 * 1024 * 1024
    assert m.component_statuses == [ComponentStatus.COMPLETED] * 2


@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MB filesystem (tmpfs) that fills up for real (ENOSPC); skipped where mounting is not allowed."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.strip() or 'not root'})")
    try:
        yield mount_point
    finally:
        for pid in supervisor_pids(mount_point / "htmap"):
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not supervisor_pids(mount_point / "htmap"), T, message="the supervisor to end")
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; returns it (delete it to free the space)."""
    filler = directory / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


def test_full_disk_while_components_finish_they_wait_and_run_again(small_disk, tmp_path):
    htmap_dir = small_disk / "htmap"
    htmap.settings["HTMAP_DIR"] = str(htmap_dir)
    htmap.settings["LOCAL.MAX_WORKERS"] = 2
    markers, release = tmp_path / "runs", tmp_path / "go"
    markers.mkdir()
    m = htmap.starmap(funcs.run_count_then_wait, args=[(str(markers), str(release), x) for x in range(2)],
                      tag="full-later")
    wait_until(lambda: len(list(markers.iterdir())) == 2, T, message="both components to start")
    wait_until(lambda: len(supervisor_pids(htmap_dir)) == 1, T, message="one supervisor")
    supervisor = supervisor_pids(htmap_dir)
    filler = fill(small_disk)
    release.touch()  # they return now, with no room to write what they return

    def evicted_for_no_room():
        m._refresh()
        return all(any(kind == "evicted" and "no room" in (reason or "") for _, kind, reason in m._state.history.get(c, []))
                   for c in range(2))

    wait_until(evicted_for_no_room, T, message="both components to be sent back for lack of room")
    assert m.component_statuses == [ComponentStatus.IDLE] * 2  # waiting, not errored
    assert supervisor[0] in supervisor_pids(htmap_dir)  # the supervisor did not crash
    filler.unlink()  # space again: they run again and finish
    assert list(m.iter(timeout=T)) == [0, 10]
    # run twice each: not again and again while the disk was full
    assert sorted(p.name for p in markers.iterdir()) == ["run-0-0", "run-0-1", "run-1-0", "run-1-1"]
    assert supervisor[0] in supervisor_pids(htmap_dir)
    leftovers = [p.name for d in ("outputs", "logs") for p in (m._dir / d).rglob("*") if ".tmp" in p.name]
    assert leftovers == []
    events = (m._dir / "engine" / "events").read_text()
    assert events.endswith("\n") and all(len(line.split(" ", 3)) >= 3 for line in events.splitlines())


def test_full_disk_warns_the_waiting_user(small_disk, tmp_path):
    htmap_dir = small_disk / "htmap"
    htmap.settings["HTMAP_DIR"] = str(htmap_dir)
    markers, release = tmp_path / "runs", tmp_path / "go"
    markers.mkdir()
    m = htmap.starmap(funcs.run_count_then_wait, args=[(str(markers), str(release), 0)], tag="warned")
    wait_until(lambda: len(list(markers.iterdir())) == 1, T, message="the component to start")
    (m._dir / "state").unlink(missing_ok=True)
    filler = fill(small_disk)
    with pytest.warns(RuntimeWarning, match="no room in the map store"):
        m._dirty = True
        m._save_state()
    filler.unlink()
    release.touch()
    assert m.get(0, timeout=T) == 0


def test_full_disk_while_the_supervisor_takes_a_request_it_waits_and_carries_it_out(small_disk, tmp_path):
    htmap_dir = small_disk / "htmap"
    htmap.settings["HTMAP_DIR"] = str(htmap_dir)
    first = htmap.map(funcs.double, [1], tag="first")
    assert first.get(0, timeout=T) == 2
    wait_until(lambda: len(supervisor_pids(htmap_dir)) == 1, T, message="one supervisor")
    (supervisor,) = supervisor_pids(htmap_dir)
    os.kill(supervisor, signal.SIGSTOP)  # a new map's request arrives, then the disk fills, before it is read
    try:
        m = htmap.map(funcs.double, range(3), tag="second")
        queued = list(m._engine.paths.queue.iterdir())
        filler = fill(small_disk)
    finally:
        os.kill(supervisor, signal.SIGCONT)
    assert queued  # the supervisor has a request to take, and no room to record that it took it
    protocol.wake(htmap_dir)
    wait_until(lambda: proc_state(supervisor) in ("S", "gone", "Z"), T, message="the supervisor to take it")
    filler.unlink()
    assert list(m.iter(timeout=T)) == [0, 2, 4]
    assert supervisor in supervisor_pids(htmap_dir)  # the same one: it never crashed
